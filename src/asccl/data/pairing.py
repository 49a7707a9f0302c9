"""Which (neutral, emotional) clips say the same sentence: explicit, configurable rules.

MEAD (the authors' choice): neutral ``level_1`` against emotional ``level_3``, sentences
001-003. For ``disgusted`` MEAD numbers the same three sentences 028-030 for some speakers
and 001-003 for others (in the authors' ``aligned_path36.json``: 19 and 17 of their 36), so
the numbering is read per speaker from what is on disk (:func:`resolve_numbering`): a
speaker whose ``disgusted/level_3`` holds ``030`` is paired 001->028, 002->029, 003->030,
any other speaker 001->001, 002->002, 003->003 (the test the authors' script
``scmc/align_by_audios.py`` makes). RAVDESS: neutral (normal intensity) against strong
intensity, same statement and take.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from asccl.config import is_int, require
from asccl.data.clips import Clip, ClipPair
from asccl.data.errors import DataError

#: The 36 MEAD speakers of the authors' pair file (``aligned_path36.json``), in the order
#: of their script's ``--actors`` default.
AUTHORS_SPEAKERS: tuple[str, ...] = (
    "M035", "M023", "W026", "W025", "W021", "W019", "M040", "M011", "W038", "W023", "W033",
    "W040", "M032", "W036", "M022", "M039", "W035", "W016", "M041", "M027", "M031", "W014",
    "M005", "M019", "M025", "M042", "M028", "M037", "M033", "M024", "W011", "W028", "W018",
    "M034", "M029", "M007",
)  # fmt: skip


@dataclass(frozen=True)
class PairingRule:
    """How clip pairs are formed.

    Attributes:
        emotions: emotional clips to pair with neutral ones.
        neutral_intensity, emotional_intensity: intensity of each side, as
            :attr:`~asccl.data.clips.Clip.intensity` (MEAD level 1-3, RAVDESS 1 normal or
            2 strong): an integer >= 1.
        sentences: neutral sentence ids to use (empty: every neutral sentence).
        sentence_map: per emotion, neutral sentence id -> that emotion's id of the same
            sentence, where a speaker's clips are numbered that way; emotions not listed
            use the neutral id unchanged.
        numbering_on_disk: True: per speaker, an emotion's ``sentence_map`` is used only
            when that speaker has (with a video) the clip it maps the last wanted sentence
            to (``030`` for MEAD's disgusted), else the neutral ids; False: always the map.
        speakers: pair only these speakers (empty: every speaker).
    """

    emotions: tuple[str, ...] = ("angry", "disgusted", "fear", "happy", "sad", "surprised")
    neutral_intensity: int = 1
    emotional_intensity: int = 3
    sentences: tuple[str, ...] = ("001", "002", "003")
    sentence_map: dict[str, dict[str, str]] = field(
        default_factory=lambda: {"disgusted": {"001": "028", "002": "029", "003": "030"}}
    )
    numbering_on_disk: bool = True
    speakers: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("neutral_intensity", "emotional_intensity"):  # levels count from 1
            require(is_int(getattr(self, name), 1), self, name,
                    "must be an integer >= 1 (MEAD levels 1-3, RAVDESS 1-2)")  # fmt: skip


MEAD_RULE = PairingRule()
#: The authors' clip-pair list: MEAD's rule on their 36 speakers (``--preset authors``).
AUTHORS_RULE = PairingRule(speakers=AUTHORS_SPEAKERS)
RAVDESS_RULE = PairingRule(
    emotions=("calm", "happy", "sad", "angry", "fear", "disgusted", "surprised"),
    neutral_intensity=1,
    emotional_intensity=2,
    sentences=(),
    sentence_map={},
)
DEFAULT_RULES = {"mead": MEAD_RULE, "ravdess": RAVDESS_RULE}
#: ``DataConfig.preset`` -> (dataset, rule).
PAIRING_PRESETS: dict[str, tuple[str, PairingRule]] = {"authors": ("mead", AUTHORS_RULE)}


@dataclass(frozen=True)
class Numbering:
    """How one speaker's clips of one emotion are numbered, as found on disk.

    Attributes:
        speaker, emotion: whose clips.
        mapping: neutral sentence id -> the emotional id paired with it.
        mapped: True when the rule's ``sentence_map`` is used, False for the neutral ids.
        reason: what decided it, e.g. ``"030 on disk"``.
    """

    speaker: str
    emotion: str
    mapping: dict[str, str]
    mapped: bool
    reason: str

    def describe(self) -> str:
        """One line, e.g. ``"W021/disgusted: 001->001, 002->002 (no 030 on disk)"``."""
        pairs = ", ".join(f"{k}->{v}" for k, v in sorted(self.mapping.items()))
        return f"{self.speaker}/{self.emotion}: {pairs} ({self.reason})"


def resolve_numbering(clips: list[Clip], rule: PairingRule) -> list[Numbering]:
    """Per speaker (of ``rule``) and emotion of ``rule.sentence_map``: which numbering to pair.

    The map's ids are used when the speaker has a video at ``rule.emotional_intensity``
    numbered as the map's last wanted target (MEAD's disgusted: ``030``): a clip of
    ``clips``, or that file beside the speaker's other videos of the emotion (a clip left
    out of the index, e.g. one whose video failed its probe, still shows the numbering);
    otherwise the neutral ids. ``rule.numbering_on_disk=False``: the map always. Returns
    one :class:`Numbering` per (speaker, emotion), sorted.
    """
    on_disk: set[tuple[str, str, str]] = set()
    videos: dict[tuple[str, str], set[tuple[Path, str]]] = {}
    for c in clips:
        if c.intensity == rule.emotional_intensity and c.video is not None:
            on_disk.add((c.speaker, c.emotion, c.sentence))
            video = Path(c.video)
            videos.setdefault((c.speaker, c.emotion), set()).add((video.parent, video.suffix))

    def present(speaker: str, emotion: str, sentence: str) -> bool:
        if (speaker, emotion, sentence) in on_disk:
            return True
        folders = videos.get((speaker, emotion), ())
        return any((folder / f"{sentence}{suffix}").is_file() for folder, suffix in folders)

    choices = []
    for speaker in _speakers(clips, rule):
        for emotion in (e for e in rule.emotions if rule.sentence_map.get(e)):
            table = rule.sentence_map[emotion]
            wanted = [s for s in table if not rule.sentences or s in rule.sentences]
            if not wanted:
                continue
            mapping = {s: table[s] for s in wanted}
            if not rule.numbering_on_disk:
                choice = Numbering(speaker, emotion, mapping, True, "the rule's fixed map")
            else:
                last = max(mapping.values())
                if present(speaker, emotion, last):
                    choice = Numbering(speaker, emotion, mapping, True, f"{last} on disk")
                else:
                    same = {s: s for s in wanted}
                    choice = Numbering(speaker, emotion, same, False, f"no {last} on disk")
            choices.append(choice)
    return choices


def numbering_notes(choices: list[Numbering]) -> list[str]:
    """One line per (emotion, numbering) naming its speakers, for a run's summary, e.g.
    ``"disgusted: emotional sentences 028-030 (030 on disk) for 2 speakers: M035, W025"``."""
    groups: dict[tuple[str, str, str], list[str]] = {}
    for choice in choices:
        ids = sorted(choice.mapping.values())
        key = (choice.emotion, f"{ids[0]}-{ids[-1]}", choice.reason)
        groups.setdefault(key, []).append(choice.speaker)
    return [
        f"{emotion}: emotional sentences {ids} ({reason}) for {len(names)} "
        f"speaker{'s' if len(names) != 1 else ''}: {', '.join(names)}"
        for (emotion, ids, reason), names in sorted(groups.items())
    ]


def pair_clips(clips: list[Clip], rule: PairingRule) -> tuple[list[ClipPair], list[DataError]]:
    """Form the clip pairs ``rule`` asks for; a missing partner is reported, not fatal.

    Sentence numbering per speaker: :func:`resolve_numbering`."""
    by_key = {(c.speaker, c.emotion, c.intensity, c.sentence): c for c in clips}
    numbering = {(n.speaker, n.emotion): n.mapping for n in resolve_numbering(clips, rule)}
    pairs: list[ClipPair] = []
    problems: list[DataError] = []
    for speaker in _speakers(clips, rule):
        neutral = sorted(
            (c for c in clips if c.speaker == speaker and c.emotion == "neutral"
             and c.intensity == rule.neutral_intensity),
            key=lambda c: c.sentence,
        )  # fmt: skip
        wanted = [c for c in neutral if not rule.sentences or c.sentence in rule.sentences]
        missing = set(rule.sentences) - {c.sentence for c in wanted}
        for sentence in sorted(missing):
            problems.append(DataError(speaker, f"no neutral clip for sentence {sentence}"))
        for emotion in rule.emotions:
            mapping = numbering.get((speaker, emotion), {})
            for source in wanted:
                target = mapping.get(source.sentence, source.sentence)
                partner = by_key.get((speaker, emotion, rule.emotional_intensity, target))
                if partner is None:
                    problems.append(
                        DataError(
                            f"{speaker}/{emotion}",
                            f"no intensity-{rule.emotional_intensity} clip {target} to pair "
                            f"with neutral {source.sentence}",
                        )
                    )
                    continue
                pairs.append(ClipPair(neutral=source, emotional=partner))
    return pairs, problems


def _speakers(clips: list[Clip], rule: PairingRule) -> list[str]:
    """The speakers of ``clips`` that ``rule`` pairs, sorted."""
    found = {c.speaker for c in clips}
    return sorted(found & set(rule.speakers) if rule.speakers else found)
