"""``SynthConfig``: the settings of ``asccl data synth``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asccl.config import is_int, is_number, path_field, require

#: Bump when a change to the synthesiser changes what a clip looks or sounds like: clips
#: recorded with another recipe are redone. synth-2: OpenCV's pixel centres in the
#: drawing canvas, the mouth painter, the still image's resize and the warp's upsampled map
#: (synth-1's images sat up to ~0.4 px off their recorded landmarks).
RECIPE = "synth-2"
MAX_SPEAKERS = 99  #: speaker ids W901..M999
#: Sentence ids 001..027: disgusted numbers the first three 028-030 (MEAD's convention).
MAX_SENTENCES = 27


@dataclass(frozen=True)
class SynthConfig:
    """Settings of ``asccl data synth`` (every one a ``--key value`` flag)."""

    out: Path = Path("runs/synth")  #: output folder (``MEAD/``, ``ground_truth/``, ...)
    speakers: int = 3  #: speakers W901, M902, W903, M904, ... (W901: the astronaut photo)
    sentences: int = 3  #: sentences per emotion (ids 001..)
    seed: int = 0  #: head motion, blinks, expression wobble, noise
    size: int = 256  #: frame side (pixels, even)
    fps: int = 30  #: MEAD's frame rate
    duration: float = 3.0  #: seconds of speech per sentence at the neutral rate
    workers: int = 0  #: processes; 0 runs in this process

    def __post_init__(self) -> None:
        """Check every setting; :class:`~asccl.config.ConfigError` names the first bad key."""
        path_field(self, "out")
        require(is_int(self.speakers, 1, MAX_SPEAKERS), self, "speakers",
                f"must be an integer in 1..{MAX_SPEAKERS}")  # fmt: skip
        require(is_int(self.sentences, 1, MAX_SENTENCES), self, "sentences",
                f"must be an integer in 1..{MAX_SENTENCES}")  # fmt: skip
        require(is_int(self.seed, 0), self, "seed", "must be an integer >= 0")
        require(is_int(self.size, 32, 1024) and self.size % 2 == 0, self, "size",
                "must be an even integer in 32..1024")  # fmt: skip
        require(is_int(self.fps, 20, 60), self, "fps", "must be an integer in 20..60")
        require(is_number(self.duration) and 0.5 <= self.duration <= 20, self, "duration",
                "must be a number of seconds in 0.5..20")  # fmt: skip
        require(is_int(self.workers, 0, 256), self, "workers", "must be an integer in 0..256")

    def clip_settings(self) -> dict[str, Any]:
        """What shapes a clip's content, recorded with it (a rerun redoes clips made with
        other values). Counts and workers are not among them: more speakers or sentences
        add clips and keep the others."""
        return {"recipe": RECIPE, "seed": self.seed, "size": self.size, "fps": self.fps,
                "duration": float(self.duration)}  # fmt: skip
