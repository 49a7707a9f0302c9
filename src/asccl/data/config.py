"""``DataConfig``: the settings of the ``asccl data`` commands, and ``--shard i/n`` parsing.

The settings that shape an item's content (:meth:`DataConfig.pair_settings`,
:meth:`DataConfig.crop_settings`, with :data:`BOX_RULE`) are recorded with each item and
compared on rerun (:mod:`asccl.data.item_settings`).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from asccl.config import ConfigError, is_int
from asccl.data.crop_store import STORE_SUFFIX
from asccl.data.pairing import DEFAULT_RULES, PAIRING_PRESETS, PairingRule


@dataclass(frozen=True)
class DataConfig:
    """Settings of the ``asccl data`` commands (see ``configs/data/*.toml``)."""

    dataset: Literal["mead", "ravdess"] = "mead"  #: the layout of ``root``
    root: Path = Path("demo_data/MEAD")  #: the dataset as distributed
    out: Path = Path("runs/data")  #: where every output of stage 1 goes
    view: str = "front"  #: MEAD camera view
    speakers: list[str] | None = None  #: restrict to these speakers
    pairing: PairingRule | None = None  #: None: the dataset's default rule (or the preset's)
    #: "authors": the authors' clip-pair list (MEAD, their 36 speakers; ``speakers`` may
    #: narrow it); None: ``pairing`` or the dataset's default rule
    preset: Literal["authors"] | None = None
    #: audio features for DTW: "mel" (the paper), "mfcc", or "mfcc_psf" (the authors' file)
    features: Literal["mel", "mfcc", "mfcc_psf"] = "mel"
    dtw_metric: Literal["l1", "euclidean", "cosine"] = "l1"  #: frame distance of the DTW cost
    sample_rate: int = 16000  #: audio is resampled to this rate (Hz) for the features
    crop_size: int = 224  #: side of the square face crops (pixels)
    crop_format: Literal["jpeg", "npy"] = "jpeg"  #: crop store (see asccl.data.crop_store)
    landmark_backend: str = "dlib"  #: 68-point landmark detector: "dlib" or "fan"
    detect_every: int = 10  #: run the face detector every N frames, track in between
    crop_all_clips: bool = False  #: crop every clip, not only those in pairs
    workers: int = 2  #: processes; 0 runs in this process
    shard: str = "0/1"  #: "i/n": this job's share of the items

    def __post_init__(self) -> None:
        """Check every setting; :class:`~asccl.config.ConfigError` names the first bad key."""
        for key in ("root", "out"):
            value = getattr(self, key)
            if not isinstance(value, (str, os.PathLike)) or not str(value):
                raise ConfigError(f"{key}: must be a path, got {value!r}")
            object.__setattr__(self, key, Path(value))
        choices = {
            "dataset": ("mead", "ravdess"),
            "features": ("mel", "mfcc", "mfcc_psf"),
            "dtw_metric": ("l1", "euclidean", "cosine"),
            "crop_format": tuple(STORE_SUFFIX),
        }
        for key, valid in choices.items():
            if getattr(self, key) not in valid:
                raise ConfigError(
                    f"{key}: must be one of {list(valid)}, got {getattr(self, key)!r}"
                )
        for key in ("view", "landmark_backend"):
            if not isinstance(getattr(self, key), str) or not getattr(self, key):
                raise ConfigError(f"{key}: must be a non-empty string, got {getattr(self, key)!r}")
        if self.speakers is not None and (
            not isinstance(self.speakers, list | tuple)
            or not all(isinstance(s, str) and s for s in self.speakers)
        ):
            raise ConfigError(f"speakers: must be a list of speaker names, got {self.speakers!r}")
        if not isinstance(self.crop_all_clips, bool):
            raise ConfigError(f"crop_all_clips: must be true or false, got {self.crop_all_clips!r}")
        for key, (low, high, unit) in _INT_RANGES.items():
            value = getattr(self, key)
            if not is_int(value, low, high):
                raise ConfigError(
                    f"{key}: must be an integer {unit} in {low}..{high}, got {value!r}"
                )
        try:
            parse_shard(self.shard)
        except ValueError as exc:
            raise ConfigError(f"shard: {exc}") from None
        self._check_preset()
        if self.dataset == "ravdess" and self.pairing is not None:
            _check_ravdess_rule(self.pairing)

    def _check_preset(self) -> None:
        if self.preset is None:
            return
        if self.preset not in PAIRING_PRESETS:
            raise ConfigError(
                f"preset: must be one of {list(PAIRING_PRESETS)}, got {self.preset!r}"
            )
        dataset, rule = PAIRING_PRESETS[self.preset]
        if self.dataset != dataset:
            raise ConfigError(
                f"preset: {self.preset!r} is for dataset {dataset!r}, not {self.dataset!r}"
            )
        if self.pairing is not None:
            raise ConfigError(
                f"pairing: preset {self.preset!r} sets the pairing rule; give one of them"
            )
        others = sorted(set(self.speakers or ()) - set(rule.speakers))
        if self.speakers is not None and not self.speakers:
            raise ConfigError("speakers: an empty list leaves nothing to pair")
        if others:
            raise ConfigError(
                f"speakers: {', '.join(others)} not among preset {self.preset!r}'s speakers"
            )

    def rule(self) -> PairingRule:
        """The pairing rule: ``pairing``, else the preset's (narrowed to ``speakers``), else
        the dataset's default."""
        if self.preset is not None:
            rule = PAIRING_PRESETS[self.preset][1]
            if self.speakers is not None:
                rule = replace(rule, speakers=tuple(s for s in rule.speakers if s in self.speakers))
            return rule
        return self.pairing or DEFAULT_RULES[self.dataset]

    def index_speakers(self) -> list[str] | None:
        """The speakers to index: ``speakers``, else the rule's (None: every speaker)."""
        if self.speakers is not None:
            return list(self.speakers)
        return list(self.rule().speakers) or None

    def pair_settings(self) -> dict[str, Any]:
        """The settings a pair file's content depends on (recorded in it, compared on rerun),
        with the feature preset's dtype and DTW tie rule (``audio.FEATURE_PRESETS``)."""
        from asccl.data.audio import FEATURE_PRESETS

        return {"features": self.features, "dtw_metric": self.dtw_metric,
                "sample_rate": self.sample_rate,
                **FEATURE_PRESETS[self.features].settings()}  # fmt: skip

    def crop_settings(self) -> dict[str, Any]:
        """The settings a crop store's content depends on (recorded beside it)."""
        return {"crop_size": self.crop_size, "landmark_backend": self.landmark_backend,
                "detect_every": self.detect_every, **BOX_RULE, **TRACKER_RULE}  # fmt: skip


#: ``DataConfig`` integers: key -> (lowest, highest, unit).
_INT_RANGES: dict[str, tuple[int, int, str]] = {
    "sample_rate": (8000, 192000, "(Hz)"),
    "crop_size": (16, 1024, "(pixels)"),
    "detect_every": (1, 1000, "(frames)"),
    "workers": (0, 1024, "(processes)"),
}

#: The box rule every crop store is made with (:func:`asccl.data.crops.crop_clip`'s
#: arguments), recorded with the store so that a change of it redoes the crops.
BOX_RULE: dict[str, Any] = {"grow": 0.10, "square": False, "smooth_window": 5, "max_gap": 5,
                            "pad": "zeros"}  # fmt: skip

#: The face tracker's rule every crop store is made with, recorded with the store (and in
#: the evaluation's face-track cache) so that a change of it redoes the crops: ``hold``
#: (:class:`~asccl.data.landmarks.FaceTracker`'s frames a lost face is held) and the version
#: of its re-detection rule (2: a re-detected face must continue the track; 1, unrecorded:
#: the largest face at every re-detection).
TRACKER_RULE: dict[str, Any] = {"tracker_rule": 2, "hold": 10}


def _check_ravdess_rule(rule: PairingRule) -> None:
    """A ``[pairing]`` table (or ``--pairing.*``) starts from MEAD's rule, whose intensity 3,
    sentence ids ``001``-``003`` and sentence map no RAVDESS clip has: pairing on them would
    find nothing, or not what was meant. Refused with what to give instead."""
    from asccl.data.ravdess import RAVDESS_EMOTIONS

    hint = ("(a [pairing] table or --pairing.* starts from MEAD's rule: for RAVDESS give "
            "emotional_intensity = 2, sentences = [] or statement-repetition ids like "
            "\"01-01\", sentence_map = {})")  # fmt: skip
    for name in ("neutral_intensity", "emotional_intensity"):
        if getattr(rule, name) not in (1, 2):
            raise ConfigError(f"pairing: {name} {getattr(rule, name)} is not a RAVDESS "
                              f"intensity (1 normal, 2 strong) {hint}")  # fmt: skip
    names = set(RAVDESS_EMOTIONS.values()) - {"neutral"}
    unknown = [e for e in rule.emotions if e not in names]
    if unknown:
        raise ConfigError(f"pairing: emotions {unknown} are not RAVDESS's "
                          f"({', '.join(sorted(names))}) {hint}")  # fmt: skip
    bad = [s for s in rule.sentences if not re.fullmatch(r"\d{2}-\d{2}(-song)?", s)]
    if bad or rule.sentence_map:
        what = f"sentences {bad}" if bad else "a sentence_map"
        raise ConfigError(f"pairing: {what}: RAVDESS clips are named by statement and "
                          f"repetition (01-01 .. 02-02) {hint}")  # fmt: skip


def parse_shard(shard: str) -> tuple[int, int]:
    """``"i/n"`` -> ``(i, n)`` with ``0 <= i < n``."""
    try:
        index, count = (int(part) for part in str(shard).split("/"))
    except ValueError:
        raise ValueError(f"shard must look like i/n (e.g. 0/4), got {shard!r}") from None
    if not 0 <= index < count:
        raise ValueError(f"shard {shard!r}: need 0 <= i < n")
    return index, count
