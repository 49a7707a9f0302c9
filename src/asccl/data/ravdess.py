"""Index RAVDESS from its file-name code: ``MM-VV-EE-II-SS-RR-AA.mp4`` / ``.wav``.

Fields: modality (01 audio-video, 02 video only, 03 audio only), vocal channel (01 speech,
02 song), emotion (01 neutral, 02 calm, 03 happy, 04 sad, 05 angry, 06 fearful, 07 disgust,
08 surprised), intensity (01 normal, 02 strong; neutral has no strong), statement (01 "Kids
are talking by the door", 02 "Dogs are sitting by the door"), repetition (01, 02), actor
(01-24, odd male, even female), in folders ``Actor_NN``.

One :class:`~asccl.data.clips.Clip` per recording (actor, channel, emotion, intensity,
statement, repetition): video from the audio-video file (else video-only), audio from the
audio-only ``.wav`` when present, else the audio-video file's own track. Emotions are mapped
to MEAD's names (fearful -> fear, disgust -> disgusted); ``sentence`` is
``"<statement>-<repetition>"`` so that pairing matches the same take number.

A file or folder whose name is not valid UTF-8 is reported (bytes escaped, e.g. ``\\xff``)
and skipped; a root path that is not UTF-8 is refused whole; a root with no recording at all
is one error saying what was expected where (a root that is one actor's folder is named so).
"""

from __future__ import annotations

import re
from pathlib import Path

from asccl.data.clip_index import require_utf8
from asccl.data.clips import Clip
from asccl.data.errors import DataError

RAVDESS_EMOTIONS = {
    "01": "neutral", "02": "calm", "03": "happy", "04": "sad",
    "05": "angry", "06": "fear", "07": "disgusted", "08": "surprised",
}  # fmt: skip
NAME = re.compile(r"^(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})\.(mp4|wav)$")
ACTOR = re.compile(r"^Actor_(\d{2})$")
#: the layout, as told to a user whose root holds no recording
RAVDESS_LAYOUT = "<root>/Actor_NN/MM-VV-EE-II-SS-RR-AA.mp4 (or .wav; the Actor_NN folders may "
RAVDESS_LAYOUT += "sit one level down, as in the Zenodo archives)"


def parse_ravdess_name(path: Path) -> dict[str, str]:
    """The seven fields of a RAVDESS file name, validated; :class:`DataError` otherwise."""
    match = NAME.match(path.name)
    if not match:
        raise DataError(path, "not a RAVDESS name (MM-VV-EE-II-SS-RR-AA.mp4 or .wav)")
    modality, channel, emotion, intensity, statement, repetition, actor = match.groups()[:7]
    checks = [
        (modality in ("01", "02", "03"), f"modality {modality} (01-03)"),
        (channel in ("01", "02"), f"vocal channel {channel} (01 speech, 02 song)"),
        (emotion in RAVDESS_EMOTIONS, f"emotion {emotion} (01-08)"),
        (intensity in ("01", "02"), f"intensity {intensity} (01-02)"),
        (not (emotion == "01" and intensity == "02"), "neutral has no strong intensity"),
        (statement in ("01", "02"), f"statement {statement} (01-02)"),
        (repetition in ("01", "02"), f"repetition {repetition} (01-02)"),
        (1 <= int(actor) <= 24, f"actor {actor} (01-24)"),
        ((modality == "03") == (match.group(8) == "wav"), "modality and extension disagree"),
    ]
    for ok, what in checks:
        if not ok:
            raise DataError(path, f"invalid RAVDESS field: {what}")
    return {
        "modality": modality, "channel": channel, "emotion": emotion, "intensity": intensity,
        "statement": statement, "repetition": repetition, "actor": actor,
    }  # fmt: skip


def index_ravdess(
    root: str | Path, *, include_song: bool = False, speakers: list[str] | None = None
) -> tuple[list[Clip], list[DataError]]:
    """List RAVDESS recordings under ``root`` (the folder of ``Actor_NN`` folders, possibly
    nested one level as in the Zenodo archives). Song recordings are skipped unless
    ``include_song``; ``speakers`` (``Actor_NN`` names) restricts the listing to them.

    Raises:
        DataError: ``root`` is not a folder, or not valid UTF-8; no recording found, or none
            of ``speakers`` has any (the message says what was expected where, with an
            example path, or which speakers are there).
    """
    root = Path(root)
    require_utf8(root, "RAVDESS root")
    if not root.is_dir():
        raise DataError(root, "RAVDESS root is not a folder")
    problems: list[DataError] = []
    takes: dict[tuple[str, ...], dict[str, Path]] = {}
    actor_dirs = sorted({p for p in root.rglob("Actor_*") if p.is_dir()})
    for actor_dir in actor_dirs:
        try:
            require_utf8(actor_dir, "folder path")
        except DataError as exc:
            problems.append(exc)
            continue
        folder_actor = ACTOR.match(actor_dir.name)
        if not folder_actor:
            problems.append(DataError(actor_dir, "expected a folder named Actor_NN"))
            continue
        for file in sorted(actor_dir.iterdir()):
            try:
                require_utf8(file, "name")
                fields = parse_ravdess_name(file)
            except DataError as exc:
                problems.append(exc)
                continue
            if fields["actor"] != folder_actor.group(1):
                problems.append(
                    DataError(file, f"actor field differs from folder {actor_dir.name}")
                )
                continue
            if fields["channel"] == "02" and not include_song:
                continue
            key = tuple(
                fields[k]
                for k in ("actor", "channel", "emotion", "intensity", "statement", "repetition")
            )
            takes.setdefault(key, {})[fields["modality"]] = file
    clips = []
    for (actor, channel, emotion, intensity, statement, repetition), files in sorted(takes.items()):
        speaker = f"Actor_{actor}"
        name = f"{channel}-{emotion}-{intensity}-{statement}-{repetition}-{actor}"
        clips.append(
            Clip(
                dataset="ravdess",
                speaker=speaker,
                emotion=RAVDESS_EMOTIONS[emotion],
                intensity=int(intensity),
                sentence=f"{statement}-{repetition}" + ("-song" if channel == "02" else ""),
                clip_id=f"{speaker}/{name}",
                video=files.get("01") or files.get("02"),
                audio=files.get("03") or files.get("01"),
            )
        )
    if not clips:
        raise DataError(root, _no_clips(root, actor_dirs, problems, include_song))
    if speakers is not None:
        found = sorted({c.speaker for c in clips})
        clips = [c for c in clips if c.speaker in speakers]
        if not clips:
            raise DataError(
                root, f"none of the speakers asked for ({', '.join(speakers)}) has recordings "
                f"here (found: {', '.join(found)})"
            )  # fmt: skip
    return clips, problems


def _no_clips(root: Path, actor_dirs: list[Path], problems: list, include_song: bool) -> str:
    """Why ``root`` gave no recording, with the layout and an example path."""
    top = root  # where the Actor_NN folders should be
    if ACTOR.match(root.name) or any(NAME.match(p.name) for p in root.iterdir()):
        why = f"{root} holds recordings itself (the root is too low): give the folder "
        why += f"holding the Actor_NN folders, {root.resolve().parent}"
        top = root.resolve().parent
    elif actor_dirs and problems:
        why = f"Actor_NN folders found, but no recording in them (first problem: {problems[0]})"
    elif actor_dirs and not include_song:
        why = "Actor_NN folders found, but only song recordings (vocal channel 02) or none"
    elif any(root.iterdir()):
        why = "no Actor_NN folder at the top level or below"
    else:
        why = "the folder is empty"
    example = top / "Actor_01" / "01-01-03-01-01-01-01.mp4"
    return f"no RAVDESS recordings: {why}; expected {RAVDESS_LAYOUT}, e.g. {example}"
