"""ASCCLLoss held by a user's model, its precision and its input checks (audit findings 1-4).

Each test failed on the loss that registered the metric as a submodule, ran float16
autocast as asked, and passed inputs to the metric unchecked.
"""

import copy
import os
import warnings

import pytest
import torch
from tests.conftest import random_images
from torch import nn

from asccl import ASCCLLoss
from asccl.metric import ASCCLMetric, save_metric

SIZE = 64  # small and fast: stage maps 32, 16, 8, 4


@pytest.fixture(scope="module")
def metric():
    """A random IResNet-18 metric in eval mode: BatchNorm at its init statistics, so its
    deep features grow large, as in a metric trained from a random init with frozen
    BatchNorm (stage 4 reaches ~1e8 here, beyond float16's 65504)."""
    torch.manual_seed(0)
    return ASCCLMetric(backbone="iresnet18", image_size=SIZE, num_anchors=(8, 4, 4, 2)).eval()


@pytest.fixture(scope="module")
def checkpoint(metric, tmp_path_factory):
    return save_metric(metric, tmp_path_factory.mktemp("loss") / "metric.safetensors")


class Generator(nn.Module):
    """A user's generator that holds the loss as an attribute."""

    def __init__(self, checkpoint) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.asccl = ASCCLLoss(checkpoint, regions="fixed", seed=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.conv(x))


def generator_keys():
    return {"conv.weight", "conv.bias"}


def test_a_model_holding_the_loss_cannot_train_the_metric(checkpoint):
    """G.requires_grad_(True) + Adam(G.parameters()) used to reach all 106 metric tensors."""
    g = Generator(checkpoint)
    g.requires_grad_(True)
    assert {name for name, _ in g.named_parameters()} == generator_keys()
    assert [name for name, _ in g.named_modules()] == ["", "conv", "asccl"]
    assert not any(p.requires_grad for p in g.asccl.metric.parameters())
    before = {k: v.clone() for k, v in g.asccl.metric.state_dict().items()}
    g.apply(lambda m: nn.init.zeros_(m.weight) if hasattr(m, "weight") else None)  # user init
    optimizer = torch.optim.Adam(g.parameters(), lr=1e-2)
    x, y = random_images(2, SIZE, 1), random_images(2, SIZE, 2)
    nn.init.normal_(g.conv.weight)
    g.asccl(g(x), y).backward()
    optimizer.step()
    after = g.asccl.metric.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert g.conv.weight.grad is not None
    with pytest.raises(AttributeError, match="fixed at construction"):
        g.asccl.metric = g.asccl.metric


def test_generator_checkpoints_hold_no_metric_and_old_ones_load(checkpoint, metric):
    g = Generator(checkpoint)
    state = g.state_dict()
    assert set(state) == generator_keys()  # was 196 more keys, 46.5 MB at iresnet18/112
    # a generator checkpoint from before it held the loss loads strictly
    g.load_state_dict({k: v.clone() for k, v in state.items()})
    # one saved by an earlier asccl, with the metric's tensors (here: other values), loads
    # strictly with one warning, and the loss keeps the metric it was built with
    old = dict(state)
    old.update({f"asccl.metric.{k}": torch.zeros_like(v) for k, v in metric.state_dict().items()})
    with pytest.warns(UserWarning, match=r"asccl\.metric\.\*: 196 stored metric tensors ignored"):
        result = g.load_state_dict(old, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert all(
        torch.equal(v, metric.state_dict()[k]) for k, v in g.asccl.metric.state_dict().items()
    )
    assert str(checkpoint) in repr(g.asccl) and "iresnet18 64px" in repr(g.asccl)


def test_to_reaches_the_metric_and_half_keeps_it_float32(metric):
    loss_fn = ASCCLLoss(metric=metric)
    assert loss_fn.double().metric_dtype == torch.float64
    assert loss_fn.to(torch.bfloat16).metric_dtype == torch.bfloat16
    with pytest.warns(UserWarning, match="keeps its metric in float32"):
        loss_fn.half()
    assert loss_fn.metric_dtype == torch.float32
    loss_fn.to(memory_format=torch.channels_last)
    assert loss_fn.metric.backbone.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    copied = copy.deepcopy(loss_fn)
    assert copied.metric is not loss_fn.metric and copied.metric_dtype == torch.float32


def test_float16_autocast_runs_the_metric_in_bfloat16(metric):
    """float16 autocast made the loss NaN (stage-4 features above 65504); now the metric
    runs under bfloat16 autocast instead: the same operations, so bit-equal to a bf16 run."""
    loss_fn = ASCCLLoss(metric=metric, regions="fixed", seed=0)
    x, y = random_images(2, SIZE, 3), random_images(2, SIZE, 4)
    with torch.no_grad():
        largest = loss_fn.metric.features(loss_fn.preprocess(x))[3].abs().max()
    assert largest > torch.finfo(torch.float16).max  # the overflow this test is about
    generated = x.clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.float16):
        half = loss_fn(generated, y)
    half.backward()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        bf16 = loss_fn(x, y)
    assert torch.isfinite(half) and torch.isfinite(generated.grad).all()
    assert torch.equal(half.detach(), bf16)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_inputs_of_another_dtype_are_cast_to_the_metric(metric, dtype):
    """Used to fail deep in conv.py ("expected scalar type Half but found Float")."""
    loss_fn = ASCCLLoss(metric=metric, regions="fixed", seed=0)
    x, y = random_images(2, SIZE, 5), random_images(2, SIZE, 6)
    with torch.no_grad():
        full = loss_fn(x, y)
    generated = x.to(dtype).requires_grad_()
    value = loss_fn(generated, y.to(dtype))
    value.backward()
    assert generated.grad.dtype == dtype and torch.isfinite(generated.grad).all()
    if dtype == torch.float64:  # float32 -> float64 -> float32 is exact: the same value
        assert torch.equal(value.detach(), full)
    else:
        # inputs rounded to 8 (bf16) / 11 (fp16) significant bits; measured rel. change
        # < 1e-4 on this draw; 1e-2 is a bound for "the same loss", not a derived one
        assert abs(value.item() - full.item()) / full.item() < 1e-2
    loss_fn(x.half(), y)  # mixed dtypes too


def test_values_far_outside_the_input_range_are_refused_once(metric):
    """A 0..255 source with the default (-1, 1) used to be scored silently (12.18 vs 12.24)."""
    x, y = random_images(2, SIZE, 7), random_images(2, SIZE, 8)
    frame = (y + 1) * 127.5  # a decoded frame, .float()
    message = (
        r"^source holds values in \[.*\], far outside input_range=\(-1, 1\) \(allowed: \[-3, 3\]\)"
    )
    with pytest.raises(ValueError, match=message):
        ASCCLLoss(metric=metric)(x, frame)
    with pytest.raises(ValueError, match=r"^generated holds values .* \(allowed: \[-1, 2\]\)"):
        ASCCLLoss(metric=metric, input_range=(0, 1))(frame / 255 * 255, frame)
    # a tanh generator and an un-squashed one overshooting by 0.5 pass
    ASCCLLoss(metric=metric)(torch.tanh(3 * x), y)
    loss_fn = ASCCLLoss(metric=metric)
    loss_fn(x * 1.5, y)
    loss_fn(x, frame)  # checked on the first call only: no sync on later calls
    with pytest.raises(ValueError, match=r"^generated and source hold no images \(batch size 0\)$"):
        ASCCLLoss(metric=metric)(x[:0], y[:0])


def test_a_model_holding_the_loss_under_ddp(checkpoint):
    """DDP (gloo, world size 1) broadcasts and reduces the generator's tensors only (it
    used to broadcast the metric's 196 tensors too)."""
    import torch.distributed as dist

    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29541")
    dist.init_process_group("gloo", rank=0, world_size=1)
    try:
        g = Generator(checkpoint)
        ddp = nn.parallel.DistributedDataParallel(g)
        x, y = random_images(2, SIZE, 9), random_images(2, SIZE, 10)
        g.asccl(ddp(x), y).backward()
        assert g.conv.weight.grad is not None
        assert {n for n, _ in ddp.named_parameters()} == {f"module.{k}" for k in generator_keys()}
        assert set(ddp.state_dict()) == {f"module.{k}" for k in generator_keys()}
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_torch_compile_traces_a_model_holding_the_loss(checkpoint):
    """dynamo (eager backend: no C++ build) reads the metric held outside the tree."""

    class Step(nn.Module):
        def __init__(self, g):
            super().__init__()
            self.g = g

        def forward(self, x, y):
            return self.g.asccl(self.g(x), y)

    step = Step(Generator(checkpoint))
    x, y = random_images(2, SIZE, 9), random_images(2, SIZE, 10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        eager = step(x, y)
        compiled = torch.compile(step, backend="eager")(x, y)
    torch.testing.assert_close(compiled, eager)


def test_to_empty_moves_the_metric_and_keeps_its_weights(metric):
    """``G.to_empty(device=...)`` (a model built on the meta device, then given storage)
    used to empty the metric too: its weights are in no state dict a model loads
    afterwards, so they stayed garbage and the loss was silently wrong. Now the metric is
    moved with its weights kept, and the loss gives the same value."""
    loss_fn = ASCCLLoss(metric=metric, regions="fixed", seed=0)
    x, y = random_images(2, SIZE, 5), random_images(2, SIZE, 6)
    with torch.no_grad():
        before = loss_fn(x, y)
    model = nn.Sequential(nn.Conv2d(3, 3, 1), loss_fn)
    for _ in range(3):  # again and again: no earlier probe's memory taken for kept values
        model.to_empty(device="cpu")
    assert all(
        torch.equal(v, metric.state_dict()[k]) for k, v in loss_fn.metric.state_dict().items()
    )
    with torch.no_grad():
        assert torch.equal(loss_fn(x, y), before)
    # moves that keep values still reach the metric as before
    model.to(torch.float64)
    assert loss_fn.metric_dtype == torch.float64
