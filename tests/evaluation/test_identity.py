"""CSIM and the ArcFace embedder."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch import nn

from asccl.evaluation.identity import CSIM, ArcFaceEmbedder, cosine_similarities, load_arcface
from asccl.metric.iresnet import build_iresnet
from asccl.weights import MissingWeightsError


class FirstPixel(nn.Module):
    """Stub embedder: the RGB value of the top-left pixel, (B, 3)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :, 0, 0]


def _with_pixel(values: list[list[float]]) -> torch.Tensor:
    x = torch.zeros(len(values), 3, 112, 112)
    x[:, :, 0, 0] = torch.tensor(values)
    return x


def test_hand_computed_values():
    csim = CSIM(FirstPixel())
    source = _with_pixel([[1, 0, 0], [1, 1, 0], [0, 0, 1]])
    result = _with_pixel([[1, 0, 0], [1, 0, 0], [0, 0, -2]])
    csim.update(source, result)  # cosines: 1, 1/sqrt(2), -1
    assert csim.compute().item() == pytest.approx((1 + 1 / math.sqrt(2) - 1) / 3, rel=1e-12)
    csim.update(_with_pixel([[0, 1, 0]]), _with_pixel([[0, 0, 1]]))  # cosine 0, one more frame
    assert csim.compute().item() == pytest.approx((1 + 1 / math.sqrt(2) - 1) / 4, rel=1e-12)
    assert csim.count == 4 and csim.sim_sum.dtype == torch.float64


def test_identical_images_give_one_with_arcface():
    torch.manual_seed(0)
    csim = CSIM(ArcFaceEmbedder(build_iresnet("iresnet18")))
    faces = torch.rand(2, 3, 112, 112) * 2 - 1
    csim.update(faces, faces.clone())
    assert csim.compute().item() == pytest.approx(1.0, abs=1e-6)
    csim.reset()
    with pytest.raises(RuntimeError, match="before any update"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchmetrics' own "compute before update" warning
        csim.compute()


def test_pairs_must_match():
    csim = CSIM(FirstPixel())
    with pytest.raises(ValueError, match="paired"):
        csim.update(torch.zeros(2, 3, 112, 112), torch.zeros(3, 3, 112, 112))


def test_embedder_resizes_and_checks():
    torch.manual_seed(0)
    embedder = ArcFaceEmbedder(build_iresnet("iresnet18"))
    assert embedder.num_features == 512
    assert not embedder.train().training
    x = torch.rand(1, 3, 224, 224) * 2 - 1
    small = torch.nn.functional.interpolate(x, size=(112, 112), mode="bilinear", antialias=True)
    with torch.no_grad():
        torch.testing.assert_close(embedder(x), embedder(small))
    with pytest.raises(ValueError, match=r"\(2, 1, 112, 112\)"):
        embedder(torch.zeros(2, 1, 112, 112))
    with pytest.raises(ValueError, match="with_head"):
        ArcFaceEmbedder(build_iresnet("iresnet18", with_head=False))


def test_cosine_similarities_shape_check():
    with pytest.raises(ValueError, match="embeddings"):
        cosine_similarities(torch.zeros(2, 3), torch.zeros(2, 4))


def test_missing_arcface_weights(monkeypatch):
    monkeypatch.delenv("ASCCL_ARCFACE_WEIGHTS", raising=False)
    with pytest.raises(MissingWeightsError, match=r"backbone\.pth"):
        load_arcface(None, "iresnet18")


def test_bad_arcface_weights_are_one_line_errors(tmp_path):
    """CSIM(weights=...) and load_arcface go through the one strict loader."""
    from asccl.io import CheckpointError

    torch.manual_seed(0)
    state = build_iresnet("iresnet18").state_dict()
    state["features.running_mean"] = torch.full_like(state["features.running_mean"], math.inf)
    torch.save(state, tmp_path / "inf.pth")
    with pytest.raises(CheckpointError) as info:
        CSIM(weights=tmp_path / "inf.pth", backbone="iresnet18")
    assert (
        str(info.value)
        == f"{tmp_path / 'inf.pth'}: features.running_mean holds Inf values: refused"
    )
    with pytest.raises(
        CheckpointError, match=r"inf\.pth: keys do not match an insightface iresnet50"
    ):
        load_arcface(tmp_path / "inf.pth", "iresnet50")  # the wrong depth for this file
