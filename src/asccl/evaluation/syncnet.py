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
from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

from asccl.io import fill_batchnorm_counters
from asccl.weights import WeightsSpec, load_pretrained

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


def syncnet_filter(state: Mapping[str, Any], model: nn.Module) -> dict[str, Any]:
    """``filter_fn`` for ``syncnet_v2.model``: unwrap a ``{"state_dict": ...}`` container and
    add the BatchNorm ``num_batches_tracked`` counters a pre-0.4.1 file lacks."""
    if isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]
    return fill_batchnorm_counters(state, model)


def load_syncnet(path: str | os.PathLike | None = None) -> SyncNet:
    """:class:`SyncNet` with the published ``syncnet_v2.model`` weights, loaded strictly.

    ``path=None`` reads ``ASCCL_SYNCNET_WEIGHTS``. The file is read with
    ``torch.load(weights_only=True)``: syncnet_python's own loader iterates it as a
    ``name -> tensor`` mapping, so it is a state dict and needs no code unpickled (a
    pickled whole model is refused on purpose). A state dict written before PyTorch 0.4.1
    lacks BatchNorm's ``num_batches_tracked`` buffers (unused in eval mode); those, and only
    those, may be missing.

    Raises:
        MissingWeightsError: no path given, or no file there.
        CheckpointError: (a ``ValueError``) the file is not a loadable state dict, its keys
            or shapes differ from SyncNet's, or it holds NaN/Inf (one line naming the file).
    """
    what = "syncnet_python's SyncNet (S)"
    return load_pretrained(SyncNet, path, SYNCNET_WEIGHTS, syncnet_filter, what=what)
