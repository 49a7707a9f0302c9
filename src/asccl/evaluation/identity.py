"""Identity similarity: ArcFace embeddings and CSIM.

CSIM is the cosine similarity of ArcFace identity embeddings between each source frame and
the corresponding result frame, averaged over all frames seen (higher is better). The
embedder takes ``(B, 3, 112, 112)`` aligned face crops, RGB in [-1, 1] (insightface's
``(x / 255 - 0.5) / 0.5``); other sizes are bilinearly resized to 112x112, which is only
meaningful for crops already aligned the insightface way.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import Metric

from asccl.metric.iresnet import IResNet, build_iresnet, load_arcface_weights

#: Side of ArcFace's aligned face crops.
ARCFACE_SIZE = 112


class ArcFaceEmbedder(nn.Module):
    """``(B, 3, H, W)`` RGB faces in [-1, 1] -> ``(B, 512)`` ArcFace embeddings.

    Inputs that are not 112x112 are resized bilinearly (``align_corners=False``,
    antialiased when shrinking). Embeddings are returned as insightface returns them,
    not L2-normalised. Frozen and in eval mode.
    """

    def __init__(self, backbone: IResNet) -> None:
        super().__init__()
        if not backbone.with_head:
            raise ValueError("ArcFaceEmbedder needs an IResNet built with with_head=True")
        self.backbone = backbone.requires_grad_(False)
        self.num_features = backbone.fc.out_features
        self.eval()

    def train(self, mode: bool = True) -> ArcFaceEmbedder:
        return super().train(False)

    def forward(self, faces: Tensor) -> Tensor:
        if faces.ndim != 4 or faces.shape[1] != 3:
            raise ValueError(f"expected faces of shape (B, 3, H, W), got {tuple(faces.shape)}")
        if not faces.is_floating_point():
            raise TypeError(f"expected floating-point faces in [-1, 1], got {faces.dtype}")
        if faces.shape[-2:] != (ARCFACE_SIZE, ARCFACE_SIZE):
            shrink = min(faces.shape[-2:]) > ARCFACE_SIZE
            faces = F.interpolate(
                faces,
                size=(ARCFACE_SIZE, ARCFACE_SIZE),
                mode="bilinear",
                align_corners=False,
                antialias=shrink,
            )
        return self.backbone(faces)


def load_arcface(path: str | os.PathLike | None = None, name: str = "iresnet50") -> ArcFaceEmbedder:
    """:class:`ArcFaceEmbedder` around an insightface ``backbone.pth`` of depth ``name``,
    loaded strictly (``None`` reads ``ASCCL_ARCFACE_WEIGHTS``); a bad file is a one-line
    :class:`~asccl.io.CheckpointError` (see :func:`~asccl.metric.iresnet.load_arcface_weights`)."""
    return ArcFaceEmbedder(load_arcface_weights(build_iresnet(name, with_head=True), path))


def cosine_similarities(a: Tensor, b: Tensor, eps: float = 1e-12) -> Tensor:
    """Row-wise ``<a_i, b_i> / (|a_i| |b_i|)`` in float64: ``(B, D), (B, D) -> (B,)``."""
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"expected two (B, D) embeddings, got {tuple(a.shape)}, {tuple(b.shape)}")
    a, b = a.double(), b.double()
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(eps)


class CSIM(Metric):
    """Mean cosine similarity of identity embeddings between source and result frames.

    ``CSIM(embedder)`` takes any module mapping faces to ``(B, D)`` embeddings;
    ``CSIM(weights=path)`` loads an insightface ``backbone.pth`` (see :func:`load_arcface`).
    ``update(source, result)`` takes paired ``(B, 3, 112, 112)`` aligned crops in [-1, 1];
    ``compute()`` returns ``sum_i cos(e(source_i), e(result_i)) / N``. States are a float64
    sum and a count, summed across processes.
    """

    higher_is_better = True
    is_differentiable = False
    full_state_update = False

    def __init__(
        self,
        embedder: nn.Module | None = None,
        *,
        weights: str | os.PathLike | None = None,
        backbone: str = "iresnet50",
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.embedder = embedder if embedder is not None else load_arcface(weights, backbone)
        self.add_state("sim_sum", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, source: Tensor, result: Tensor) -> None:
        if source.shape != result.shape:
            raise ValueError(
                f"source and result must be paired frames of one shape, got "
                f"{tuple(source.shape)} and {tuple(result.shape)}"
            )
        with torch.no_grad():
            sims = cosine_similarities(self.embedder(source), self.embedder(result))
        self.sim_sum += sims.sum()
        self.count += sims.numel()

    def compute(self) -> Tensor:
        if self.count == 0:
            raise RuntimeError("CSIM.compute() called before any update()")
        return self.sim_sum / self.count
