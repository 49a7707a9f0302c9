"""What a forced-choice study shows: :class:`StudyDefinition`, built from a results folder.

A rater sees a pair of videos (a baseline's result and the ASCCL model's, made from the same
source) next to the driving reference and answers each question by picking the left or the
right video. :func:`build_study` draws ``items_per_emotion`` clips per emotion at random (seeded
``random.Random``; the drawn clips are what the definition records) from the clips both methods
have in one setting. Attention-check items pair the neutral source with the emotional reference
itself and ask the emotion question: a careful rater picks the reference.

A clip only one method has cannot be compared, so it is left out, and an emotion with no
clip both have is left out whole. Nothing is left out silently: the definition records, per
emotion, each method's clip count, the shared count, the drawn count and the clips each
method lacks (:class:`EmotionSelection`, the ``[[selection]]`` tables of the TOML), and
:func:`describe_selection` says it in one line per emotion (``asccl study create`` prints it).

The definition round-trips through TOML (:func:`write_study_toml`, :func:`read_study_toml`);
unknown keys are an error. A file without ``[[selection]]`` (written before it existed, or
by hand) still loads, with ``selection = ()``. Video paths are relative to ``results_root``:
absolute as :func:`build_study` records it, relative to the definition's folder as
``asccl study create`` writes it (:func:`asccl.study.commands.recorded_results_root`).
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from asccl.evaluation.results import REFERENCES, SOURCES, scan_results
from asccl.io import write_text_atomic


@dataclass(frozen=True)
class Question:
    """One forced-choice question: ``id`` (stored with each vote) and the prompt raters read."""

    id: str
    prompt: str


DEFAULT_QUESTIONS = (
    Question("realism", "Which video looks more realistic?"),
    Question("emotion", "Which video's emotion is more similar to the reference video's?"),
    Question("mouth", "Which video's mouth shapes are more similar to the source video's?"),
)

#: The question an attention check asks, and the "methods" it compares (expected one last).
CHECK_QUESTION = "emotion"
CHECK_METHODS = (SOURCES, REFERENCES)


@dataclass(frozen=True)
class StudyItem:
    """One pair of videos shown side by side (the sides are assigned per rater by the store).

    ``videos[i]`` is the path (relative to the results root) of ``methods[i]``'s video. An
    attention check has ``expected`` (the method a careful rater picks) and ``check_question``.
    """

    id: str
    emotion: str
    clip: str
    methods: tuple[str, str]
    videos: tuple[str, str]
    reference: str | None = None
    expected: str | None = None
    check_question: str | None = None

    @property
    def is_check(self) -> bool:
        return self.expected is not None


@dataclass(frozen=True)
class EmotionSelection:
    """How one emotion's items were drawn, for ``methods = (baseline, ours)``.

    ``clips[i]``: the clips ``methods[i]`` has (in the setting); ``shared``: how many of them
    both have (only those can be compared); ``drawn``: how many became items, at most
    ``items_per_emotion``; ``missing[i]``: the names of the clips the other method has and
    ``methods[i]`` lacks (left out of the study).
    """

    emotion: str
    clips: tuple[int, int]
    shared: int
    drawn: int
    missing: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())

    @property
    def left_out(self) -> int:
        """How many clips (of either method) were left out for want of the other's."""
        return len(self.missing[0]) + len(self.missing[1])


@dataclass(frozen=True)
class StudyDefinition:
    """Everything needed to run the study and to reproduce its item selection."""

    methods: tuple[str, str]  # (baseline, ours)
    setting: str
    items_per_emotion: int
    seed: int
    results_root: str = ""
    questions: tuple[Question, ...] = DEFAULT_QUESTIONS
    items: tuple[StudyItem, ...] = field(default=())
    #: per emotion either method has, how the items were drawn (``()``: not recorded)
    selection: tuple[EmotionSelection, ...] = ()

    @property
    def question_ids(self) -> list[str]:
        return [q.id for q in self.questions]

    @property
    def attention_checks(self) -> dict[str, tuple[str, str]]:
        """``item id -> (question, expected method)`` of the attention-check items."""
        return {i.id: (i.check_question, i.expected) for i in self.items if i.is_check}


def build_study(
    results_root: str | os.PathLike,
    methods: tuple[str, str] = ("baseline", "asccl"),
    setting: str = "inter_id",
    items_per_emotion: int = 10,
    seed: int = 0,
    attention_checks: int = 2,
    questions: Sequence[Question] = DEFAULT_QUESTIONS,
) -> StudyDefinition:
    """Draw the study's items from a results folder (see :mod:`asccl.evaluation.results`).

    Per emotion, ``items_per_emotion`` clips (all of them when fewer) among those both
    ``methods`` have in ``setting``; plus ``attention_checks`` check items drawn from the
    non-neutral clips that have both a source and a reference. Clips only one method has
    (and emotions whose clips are all such) are left out and recorded in ``selection``.

    Raises:
        ValueError: a method or the setting is absent, no emotion has a clip both methods
            have, or checks were asked for and no clip can make one.
    """
    if len(methods) != 2 or methods[0] == methods[1]:
        raise ValueError(f"methods must be two different names, got {methods}")
    if items_per_emotion < 1:
        raise ValueError(f"items_per_emotion must be >= 1, got {items_per_emotion}")
    index = scan_results(results_root)
    root = index.root
    for method in methods:
        if not index.select(method=method, setting=setting):
            raise ValueError(
                f"{root}: no results for method {method!r} in setting {setting!r}; "
                f"methods: {index.methods}, settings: {index.settings}"
            )
    rng = random.Random(seed)
    items: list[StudyItem] = []
    check_pool: list[StudyItem] = []
    selection: list[EmotionSelection] = []
    for emotion in index.emotions:
        per_method = [
            {c.name: c for c in index.select(method=m, setting=setting, emotion=emotion)}
            for m in methods
        ]
        if not per_method[0] and not per_method[1]:  # another method's emotion
            continue
        shared = sorted(set(per_method[0]) & set(per_method[1]))
        drawn = min(items_per_emotion, len(shared))
        selection.append(
            EmotionSelection(
                emotion=emotion,
                clips=(len(per_method[0]), len(per_method[1])),
                shared=len(shared),
                drawn=drawn,
                missing=(
                    tuple(sorted(set(per_method[1]) - set(per_method[0]))),
                    tuple(sorted(set(per_method[0]) - set(per_method[1]))),
                ),
            )
        )
        for name in sorted(rng.sample(shared, drawn)):
            a, b = per_method[0][name], per_method[1][name]
            reference = a.reference or b.reference
            items.append(
                StudyItem(
                    id=f"{emotion}/{name}",
                    emotion=emotion,
                    clip=name,
                    methods=(methods[0], methods[1]),
                    videos=(_rel(a.path, root), _rel(b.path, root)),
                    reference=_rel(reference, root) if reference else None,
                )
            )
        for name in shared:
            clip = per_method[0][name]
            if emotion != "neutral" and clip.source and clip.reference:
                check_pool.append(
                    StudyItem(
                        id=f"check/{emotion}/{name}",
                        emotion=emotion,
                        clip=name,
                        methods=CHECK_METHODS,
                        videos=(_rel(clip.source, root), _rel(clip.reference, root)),
                        reference=_rel(clip.reference, root),
                        expected=REFERENCES,
                        check_question=CHECK_QUESTION,
                    )
                )
    if not items:
        counts = ", ".join(f"{s.emotion}: {s.clips[0]} and {s.clips[1]}" for s in selection)
        raise ValueError(
            f"{root}: {methods[0]} and {methods[1]} share no clip in setting {setting!r}, in no "
            f"emotion (clips each has: {counts}); a result's name must match across methods"
        )
    if attention_checks > len(check_pool):
        raise ValueError(
            f"{root}: {attention_checks} attention checks asked for, only {len(check_pool)} "
            "non-neutral clips have both a source and a reference"
        )
    checks = sorted(rng.sample(check_pool, attention_checks), key=lambda i: i.id)
    if attention_checks and CHECK_QUESTION not in [q.id for q in questions]:
        raise ValueError(f"attention checks ask question {CHECK_QUESTION!r}; it is not asked")
    return StudyDefinition(
        methods=(methods[0], methods[1]),
        setting=setting,
        items_per_emotion=items_per_emotion,
        seed=seed,
        results_root=str(root.resolve()),  # (`asccl study create` records it relative)
        questions=tuple(questions),
        items=tuple(items + checks),
        selection=tuple(selection),
    )


#: clip names :func:`describe_selection` prints per method and emotion (then a count)
MAX_NAMES_SHOWN = 5


def describe_selection(
    study: StudyDefinition, listed_in: str = "the study definition"
) -> list[str]:
    """One line per emotion: each method's clips, the shared and drawn counts, fewer drawn
    than asked, and the clips left out (at most :data:`MAX_NAMES_SHOWN` names per method,
    then "and N more (all in ``listed_in``)"). ``[]`` when the selection is not recorded."""
    (a, b), asked = study.methods, study.items_per_emotion
    lines = []
    for s in study.selection:
        line = f"{s.emotion}: {a} {s.clips[0]} clip{'s' * (s.clips[0] != 1)}, {b} {s.clips[1]}"
        if s.shared == 0:
            line += ": no clip that every method has: left out"
        else:
            line += f", shared {s.shared}, drawn {s.drawn}"
            if s.drawn < asked:
                line += f" (fewer than the {asked} asked: only {s.shared} shared)"
        for method, names in zip(study.methods, s.missing, strict=True):
            if names:
                shown = ", ".join(names[:MAX_NAMES_SHOWN])
                more = len(names) - MAX_NAMES_SHOWN
                shown += f" and {more} more (all in {listed_in})" if more > 0 else ""
                line += f"; not in {method} ({len(names)}, left out): {shown}"
        lines.append(line)
    return lines


def _rel(path: Path, root: Path) -> str:
    return Path(path).relative_to(root).as_posix()


# --- TOML ---------------------------------------------------------------------------------
# Written by hand (no writer in the standard library): JSON string and array syntax is
# valid TOML for the values used here (strings, ints, arrays of strings).

_TOP_KEYS = ("methods", "setting", "items_per_emotion", "seed", "results_root")
_SELECTION_KEYS = [f.name for f in fields(EmotionSelection)]


def _toml_value(v) -> str:
    if isinstance(v, bool) or not isinstance(v, (str, int, list, tuple)):
        raise TypeError(f"cannot write {v!r} to TOML")
    return json.dumps(list(v) if isinstance(v, tuple) else v, ensure_ascii=False)


def to_toml(study: StudyDefinition) -> str:
    lines = [f"{k} = {_toml_value(getattr(study, k))}" for k in _TOP_KEYS]
    for q in study.questions:
        lines += ["", "[[questions]]", f"id = {_toml_value(q.id)}"]
        lines.append(f"prompt = {_toml_value(q.prompt)}")
    for item in study.items:
        lines += ["", "[[items]]"]
        for f in fields(StudyItem):
            v = getattr(item, f.name)
            if v is not None:
                lines.append(f"{f.name} = {_toml_value(v)}")
    for s in study.selection:
        lines += ["", "[[selection]]"]
        lines += [f"{k} = {_toml_value(getattr(s, k))}" for k in _SELECTION_KEYS]
    return "\n".join(lines) + "\n"


def write_study_toml(study: StudyDefinition, path: str | os.PathLike) -> Path:
    """Write ``study`` as TOML (atomically); :func:`read_study_toml` reads it back equal."""
    return write_text_atomic(path, to_toml(study))


def _check_keys(table: dict, allowed: Sequence[str], where: str, path: Path) -> None:
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {unknown} in {where}; valid: {list(allowed)}")


def read_study_toml(path: str | os.PathLike) -> StudyDefinition:
    """Read a study written by :func:`write_study_toml` (or by hand).

    Raises:
        ValueError: invalid TOML, unknown or missing keys, or questions/checks that disagree.
    """
    path = Path(path)
    try:
        data = tomllib.loads(path.read_bytes().decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: invalid TOML ({exc})") from None
    _check_keys(data, [*_TOP_KEYS, "questions", "items", "selection"], "the study", path)
    question_keys = [f.name for f in fields(Question)]
    item_keys = [f.name for f in fields(StudyItem)]
    try:
        questions = []
        for q in data.get(
            "questions", [{"id": q.id, "prompt": q.prompt} for q in DEFAULT_QUESTIONS]
        ):
            _check_keys(q, question_keys, "[[questions]]", path)
            questions.append(Question(**q))
        items = []
        for it in data.get("items", []):
            _check_keys(it, item_keys, "[[items]]", path)
            it = dict(it, methods=tuple(it["methods"]), videos=tuple(it["videos"]))
            items.append(StudyItem(**it))
        selection = []
        for s in data.get("selection", []):  # absent in files written before it was recorded
            _check_keys(s, _SELECTION_KEYS, "[[selection]]", path)
            clips = _pair(s["clips"], "clips", path)
            missing = _pair(s.get("missing", [[], []]), "missing", path)
            selection.append(EmotionSelection(**dict(s, clips=clips, missing=missing)))
        study = StudyDefinition(
            methods=tuple(data["methods"]),
            setting=data["setting"],
            items_per_emotion=_int(data, "items_per_emotion", path),
            seed=_int(data, "seed", path),
            results_root=data.get("results_root", ""),
            questions=tuple(questions),
            items=tuple(items),
            selection=tuple(selection),
        )
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{path}: missing or malformed key ({exc})") from None
    _validate(study, path)
    return study


def _pair(value, key: str, path: Path) -> tuple:
    """``[x, y]`` of a ``[[selection]]`` table as a tuple (lists inside as tuples too)."""
    if not isinstance(value, list) or len(value) != 2:
        raise ValueError(f"{path}: {key} of [[selection]] must be a pair [baseline, ours]")
    return tuple(tuple(v) if isinstance(v, list) else v for v in value)


def _int(data: dict, key: str, path: Path) -> int:
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{path}: {key} must be an integer, got {value!r}")
    return value


def _validate(study: StudyDefinition, path: Path) -> None:
    if len(study.methods) != 2 or study.methods[0] == study.methods[1]:
        raise ValueError(f"{path}: methods must be two different names, got {study.methods}")
    ids = [i.id for i in study.items]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{path}: duplicate item ids")
    if len(set(study.question_ids)) != len(study.question_ids):
        raise ValueError(f"{path}: duplicate question ids")
    for item in study.items:
        if len(item.methods) != 2 or len(item.videos) != 2:
            raise ValueError(f"{path}: item {item.id!r} needs two methods and two videos")
        if item.is_check and (
            item.expected not in item.methods or item.check_question not in study.question_ids
        ):
            raise ValueError(
                f"{path}: check item {item.id!r}: expected {item.expected!r} must be one of "
                f"{item.methods} and check_question one of {study.question_ids}"
            )
    for s in study.selection:
        counts = (*s.clips, s.shared, s.drawn)
        names = [n for ns in s.missing for n in ns]
        if not (
            all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in counts)
            and s.drawn <= s.shared <= min(s.clips)
            and all(isinstance(n, str) for n in names)
            and [len(m) for m in s.missing] == [s.clips[1] - s.shared, s.clips[0] - s.shared]
        ):
            raise ValueError(
                f"{path}: [[selection]] of {s.emotion!r}: needs counts >= 0 with drawn <= "
                "shared <= each method's clips, and missing names, one per clip the other "
                "method has beyond the shared ones"
            )
