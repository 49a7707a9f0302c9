"""SyncNet (Chung & Zisserman, "Out of time", 2016) as syncnet_python's ``SyncNetModel.S``.

The module names and ``nn.Sequential`` indices match ``S`` so that the published
``syncnet_v2.model`` (a state dict with ``netcnnaud.*``, ``netfcaud.*``, ``netcnnlip.*``,
``netfclip.*`` keys) loads strictly. Two streams, each ending in a 1024-d embedding:

- audio: ``(B, 1, 13, 20)`` python_speech_features MFCC (13 coefficients x 20 steps at
  100 Hz = 0.2 s), unnormalised, from 16-bit integer samples;
- lip: ``(B, 3, 5, 224, 224)`` five consecutive 25 fps face crops, BGR floats in 0..255,
  unnormalised.
"""

from __future__ import annotations

import os
import pickle

import torch
from torch import Tensor, nn

from asccl.weights import WeightsSpec, require_weights_file

SYNCNET_WEIGHTS = WeightsSpec(
    what="SyncNet lip-sync model (syncnet_python)",
    filename="syncnet_v2.model",
    source=(
        "joonson/syncnet_python (download_model.sh: "
        "http://www.robots.ox.ac.uk/~vgg/software/lipsync/data/syncnet_v2.model)"
    ),
    env_var="ASCCL_SYNCNET_WEIGHTS",
    flag="--syncnet-weights",
)

#: Input shapes of one window, without the batch dimension.
AUDIO_WINDOW_SHAPE = (1, 13, 20)
LIP_WINDOW_SHAPE = (3, 5, 224, 224)
EMBED_DIM = 1024


def _conv2d_block(c_in: int, c_out: int, kernel, padding) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, kernel, padding=padding), nn.BatchNorm2d(c_out), nn.ReLU()]


def _conv3d_block(c_in: int, c_out: int, kernel, stride=1, padding=0) -> list[nn.Module]:
    return [
        nn.Conv3d(c_in, c_out, kernel, stride=stride, padding=padding),
        nn.BatchNorm3d(c_out),
        nn.ReLU(),
    ]


def _fc_head(out_dim: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, out_dim)
    )


class SyncNet(nn.Module):
    """SyncNet's two streams; frozen and in eval mode (BatchNorm uses its running stats).

    The layer order (hence the state-dict indices) is syncnet_python's:
    ``netcnnaud`` conv/bn/relu blocks at 0, 4, 8, 11, 14, 18 with max-pools at 3, 7, 17;
    ``netcnnlip`` blocks at 0, 4, 8, 11, 14, 18 with max-pools at 3, 7, 17;
    ``netfcaud`` / ``netfclip`` Linear 0, BatchNorm1d 1, Linear 3.
    """

    def __init__(self, embed_dim: int = EMBED_DIM) -> None:
        super().__init__()
        self.netcnnaud = nn.Sequential(
            *_conv2d_block(1, 64, 3, 1),  # 0-2
            nn.MaxPool2d(kernel_size=1, stride=1),  # 3 (a no-op, kept for the indices)
            *_conv2d_block(64, 192, 3, 1),  # 4-6
            nn.MaxPool2d(kernel_size=3, stride=(1, 2)),  # 7
            *_conv2d_block(192, 384, 3, 1),  # 8-10
            *_conv2d_block(384, 256, 3, 1),  # 11-13
            *_conv2d_block(256, 256, 3, 1),  # 14-16
            nn.MaxPool2d(kernel_size=3, stride=2),  # 17
            *_conv2d_block(256, 512, (5, 4), 0),  # 18-20 -> (B, 512, 1, 1)
        )
        self.netfcaud = _fc_head(embed_dim)
        self.netfclip = _fc_head(embed_dim)
        self.netcnnlip = nn.Sequential(
            *_conv3d_block(3, 96, (5, 7, 7), stride=(1, 2, 2)),  # 0-2
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2)),  # 3
            *_conv3d_block(96, 256, (1, 5, 5), stride=(1, 2, 2), padding=(0, 1, 1)),  # 4-6
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),  # 7
            *_conv3d_block(256, 256, (1, 3, 3), padding=(0, 1, 1)),  # 8-10
            *_conv3d_block(256, 256, (1, 3, 3), padding=(0, 1, 1)),  # 11-13
            *_conv3d_block(256, 256, (1, 3, 3), padding=(0, 1, 1)),  # 14-16
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2)),  # 17
            *_conv3d_block(256, 512, (1, 6, 6)),  # 18-20 -> (B, 512, 1, 1, 1)
        )
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> SyncNet:
        return super().train(False)

    def forward_aud(self, mfcc: Tensor) -> Tensor:
        """``(B, 1, 13, 20)`` MFCC windows -> ``(B, 1024)`` audio embeddings."""
        _check_shape(mfcc, AUDIO_WINDOW_SHAPE, "audio MFCC windows")
        mid = self.netcnnaud(mfcc)  # (B, 512, 1, 1)
        return self.netfcaud(mid.flatten(1))

    def forward_lip(self, frames: Tensor) -> Tensor:
        """``(B, 3, 5, 224, 224)`` BGR 0..255 lip windows -> ``(B, 1024)`` video embeddings."""
        _check_shape(frames, LIP_WINDOW_SHAPE, "lip windows")
        mid = self.netcnnlip(frames)  # (B, 512, 1, 1, 1)
        return self.netfclip(mid.flatten(1))


def _check_shape(x: Tensor, window: tuple[int, ...], what: str) -> None:
    if x.ndim != len(window) + 1 or tuple(x.shape[1:]) != window:
        expected = ", ".join(("B", *map(str, window)))
        raise ValueError(f"{what} must have shape ({expected}), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{what} must be floating point, got {x.dtype}")


def load_syncnet(path: str | os.PathLike | None = None) -> SyncNet:
    """:class:`SyncNet` with the published ``syncnet_v2.model`` weights, loaded strictly.

    ``path=None`` reads ``ASCCL_SYNCNET_WEIGHTS``. The file is read with
    ``torch.load(weights_only=True)``: syncnet_python's own loader iterates it as a
    ``name -> tensor`` mapping, so it is a state dict and needs no code unpickled. A state
    dict written before PyTorch 0.4.1 lacks BatchNorm's ``num_batches_tracked`` buffers
    (unused in eval mode); those, and only those, may be missing.

    Raises:
        MissingWeightsError: no path given, or no file there.
        ValueError: the file is not a loadable state dict, or its keys or shapes differ
            from SyncNet's (the message names the file and the keys).
    """
    file = require_weights_file(path, SYNCNET_WEIGHTS)
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as err:
        raise ValueError(
            f"{file}: cannot be read as a SyncNet state dict with torch.load(weights_only=True) "
            f"({str(err).splitlines()[0] if str(err) else type(err).__name__}). A pickled "
            f"whole model is refused on purpose; get {SYNCNET_WEIGHTS.filename} from "
            f"{SYNCNET_WEIGHTS.source}."
        ) from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{file}: expected a state dict, found a {type(state).__name__}")
    model = SyncNet()
    expected = model.state_dict()
    optional = {k for k in expected if k.endswith(".num_batches_tracked")}
    missing = sorted(set(expected) - set(state) - optional)
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"{file}: not a syncnet_python SyncNet state dict; missing keys {_few(missing)}, "
            f"unexpected keys {_few(unexpected)}"
        )
    wrong = [
        f"{k} {tuple(v.shape)} (expected {tuple(expected[k].shape)})"
        for k, v in state.items()
        if tuple(v.shape) != tuple(expected[k].shape)
    ]
    if wrong:
        raise ValueError(f"{file}: tensors of the wrong shape: {_few(wrong)}")
    full = {**{k: expected[k] for k in optional}, **state}
    model.load_state_dict(full, strict=True)
    return model


def _few(items: list[str], limit: int = 6) -> str:
    if not items:
        return "none"
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more
