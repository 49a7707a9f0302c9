"""IResNet: insightface key layout, loading real-format files, numerics, precision.

The expected state-dict layout and the reference forward pass below are written from the
published arcface_torch architecture, independently of ``asccl.metric.iresnet``.
"""

from __future__ import annotations

import copy
import math
import random

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from asccl.io import CheckpointError
from asccl.metric.iresnet import build_iresnet, check_arcface_weights, load_arcface_weights
from asccl.weights import MissingWeightsError

DEPTHS = {
    "iresnet18": (2, 2, 2, 2),
    "iresnet34": (3, 4, 6, 3),
    "iresnet50": (3, 4, 14, 3),
    "iresnet100": (3, 13, 30, 3),
}
PLANES = (64, 128, 256, 512)
EMBEDDING = 512
HEAD = ("fc.", "features.")


# --------------------------------------------------------------------------- reference


def insightface_shapes(layers: tuple[int, ...], with_head: bool = True) -> dict[str, tuple]:
    """Every key of an arcface_torch IResNet state dict and its shape."""
    shapes: dict[str, tuple] = {}

    def bn(prefix: str, c: int) -> None:
        for name in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{prefix}.{name}"] = (c,)
        shapes[f"{prefix}.num_batches_tracked"] = ()

    shapes["conv1.weight"] = (64, 3, 3, 3)
    bn("bn1", 64)
    shapes["prelu.weight"] = (64,)
    inplanes = 64
    for stage, (planes, blocks) in enumerate(zip(PLANES, layers, strict=True), start=1):
        for i in range(blocks):
            p = f"layer{stage}.{i}"
            cin = inplanes if i == 0 else planes
            bn(f"{p}.bn1", cin)
            shapes[f"{p}.conv1.weight"] = (planes, cin, 3, 3)
            bn(f"{p}.bn2", planes)
            shapes[f"{p}.prelu.weight"] = (planes,)
            shapes[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
            bn(f"{p}.bn3", planes)
            if i == 0:  # the first block of every stage has stride 2
                shapes[f"{p}.downsample.0.weight"] = (planes, cin, 1, 1)
                bn(f"{p}.downsample.1", planes)
        inplanes = planes
    bn("bn2", 512)
    if with_head:
        shapes["fc.weight"] = (EMBEDDING, 512 * 7 * 7)
        shapes["fc.bias"] = (EMBEDDING,)
        bn("features", EMBEDDING)
    return shapes


def random_insightface_state(layers: tuple[int, ...], seed: int = 0) -> dict[str, Tensor]:
    """A random state dict in insightface's layout, scaled so activations stay O(1)."""
    g = torch.Generator().manual_seed(seed)
    state: dict[str, Tensor] = {}
    for key, shape in insightface_shapes(layers).items():
        leaf = key.rsplit(".", 1)[1]
        if leaf == "num_batches_tracked":
            value = torch.randint(1, 10_000, (), generator=g, dtype=torch.int64)
        elif leaf == "running_var":
            value = torch.rand(shape, generator=g) + 0.5
        elif leaf in ("running_mean", "bias"):
            value = torch.randn(shape, generator=g) * 0.1
        elif key.startswith("fc.") or len(shape) == 4:  # conv / linear weights
            fan_in = math.prod(shape[1:])
            value = torch.randn(shape, generator=g) / math.sqrt(fan_in)
        elif key.endswith("prelu.weight"):
            value = torch.rand(shape, generator=g) * 0.5
        else:  # BN scale
            value = torch.rand(shape, generator=g) * 0.5 + 0.75
        state[key] = value
    return state


def _bn(x: Tensor, sd: dict[str, Tensor], prefix: str) -> Tensor:
    return F.batch_norm(
        x,
        sd[f"{prefix}.running_mean"],
        sd[f"{prefix}.running_var"],
        sd[f"{prefix}.weight"],
        sd[f"{prefix}.bias"],
        training=False,
        eps=1e-5,
    )


def reference_stages(sd: dict[str, Tensor], layers: tuple[int, ...], x: Tensor) -> list[Tensor]:
    """insightface's IResNet up to layer4, with torch.nn.functional, in eval mode."""
    x = F.conv2d(x, sd["conv1.weight"], stride=1, padding=1)
    x = F.prelu(_bn(x, sd, "bn1"), sd["prelu.weight"])
    outs = []
    for stage, blocks in enumerate(layers, start=1):
        for i in range(blocks):
            p = f"layer{stage}.{i}"
            stride = 2 if i == 0 else 1
            out = F.conv2d(_bn(x, sd, f"{p}.bn1"), sd[f"{p}.conv1.weight"], padding=1)
            out = F.prelu(_bn(out, sd, f"{p}.bn2"), sd[f"{p}.prelu.weight"])
            out = F.conv2d(out, sd[f"{p}.conv2.weight"], stride=stride, padding=1)
            out = _bn(out, sd, f"{p}.bn3")
            if i == 0:
                identity = F.conv2d(x, sd[f"{p}.downsample.0.weight"], stride=2)
                identity = _bn(identity, sd, f"{p}.downsample.1")
            else:
                identity = x
            x = out + identity
        outs.append(x)
    return outs


def reference_head(sd: dict[str, Tensor], s4: Tensor) -> Tensor:
    """insightface's identity head on a (B, 512, 7, 7) stage-4 map."""
    flat = torch.flatten(_bn(s4, sd, "bn2"), 1)  # dropout(p=0) is the identity
    return _bn(F.linear(flat, sd["fc.weight"], sd["fc.bias"]), sd, "features")


def faces(batch: int, size: int = 112, seed: int = 1) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, size, size, generator=g) * 2 - 1


def rel_err(actual: Tensor, expected: Tensor) -> float:
    actual, expected = actual.double(), expected.double()
    return ((actual - expected).norm() / expected.norm()).item()


def cosine(a: Tensor, b: Tensor) -> float:
    return F.cosine_similarity(a.double().flatten(), b.double().flatten(), dim=0).item()


# --------------------------------------------------------------------------- fixtures
# CPU forward passes are the slow part: each fixture below runs one and is shared.


@pytest.fixture(scope="module")
def r18_state() -> dict[str, Tensor]:
    return random_insightface_state(DEPTHS["iresnet18"], seed=0)


@pytest.fixture(scope="module")
def r18_file(r18_state, tmp_path_factory):
    path = tmp_path_factory.mktemp("r18") / "backbone.pth"
    torch.save(r18_state, path)
    return path


@pytest.fixture(scope="module")
def r18(r18_file):
    return load_arcface_weights(build_iresnet("iresnet18"), r18_file).eval()


@pytest.fixture(scope="module")
def x112() -> Tensor:
    return faces(2)


@pytest.fixture(scope="module")
def r18_out(r18, x112) -> tuple[tuple[Tensor, ...], Tensor]:
    """fp32 stage maps and embedding of ``x112`` from the asccl model."""
    with torch.no_grad():
        stages = r18.forward_stages(x112)
        return stages, r18.embed_from_stage4(stages[3])


@pytest.fixture(scope="module")
def r18_ref(r18_state, x112) -> tuple[list[Tensor], Tensor]:
    """The same from the functional reference."""
    with torch.no_grad():
        stages = reference_stages(r18_state, DEPTHS["iresnet18"], x112)
        return stages, reference_head(r18_state, stages[3])


# --------------------------------------------------------------------------- layout


@pytest.mark.parametrize("name", list(DEPTHS))
@pytest.mark.parametrize("with_head", [True, False])
def test_state_dict_layout_is_insightface(name, with_head):
    with torch.device("meta"):
        model = build_iresnet(name, with_head=with_head)
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    expected = insightface_shapes(DEPTHS[name], with_head=with_head)
    assert set(got) == set(expected), (
        f"missing {sorted(set(expected) - set(got))[:5]}, "
        f"unexpected {sorted(set(got) - set(expected))[:5]}"
    )
    assert got == expected
    assert model.state_dict()["bn1.num_batches_tracked"].dtype == torch.int64


def test_trainable_parameters_match_insightface():
    model = build_iresnet("iresnet18")
    frozen = {k for k, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {"features.weight"}  # insightface fixes the embedding BN's scale
    headless = build_iresnet("iresnet18", with_head=False)
    frozen = {k for k, p in headless.named_parameters() if not p.requires_grad}
    assert frozen == {"bn2.weight", "bn2.bias"}  # bn2 only feeds the (absent) head


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="resnet9") as info:
        build_iresnet("resnet9")
    for name in DEPTHS:
        assert name in str(info.value)


# --------------------------------------------------------------------------- loading


@pytest.mark.parametrize("name", ["iresnet18", "iresnet50"])
def test_load_insightface_file_roundtrip(name, tmp_path):
    state = random_insightface_state(DEPTHS[name], seed=3)
    path = tmp_path / "backbone.pth"
    torch.save(state, path)
    model = build_iresnet(name).eval()
    assert load_arcface_weights(model, path) is model
    loaded = model.state_dict()
    assert set(loaded) == set(state)
    for key, value in state.items():
        assert loaded[key].dtype == value.dtype, key
        assert torch.equal(loaded[key], value), key
    assert not model.training


def test_load_from_env_var(r18_file, r18_state, monkeypatch):
    monkeypatch.setenv("ASCCL_ARCFACE_WEIGHTS", str(r18_file))
    model = load_arcface_weights(build_iresnet("iresnet18"), None)
    assert torch.equal(
        model.state_dict()["layer3.1.conv2.weight"], r18_state["layer3.1.conv2.weight"]
    )


def test_headless_loads_insightface_file(r18_file, r18_state, x112, r18_out):
    headless = load_arcface_weights(build_iresnet("iresnet18", with_head=False), r18_file).eval()
    loaded = headless.state_dict()
    assert not any(k.startswith(HEAD) for k in loaded)
    assert set(loaded) == {k for k in r18_state if not k.startswith(HEAD)}
    for key, value in loaded.items():
        assert torch.equal(value, r18_state[key]), key
    with torch.no_grad():
        stages = headless.forward_stages(x112)
        for got, full in zip(stages, r18_out[0], strict=True):
            assert torch.equal(got, full)
        with pytest.raises(RuntimeError, match="with_head=False"):
            headless(x112[:1])
        with pytest.raises(RuntimeError, match="with_head=False"):
            headless.embed_from_stage4(stages[3])


def test_ddp_and_wrapped_files_load(r18_state, tmp_path):
    ddp = tmp_path / "ddp.pth"
    torch.save({f"module.{k}": v for k, v in r18_state.items()}, ddp)
    wrapped = tmp_path / "wrapped.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in r18_state.items()}}, wrapped)
    for path, with_head in ((ddp, True), (ddp, False), (wrapped, True)):
        model = load_arcface_weights(build_iresnet("iresnet18", with_head=with_head), path)
        for key, value in model.state_dict().items():
            assert torch.equal(value, r18_state[key]), (path.name, key)


def _assert_load_fails(model, path, *fragments):
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError) as info:
        load_arcface_weights(model, path)
    message = str(info.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "failed load changed weights"


@pytest.mark.parametrize("with_head", [True, False])
def test_extra_or_missing_body_key_is_an_error(r18_state, tmp_path, with_head):
    model = build_iresnet("iresnet18", with_head=with_head)
    extra_path = tmp_path / "extra.pth"
    torch.save(dict(r18_state, **{"layer2.0.extra.weight": torch.zeros(3)}), extra_path)
    _assert_load_fails(model, extra_path, "layer2.0.extra.weight")

    missing_path = tmp_path / "missing.pth"
    torch.save(
        {k: v for k, v in r18_state.items() if k != "layer4.1.bn3.running_var"}, missing_path
    )
    _assert_load_fails(model, missing_path, "layer4.1.bn3.running_var")


def test_missing_head_key_is_an_error_only_with_head(r18_state, tmp_path):
    path = tmp_path / "nohead.pth"
    torch.save({k: v for k, v in r18_state.items() if k != "fc.bias"}, path)
    _assert_load_fails(build_iresnet("iresnet18"), path, "fc.bias")
    load_arcface_weights(build_iresnet("iresnet18", with_head=False), path)


def test_wrong_depth_file_is_an_error(tmp_path):
    path = tmp_path / "r34.pth"
    torch.save(random_insightface_state(DEPTHS["iresnet34"], seed=5), path)
    for with_head in (True, False):
        model = build_iresnet("iresnet18", with_head=with_head)
        _assert_load_fails(model, path, "layer1.2.")


def test_wrong_shape_is_an_error(r18_state, tmp_path):
    path = tmp_path / "shape.pth"
    torch.save(dict(r18_state, **{"layer2.1.conv1.weight": torch.zeros(128, 128, 1, 1)}), path)
    _assert_load_fails(build_iresnet("iresnet18"), path, "layer2.1.conv1.weight")


def test_no_path_and_no_env_var(monkeypatch):
    monkeypatch.delenv("ASCCL_ARCFACE_WEIGHTS", raising=False)
    with pytest.raises(MissingWeightsError) as info:
        load_arcface_weights(build_iresnet("iresnet18"), None)
    assert isinstance(info.value, FileNotFoundError)
    assert "ASCCL_ARCFACE_WEIGHTS" in str(info.value)
    assert "backbone.pth" in str(info.value)


def test_nonexistent_file(tmp_path, monkeypatch):
    path = tmp_path / "nowhere" / "backbone.pth"
    with pytest.raises(MissingWeightsError, match="nowhere"):
        load_arcface_weights(build_iresnet("iresnet18"), path)
    monkeypatch.setenv("ASCCL_ARCFACE_WEIGHTS", str(path))
    with pytest.raises(MissingWeightsError, match="ASCCL_ARCFACE_WEIGHTS"):
        load_arcface_weights(build_iresnet("iresnet18"), None)


def test_corrupt_file(tmp_path):
    path = tmp_path / "backbone.pth"
    path.write_bytes(random.Random(0).randbytes(4096))
    _assert_load_fails(build_iresnet("iresnet18"), path)


class Unpicklable:
    """An arbitrary class: ``weights_only`` loading must refuse to build it."""

    built = 0

    def __setstate__(self, state):
        type(self).built += 1
        self.__dict__.update(state)


def test_file_with_arbitrary_objects_is_refused(r18_state, tmp_path):
    path = tmp_path / "backbone.pth"
    obj = Unpicklable()
    obj.payload = 1
    torch.save(dict(r18_state, extra=obj), path)
    _assert_load_fails(build_iresnet("iresnet18"), path)
    assert Unpicklable.built == 0


def test_non_dict_file(r18_state, tmp_path):
    path = tmp_path / "list.pth"
    torch.save(list(r18_state.values()), path)
    _assert_load_fails(build_iresnet("iresnet18"), path, "list")


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused_naming_the_key(r18_state, tmp_path, bad):
    path = tmp_path / "nan.pth"
    state = {k: v.clone() for k, v in r18_state.items()}
    state["layer3.0.bn1.running_var"][7] = bad
    torch.save(state, path)
    kind = "NaN" if math.isnan(bad) else "Inf"
    for with_head in (True, False):
        model = build_iresnet("iresnet18", with_head=with_head)
        _assert_load_fails(model, path, f"layer3.0.bn1.running_var holds {kind} values")


def test_nan_in_the_unused_head_only_matters_with_the_head(r18_state, tmp_path):
    path = tmp_path / "nan_head.pth"
    torch.save(dict(r18_state, **{"fc.bias": torch.full((EMBEDDING,), float("nan"))}), path)
    _assert_load_fails(build_iresnet("iresnet18"), path, "fc.bias holds NaN")
    load_arcface_weights(build_iresnet("iresnet18", with_head=False), path)  # head dropped


def test_failures_are_checkpoint_errors_on_one_line(r18_state, tmp_path):
    data = tmp_path / "ok.pth"
    torch.save(r18_state, data)
    cases = {
        "empty.pth": (b"", "empty file (0 bytes)"),
        "cut.pth": (data.read_bytes()[:100_000], "truncated or corrupt PyTorch file"),
        "text.pth": (b"hello, not weights\n" * 10, "not a weights file"),
    }
    for name, (content, problem) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(CheckpointError) as info:
            load_arcface_weights(build_iresnet("iresnet18"), tmp_path / name)
        message = str(info.value)
        assert message.startswith(f"{tmp_path / name}: {problem}") and "\n" not in message


def test_check_arcface_weights_checks_without_loading(r18_file, tmp_path):
    """What train-metric runs before its data: every check, against a headless meta model."""
    assert check_arcface_weights(r18_file, "iresnet18") == r18_file
    with pytest.raises(CheckpointError, match=r"keys do not match an insightface iresnet34"):
        check_arcface_weights(r18_file, "iresnet34")
    with pytest.raises(MissingWeightsError):
        check_arcface_weights(tmp_path / "absent.pth", "iresnet18")


# --------------------------------------------------------------------------- numerics


def test_embedding_matches_reference(r18, x112, r18_out, r18_ref):
    stages, emb = r18_out
    ref_stages, ref_emb = r18_ref
    assert ref_emb.std() > 0.1  # a non-degenerate comparison
    for i, (got, ref, c) in enumerate(zip(stages, ref_stages, PLANES, strict=True)):
        assert got.shape == (2, c, 112 >> (i + 1), 112 >> (i + 1))
        assert rel_err(got, ref) < 1e-4, i
    assert emb.shape == (2, EMBEDDING)
    assert rel_err(emb, ref_emb) < 1e-4
    assert cosine(emb[0], emb[1]) < 0.99  # two faces, two identities
    with torch.no_grad():  # forward() itself, on one face (cheaper than re-running both)
        one = r18(x112[:1])
    assert one.shape == (1, EMBEDDING) and one.dtype == torch.float32
    assert rel_err(one, ref_emb[:1]) < 1e-4


def test_reference_notices_a_wrong_weight(r18, r18_state):
    """Guards the test itself: one changed BN statistic moves the reference output."""
    x = faces(1, size=16)
    perturbed = dict(r18_state)
    perturbed["layer3.1.bn2.running_var"] = r18_state["layer3.1.bn2.running_var"] * 1.5
    with torch.no_grad():
        got = r18.forward_stages(x)[3]
        assert rel_err(got, reference_stages(perturbed, DEPTHS["iresnet18"], x)[3]) > 1e-3


def test_stages_at_224_match_reference(r18, r18_state):
    x = faces(1, size=224, seed=4)
    with torch.no_grad():
        stages = r18.forward_stages(x)
        expected = reference_stages(r18_state, DEPTHS["iresnet18"], x)
    shapes = [tuple(s.shape) for s in stages]
    assert shapes == [(1, 64, 112, 112), (1, 128, 56, 56), (1, 256, 28, 28), (1, 512, 14, 14)]
    for i, (got, ref) in enumerate(zip(stages, expected, strict=True)):
        assert rel_err(got, ref) < 1e-4, i


def test_non_square_stage_shapes(r18):
    with torch.no_grad():
        shapes = [tuple(s.shape) for s in r18.forward_stages(torch.zeros(1, 3, 48, 80))]
    assert shapes == [(1, 64, 24, 40), (1, 128, 12, 20), (1, 256, 6, 10), (1, 512, 3, 5)]


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize("shape", [(1, 3, 100, 112), (1, 3, 112, 120), (2, 3, 8, 8)])
def test_size_not_multiple_of_16(r18, shape):
    with pytest.raises(ValueError, match=r"16") as info:
        r18.forward_stages(torch.zeros(shape))
    assert str(tuple(shape[-2:])) in str(info.value)


@pytest.mark.parametrize("shape", [(1, 1, 112, 112), (1, 4, 112, 112), (3, 112, 112)])
def test_wrong_channels_or_rank(r18, shape):
    with pytest.raises(ValueError) as info:
        r18.forward_stages(torch.zeros(shape))
    assert str(tuple(shape)) in str(info.value)
    with pytest.raises(ValueError):
        r18(torch.zeros(shape))


def test_integer_images_rejected(r18):
    with pytest.raises(TypeError, match="uint8"):
        r18.forward_stages(torch.zeros(1, 3, 112, 112, dtype=torch.uint8))


@pytest.mark.parametrize("size", [224, 96, 128])
def test_embedding_needs_112(r18, size):
    with pytest.raises(ValueError, match="112") as info:
        r18(torch.zeros(1, 3, size, size))
    assert str((1, 3, size, size)) in str(info.value)
    with pytest.raises(ValueError, match=r"7, 7|7x7"):
        r18.embed_from_stage4(torch.zeros(1, 512, 8, 8))


# --------------------------------------------------------------------------- memory format / AMP


def test_channels_last_same_outputs(r18, x112, r18_out):
    cl_model = copy.deepcopy(r18).to(memory_format=torch.channels_last)
    assert cl_model.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    x_cl = x112.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        stages = cl_model.forward_stages(x_cl)
        emb = cl_model.embed_from_stage4(stages[3])
    for got, ref in zip((*stages, emb), (*r18_out[0], r18_out[1]), strict=True):
        assert got.shape == ref.shape
        torch.testing.assert_close(got, ref, atol=1e-4 * ref.abs().max().item(), rtol=1e-4)


def test_bf16_autocast_cpu(r18, x112, r18_out):
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        stages = r18.forward_stages(x112)
        emb = r18.embed_from_stage4(stages[3])
    assert all(p.dtype == torch.float32 for p in r18.parameters())  # autocast left them alone
    assert all(s.dtype == torch.bfloat16 for s in stages)
    # bf16 keeps 8 significant bits: a rounding moves a value by <= u = 2^-8 relative (rms
    # <= u / sqrt(3)). A conv (or the head's linear) rounds its inputs and its weights, so
    # its output moves by rms <= sqrt(2/3) u relative (independent errors over many
    # products); with 1/sqrt(fan_in) weights each layer's gain is ~1 and the n layers on
    # the path add as a random walk: rel_err ~ sqrt(2 n / 3) u. The bound is 2.45x that,
    # 2 u sqrt(n). Measured 0.57-0.64 u sqrt(n) at every stage on AVX512-BF16, AVX2 and
    # SSE4.1 kernels alike (norms over 1k to 400k values barely vary): >= 3.1x headroom.
    # cos(got, ref) >= sqrt(1 - rel_err^2) follows from the rel_err bound.
    u = 2.0**-8
    layers = 1  # conv1, then per stage 2 convs a block and the downsampling conv
    for got, ref, blocks in zip(stages, r18_out[0], DEPTHS["iresnet18"], strict=True):
        layers += 2 * blocks + 1
        assert got.shape == ref.shape
        assert torch.isfinite(got).all()
        assert rel_err(got, ref) < 2 * u * math.sqrt(layers)
    assert emb.shape == (2, EMBEDDING)
    assert rel_err(emb, r18_out[1]) < 2 * u * math.sqrt(layers + 1)  # + the head's linear


@pytest.mark.cuda
def test_fp16_autocast_cuda(r18, x112):
    model = copy.deepcopy(r18).cuda()
    x = x112.cuda()
    with torch.no_grad():
        ref = model.forward_stages(x)
        emb_ref = model.embed_from_stage4(ref[3])
        with torch.autocast("cuda", dtype=torch.float16):
            stages = model.forward_stages(x)
            emb = model(x)
    assert all(s.dtype == torch.float16 for s in stages)
    for got, expected in zip(stages, ref, strict=True):
        assert torch.isfinite(got).all()
        assert cosine(got, expected) > 0.99
    assert rel_err(stages[3], ref[3]) < 5e-2
    assert cosine(emb, emb_ref) > 0.99
