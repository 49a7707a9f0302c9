"""LSE-D / LSE-C: SyncNet's state-dict layout, and the batched protocol against a direct
per-window, per-offset reference written the way syncnet_python's ``evaluate`` runs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from tests.evaluation.random_weights import random_state

from asccl.evaluation.lip_sync import (
    LipSync,
    _embed,
    evaluate_clip,
    lip_windows,
    lse_scores,
    mfcc_windows,
    sync_distances,
    syncnet_mfcc,
    to_int16,
    usable_windows,
)
from asccl.evaluation.syncnet import SyncNet, load_syncnet
from asccl.evaluation.syncnet_timing import avi_frame_sources
from asccl.io import CheckpointError
from asccl.weights import MissingWeightsError

# Published syncnet_v2.model layout, from SyncNetModel.S: Sequential index -> weight shape.
_AUD_CONVS = {
    0: (64, 1, 3, 3),
    4: (192, 64, 3, 3),
    8: (384, 192, 3, 3),
    11: (256, 384, 3, 3),
    14: (256, 256, 3, 3),
    18: (512, 256, 5, 4),
}
_LIP_CONVS = {
    0: (96, 3, 5, 7, 7),
    4: (256, 96, 1, 5, 5),
    8: (256, 256, 1, 3, 3),
    11: (256, 256, 1, 3, 3),
    14: (256, 256, 1, 3, 3),
    18: (512, 256, 1, 6, 6),
}


def published_shapes(with_tracked: bool) -> dict[str, tuple[int, ...]]:
    """Key -> shape of a syncnet_python state dict (BatchNorm after every conv and fc0)."""
    shapes: dict[str, tuple[int, ...]] = {}

    def batchnorm(prefix: str, n: int) -> None:
        for name in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{prefix}.{name}"] = (n,)
        if with_tracked:
            shapes[f"{prefix}.num_batches_tracked"] = ()

    for module, convs in (("netcnnaud", _AUD_CONVS), ("netcnnlip", _LIP_CONVS)):
        for index, shape in convs.items():
            shapes[f"{module}.{index}.weight"] = shape
            shapes[f"{module}.{index}.bias"] = (shape[0],)
            batchnorm(f"{module}.{index + 1}", shape[0])
    for module in ("netfcaud", "netfclip"):
        shapes[f"{module}.0.weight"] = (512, 512)
        shapes[f"{module}.0.bias"] = (512,)
        batchnorm(f"{module}.1", 512)
        shapes[f"{module}.3.weight"] = (1024, 512)
        shapes[f"{module}.3.bias"] = (1024,)
    return shapes


def published_state(with_tracked: bool, seed: int = 0) -> dict[str, torch.Tensor]:
    return random_state(published_shapes(with_tracked), num_batches_tracked=7, seed=seed)


@pytest.fixture(scope="module")
def model() -> SyncNet:
    """Random weights, with BatchNorm statistics that are not the identity."""
    torch.manual_seed(0)
    net = SyncNet()
    for module in net.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    net.netfcaud[3].weight.mul_(10.0)  # audio embeddings as large as the video ones
    return net


# ---------------------------------------------------------------------------------- weights


@pytest.mark.parametrize(("with_tracked", "legacy"), [(True, False), (False, False), (False, True)])
def test_published_layout_loads_strictly(tmp_path, with_tracked, legacy):
    """Keys and shapes as published; the 2017 file predates num_batches_tracked and the
    zip format, so the legacy pickle format must load with weights_only=True too."""
    assert set(SyncNet().state_dict()) == set(published_shapes(True))
    state = published_state(with_tracked)
    path = tmp_path / "syncnet_v2.model"
    torch.save(state, path, _use_new_zipfile_serialization=not legacy)
    net = load_syncnet(path)
    loaded = net.state_dict()
    for key, value in state.items():
        assert torch.equal(loaded[key], value), key
    assert not net.training and not any(p.requires_grad for p in net.parameters())


def test_forward_shapes(model):
    assert model.forward_aud(torch.randn(2, 1, 13, 20)).shape == (2, 1024)
    assert model.forward_lip(torch.rand(2, 3, 5, 224, 224) * 255).shape == (2, 1024)


def test_missing_weights_errors(tmp_path, monkeypatch):
    monkeypatch.delenv("ASCCL_SYNCNET_WEIGHTS", raising=False)
    with pytest.raises(MissingWeightsError, match=r"syncnet_v2.model.*ASCCL_SYNCNET_WEIGHTS"):
        load_syncnet()
    with pytest.raises(MissingWeightsError, match=r"no such file.*syncnet_python"):
        load_syncnet(tmp_path / "nope.model")
    monkeypatch.setenv("ASCCL_SYNCNET_WEIGHTS", str(tmp_path / "env.model"))
    with pytest.raises(MissingWeightsError, match=r"env.model"):
        load_syncnet()


def test_bad_weights_files(tmp_path):
    state = published_state(False)
    state["netfclip.9.weight"] = torch.zeros(1)
    del state["netcnnaud.0.bias"]
    torch.save(state, tmp_path / "keys.model")
    with pytest.raises(ValueError, match=r"keys.model.*netcnnaud\.0\.bias.*netfclip\.9\.weight"):
        load_syncnet(tmp_path / "keys.model")

    state = published_state(False)
    state["netfcaud.3.weight"] = torch.zeros(512, 512)
    torch.save(state, tmp_path / "shape.model")
    with pytest.raises(ValueError, match=r"shape.model.*netfcaud\.3\.weight \(512, 512\)"):
        load_syncnet(tmp_path / "shape.model")

    torch.save(torch.nn.Linear(2, 2), tmp_path / "module.model")  # a pickled whole module
    with pytest.raises(ValueError, match=r"module.model.*weights_only=True"):
        load_syncnet(tmp_path / "module.model")

    (tmp_path / "junk.model").write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match=r"junk.model"):
        load_syncnet(tmp_path / "junk.model")


def test_nan_and_truncated_legacy_files(tmp_path):
    """The published file is a legacy (pre-zip) pickle: a cut copy is named as truncated;
    a NaN weight is refused (it would make every LSE score NaN)."""
    state = published_state(False)
    state["netfclip.0.weight"][1, 2] = float("nan")
    torch.save(state, tmp_path / "nan.model", _use_new_zipfile_serialization=False)
    with pytest.raises(CheckpointError) as info:
        load_syncnet(tmp_path / "nan.model")
    expected = f"{tmp_path / 'nan.model'}: netfclip.0.weight holds NaN values: refused"
    assert str(info.value) == expected
    good = tmp_path / "good.model"
    torch.save(published_state(False), good, _use_new_zipfile_serialization=False)
    data = good.read_bytes()
    for cut in (len(data) // 2, 200, 20):
        (tmp_path / "cut.model").write_bytes(data[:cut])
        with pytest.raises(CheckpointError) as info:
            load_syncnet(tmp_path / "cut.model")
        message = str(info.value)
        assert message.startswith(f"{tmp_path / 'cut.model'}: ") and "truncated" in message
        assert "\n" not in message


def test_input_shape_errors(model):
    with pytest.raises(ValueError, match=r"\(B, 3, 5, 224, 224\), got \(1, 3, 4, 224, 224\)"):
        model.forward_lip(torch.zeros(1, 3, 4, 224, 224))
    with pytest.raises(ValueError, match=r"\(B, 1, 13, 20\), got \(1, 13, 20\)"):
        model.forward_aud(torch.zeros(1, 13, 20))
    with pytest.raises(ValueError, match=r"\(N, 224, 224, 3\), got \(6, 3, 224, 224\)"):
        lip_windows(np.zeros((6, 3, 224, 224), np.uint8))
    with pytest.raises(ValueError, match=r"\(F, D\).*\(4, 8\) and \(5, 8\)"):
        sync_distances(torch.zeros(4, 8), torch.zeros(5, 8))
    with pytest.raises(ValueError, match=r"\(T, 13\)"):
        mfcc_windows(torch.zeros(100, 12), 3)
    with pytest.raises(ValueError, match=r"\(S,\)"):
        to_int16(np.zeros((2, 100), np.float32))


# ---------------------------------------------------------------------------------- maths


def test_sync_distances_known_answer():
    d = sync_distances(torch.tensor([[1.0]]), torch.tensor([[4.0]]), vshift=1)
    # shifts -1, +1 see zero padding: |1 - 0 + eps|; shift 0: |1 - 4 + eps|
    torch.testing.assert_close(d, torch.tensor([[1 + 1e-6, 3 - 1e-6, 1 + 1e-6]]))
    lse_d, lse_c, offset = lse_scores(d)
    assert (lse_d, lse_c, offset) == pytest.approx((1 + 1e-6, 0.0, 1))  # first minimum

    curve = torch.tensor([[5.0, 2.0, 4.0, 9.0, 3.0]])
    assert lse_scores(curve) == pytest.approx((2.0, 2.0, 1))  # median 4, argmin 1, vshift 2


@pytest.mark.parametrize("lag", [-4, 0, 3])
def test_shifted_copy_gives_its_offset(lag):
    g = torch.Generator().manual_seed(1)
    audio = torch.randn(40, 16, generator=g)
    video = torch.randn(40, 16, generator=g)
    for i in range(40):
        if 0 <= i + lag < 40:
            video[i] = audio[i + lag]  # the sound of frame i sits at audio index i + lag
    d = sync_distances(video, audio, vshift=6)
    assert d.shape == (40, 13)
    assert int(d.mean(0).argmin()) == 6 + lag
    lse_d, lse_c, offset = lse_scores(d)
    assert offset == -lag
    assert lse_c > 0 and lse_d < float(d.mean(0).median())


def test_30fps_crops_become_run_pipelines_25fps_images(model, monkeypatch):
    """``evaluate_clip(fps=30)`` scores the images ``ffmpeg -r 25`` into AVI makes of 30 fps
    frames (frames 0-9, then one in six dropped: 10, 16, ...), not the nearest in time."""
    n = 120
    frames = np.zeros((n, 224, 224, 3), np.uint8)
    frames[:, :8, :8] = np.arange(n, dtype=np.uint8)[:, None, None, None]  # frame number
    seen = []
    real = model.forward_lip

    def spy(x):
        seen.append(x[:, 0, :, 0, 0].T.round().long())  # (5, W) frame numbers per window
        return real(x)

    monkeypatch.setattr(model, "forward_lip", spy)
    evaluate_clip(model, frames, np.zeros(n * 640 * 25 // 30, np.int16), fps=30, batch_size=200)
    numbers = torch.cat([s[0] for s in seen]).tolist()
    expected = avi_frame_sources(np.arange(n) / 30, 30.0)
    assert numbers == expected[: len(numbers)].tolist()
    assert numbers[:12] == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12]


def test_windows_and_lengths():
    frames = np.arange(8)[:, None, None, None] * np.ones((1, 224, 224, 3), np.uint8)
    w = lip_windows(frames)
    assert w.shape == (4, 3, 5, 224, 224) and w.dtype == torch.float32
    assert w[2, 1, :, 0, 0].tolist() == [2, 3, 4, 5, 6]
    mfcc = torch.arange(40.0)[:, None].repeat(1, 13)
    m = mfcc_windows(mfcc, 3)
    assert m.shape == (3, 1, 13, 20) and m[2, 0, 0].tolist() == list(range(8, 28))
    assert usable_windows(40, 40 * 640) == 35 and usable_windows(40, 30 * 640 - 1) == 24
    assert syncnet_mfcc(np.zeros(16000, np.int16)).shape == (1 + math.ceil((16000 - 400) / 160), 13)


# ---------------------------------------------------------------------------------- reference


def reference_evaluate(model, frames_bgr, audio_int16, vshift):
    """syncnet_python's evaluate, loop for loop: one window per forward, one offset at a time."""
    import python_speech_features

    im = torch.from_numpy(frames_bgr.astype(float)).float().permute(3, 0, 1, 2)[None]
    mfcc = np.stack(
        list(zip(*python_speech_features.mfcc(audio_int16, 16000), strict=True))
    )  # (13, T)
    cct = torch.from_numpy(mfcc.astype(float)).float()[None, None]  # (1, 1, 13, T)
    last = min(len(frames_bgr), math.floor(len(audio_int16) / 640)) - 5
    im_feat = torch.cat([model.forward_lip(im[:, :, v : v + 5]) for v in range(last)])
    cc_feat = torch.cat([model.forward_aud(cct[:, :, :, 4 * v : 4 * v + 20]) for v in range(last)])
    curve = []
    for j in range(2 * vshift + 1):
        total = 0.0
        for i in range(last):
            k = i + j - vshift
            a = cc_feat[k] if 0 <= k < last else torch.zeros(1024)
            total += float(torch.sqrt(((im_feat[i] - a + 1e-6) ** 2).sum()))
        curve.append(total / last)
    curve = torch.tensor(curve)
    minval, minidx = torch.min(curve, 0)
    scores = float(minval), float(torch.median(curve) - minval), vshift - int(minidx)
    return scores, curve, im_feat, cc_feat


@torch.no_grad()
def test_batched_equals_reference(model):
    rng = np.random.default_rng(0)
    # Windows that differ: frame brightness and sound loudness vary over the clip.
    gain = np.abs(np.sin(np.arange(12) / 2.0))[:, None, None, None]
    frames = (rng.integers(0, 256, (12, 224, 224, 3)) * gain).astype(np.uint8)  # BGR
    loud = 300 + 6000 * np.abs(np.sin(np.arange(12 * 640 + 123) / 900.0))
    audio = (rng.standard_normal(12 * 640 + 123) * loud).astype(np.int16)
    (lse_d, lse_c, offset), curve, im_feat, cc_feat = reference_evaluate(model, frames, audio, 15)

    lips = lip_windows(frames, 7)
    mfcc = mfcc_windows(syncnet_mfcc(audio), 7)
    video_feats, audio_feats = _embed(model, lips, mfcc, batch_size=4)
    torch.testing.assert_close(video_feats, im_feat, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(audio_feats, cc_feat, atol=1e-4, rtol=1e-5)
    assert (video_feats - video_feats.mean(0)).norm(dim=1).min() > 0.5  # not a constant
    assert (audio_feats - audio_feats.mean(0)).norm(dim=1).min() > 0.5

    got = evaluate_clip(model, frames, audio, batch_size=4)
    assert got.dropped is None and got.num_windows == 7
    torch.testing.assert_close(got.curve, curve, atol=1e-4, rtol=1e-5)
    assert curve.max() - curve.min() > 0.5  # the curve is not flat
    assert got.lse_d == pytest.approx(lse_d, abs=1e-4)
    assert got.lse_c == pytest.approx(lse_c, abs=1e-4)
    assert got.offset == offset


class _Probe(torch.nn.Module):
    """A cheap stand-in for SyncNet whose embeddings are (a digest of) its inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(()))

    def forward_lip(self, x):  # (B, 3, 5, 224, 224) -> (B, 15) channel-and-time means
        return x.mean((3, 4)).flatten(1) * self.scale

    def forward_aud(self, x):  # (B, 1, 13, 20) -> (B, 15)
        return x.flatten(1)[:, :15] * self.scale


def test_rgb_frames_and_float_audio_match_bgr_and_int16():
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, (20, 224, 224, 3), dtype=np.uint8)
    audio = (rng.standard_normal(20 * 640) * 3000).astype(np.int16)
    assert np.array_equal(to_int16(audio / 32768.0), audio)
    bgr = evaluate_clip(_Probe(), frames, audio, vshift=3, batch_size=4)
    rgb = evaluate_clip(_Probe(), frames[..., ::-1].copy(), audio / 32768.0, rgb=True, vshift=3)
    assert bgr.num_windows == 15 and bgr.curve.shape == (7,)
    torch.testing.assert_close(rgb.curve, bgr.curve)


# ---------------------------------------------------------------------------------- drops + metric


def test_short_clips_are_dropped_and_reported(model):
    frames = np.zeros((30, 224, 224, 3), np.uint8)
    audio = np.zeros(30 * 640, np.int16)
    # 30 frames at 30 fps are 26 images of run_pipeline (frames 10, 16, 22 and 28 dropped):
    # test_syncnet_timing.py checks that rule against the ffmpeg CLI
    with pytest.warns(UserWarning, match="26 frames at 25 fps, not more than min_frames=100"):
        result = evaluate_clip(model, frames, audio, fps=30, min_frames=100)
    # syncnet_python keeps a track only when len(track) > min_track: exactly 26 is dropped
    with pytest.warns(UserWarning, match="26 frames at 25 fps, not more than min_frames=26"):
        assert evaluate_clip(model, frames, audio, fps=30, min_frames=26).dropped
    assert result.dropped and math.isnan(result.lse_d) and result.num_windows == 0
    with pytest.warns(UserWarning, match="too short for one window"):
        tiny = evaluate_clip(model, frames[:5], audio)
    assert tiny.dropped

    metric = LipSync()
    metric.update(result.lse_d, result.lse_c)
    metric.update(torch.tensor([8.0, 10.0]), torch.tensor([2.0, 4.0]))
    out = metric.compute()
    assert out["lse_d"].item() == 9.0 and out["lse_c"].item() == 3.0
    assert out["clips"].item() == 2 and out["dropped"].item() == 1
    metric.reset()
    metric.update(float("nan"), float("nan"))
    with pytest.raises(RuntimeError, match=r"no clip scored.*1 dropped"):
        metric.compute()
    with pytest.raises(ValueError, match="finite"):
        metric.update(float("nan"), 1.0)
