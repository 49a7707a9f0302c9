"""``"fan"`` backend: the ``face_alignment`` package (S3FD + 2DFAN-4), local weights only.

``face_alignment`` and torch are imported when a :class:`FanLandmarks` is built, not before.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from asccl.data.landmarks.base import check_frame, largest_box
from asccl.optional import require

FAN_WEIGHTS_ENV = "ASCCL_FAN_WEIGHTS"


class FanLandmarks:
    """The ``face_alignment`` package (S3FD detector + 2DFAN-4), the authors' landmarks.

    Thin adapter, imported lazily. It never downloads: ``weights_dir`` (or the
    ``ASCCL_FAN_WEIGHTS`` environment variable) must be a folder holding the two files
    face_alignment would otherwise fetch from https://www.adrianbulat.com/downloads/python-fan/
    (``2DFAN4-cd938726ad.zip`` or the name face_alignment picks for your torch version,
    and ``s3fd-619a316812.pth``). Licence: face_alignment is BSD-3; its 2D-FAN weights were
    trained on 300W-LP, derived from iBUG 300-W: check those terms before commercial use.
    """

    def __init__(
        self, weights_dir: str | os.PathLike | None = None, *, device: str = "cpu"
    ) -> None:
        needs = "the 'fan' landmark backend needs face_alignment"
        hint = (
            f"then put its weight files in a folder named by {FAN_WEIGHTS_ENV} or "
            "weights_dir= (nothing is downloaded)"
        )
        face_alignment = require("face_alignment", needs, hint=hint)
        fa_api = require("face_alignment.api", needs, hint=hint)
        fan_name, sfd_name = fan_weight_files(fa_api)
        if weights_dir is None:
            weights_dir = os.environ.get(FAN_WEIGHTS_ENV)
        if not weights_dir:
            raise FileNotFoundError(
                f"the 'fan' landmark backend needs local weights: set {FAN_WEIGHTS_ENV} or "
                f"weights_dir= to a folder holding {fan_name} and {sfd_name} (from "
                "https://www.adrianbulat.com/downloads/python-fan/)"
            )
        weights_dir = Path(weights_dir)
        missing = [n for n in (fan_name, sfd_name) if not (weights_dir / n).is_file()]
        if missing:
            raise FileNotFoundError(
                f"{weights_dir}: missing {', '.join(missing)} for the 'fan' landmark backend "
                "(from https://www.adrianbulat.com/downloads/python-fan/; nothing is downloaded)"
            )
        with _torch_hub_dir(weights_dir):  # face_alignment finds the FAN file in hub/checkpoints
            self._fa = face_alignment.FaceAlignment(
                face_alignment.LandmarksType.TWO_D,
                device=device,
                face_detector="sfd",
                face_detector_kwargs={"path_to_detector": str(weights_dir / sfd_name)},
            )

    def face_box(self, frame: np.ndarray, near: np.ndarray | None = None) -> np.ndarray | None:
        """S3FD on the whole frame (``near`` is not used)."""
        found = self._fa.face_detector.detect_from_image(check_frame(frame).copy())
        if len(found) == 0:
            return None
        return largest_box(np.asarray(found, dtype=np.float64).reshape(len(found), -1))

    def fit(self, frame: np.ndarray, box: np.ndarray) -> np.ndarray:
        found = self._fa.get_landmarks_from_image(check_frame(frame), detected_faces=[box])
        return np.asarray(found[0][:, :2], dtype=np.float32)

    def detect(self, frame: np.ndarray) -> np.ndarray | None:
        box = self.face_box(frame)
        return None if box is None else self.fit(frame, box)


def fan_weight_files(fa_api: object) -> tuple[str, str]:
    """File names of the 2DFAN-4 and S3FD weights that this face_alignment version loads."""
    import torch

    major_minor = ".".join(torch.__version__.split("+")[0].split(".")[:2])
    by_version = getattr(fa_api, "models_urls", {})
    urls = by_version.get(major_minor, getattr(fa_api, "default_model_urls", None))
    if not urls or "2DFAN-4" not in urls:
        raise ImportError("unsupported face_alignment version: cannot tell its FAN weight file")
    return urls["2DFAN-4"].rsplit("/", 1)[-1], "s3fd-619a316812.pth"


@contextlib.contextmanager
def _torch_hub_dir(weights_dir: Path) -> Iterator[None]:
    """Point ``torch.hub`` at a temporary folder whose ``checkpoints`` is ``weights_dir``."""
    import torch

    previous = torch.hub.get_dir()
    with tempfile.TemporaryDirectory() as hub:
        os.symlink(weights_dir.resolve(), Path(hub) / "checkpoints")
        torch.hub.set_dir(hub)
        try:
            yield
        finally:
            torch.hub.set_dir(previous)
