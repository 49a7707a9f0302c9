import runpy
from pathlib import Path

import pytest
import torch
from tests.conftest import random_images
from torch import nn

from asccl.metric import ASCCLMetric, save_metric
from asccl.spfem import ASCCLSupervision, ImagePair, get_adapter, warmup_weight

SIZE = 64
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "ned_renderer_minimal.py"


@pytest.fixture(scope="module")
def metric():
    torch.manual_seed(0)
    return ASCCLMetric(backbone="iresnet18", image_size=SIZE, num_anchors=(8, 4, 4, 2))


def count_metric_calls(supervision, monkeypatch):
    calls = []
    features = supervision.loss.metric.features

    def counted(images):
        calls.append(images.shape)
        return features(images)

    monkeypatch.setattr(supervision.loss.metric, "features", counted)
    return calls


def regions_rng(seed=0):
    return torch.Generator().manual_seed(seed)


def test_warmup_is_a_linear_ramp_from_zero():
    assert [warmup_weight(s, 2.0, 4) for s in range(6)] == [0.0, 0.5, 1.0, 1.5, 2.0, 2.0]
    assert warmup_weight(0, 2.0, 0) == 2.0
    with pytest.raises(ValueError):
        warmup_weight(-1, 1.0, 4)


def test_weight_schedule_with_every_n_steps(metric):
    sup = ASCCLSupervision(metric=metric, weight=1.0, warmup_steps=4, every_n_steps=2)
    assert [sup.weight_at(s) for s in range(7)] == [0.0, 0.0, 0.5, 0.0, 1.0, 0.0, 1.0]


def test_checkpoint_and_adapter_configure_the_loss(metric, tmp_path):
    path = save_metric(metric, tmp_path / "asccl.safetensors")
    adapter = get_adapter("icface", value_range=(0.0, 1.0), channel_order="bgr")
    sup = ASCCLSupervision(checkpoint=path, adapter=adapter)
    assert sup.loss.input_range == (0.0, 1.0) and sup.loss.channel_order == "bgr"
    images = (random_images(2, SIZE, 1) + 1) / 2
    loss, logs = sup({"source": images}, {"generated": images.flip(0)}, step=0)
    assert loss.shape == () and torch.isfinite(loss)
    assert torch.equal(loss, logs["asccl"]) and logs["asccl_weight"] == 1.0


def test_the_supervision_holds_the_one_weight(metric):
    """The loss is unweighted; the supervision scales it: ``weight * ASCCLLoss(gen, src)``
    on the same regions, and logs the unweighted value."""
    from asccl import ASCCLLoss

    sup = ASCCLSupervision(metric=metric, weight=2.5)
    source, generated = random_images(2, SIZE, 5), random_images(2, SIZE, 6)
    with torch.no_grad():
        loss, logs = sup({"source": source}, generated, step=0, generator=regions_rng(1))
        raw = ASCCLLoss(metric=metric)(generated, source, generator=regions_rng(1))
    assert torch.equal(logs["asccl"], raw) and logs["asccl_weight"] == 2.5
    assert torch.equal(loss, 2.5 * raw)
    assert not hasattr(sup.loss, "weight")


def test_zero_weight_means_no_metric_forward(metric, monkeypatch):
    sup = ASCCLSupervision(metric=metric, adapter="ganmut", warmup_steps=10, every_n_steps=3)
    calls = count_metric_calls(sup, monkeypatch)
    batch, outputs = {"image": random_images(2, SIZE, 1)}, {"generated": random_images(2, SIZE, 2)}
    for step in (0, 1, 2, 4):  # warm-up start, then steps not divisible by 3
        loss, logs = sup(batch, outputs, step)
        assert loss.item() == 0.0 and logs == {"asccl_weight": 0.0}
    assert calls == []
    loss, logs = sup(batch, outputs, 3)
    assert len(calls) == 2  # key and query
    assert logs["asccl_weight"] == pytest.approx(0.3)
    assert loss.item() == pytest.approx(0.3 * logs["asccl"].item())


def test_gradients_reach_the_generator_not_the_metric(metric):
    sup = ASCCLSupervision(metric=metric, adapter="ned_renderer")
    generator = nn.Conv2d(3, 3, 3, padding=1)
    source = random_images(2, SIZE, 3)
    loss, _ = sup({"real_B": source}, {"fake_B": generator(source)}, step=5)
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in generator.parameters())
    assert all(p.grad is None and not p.requires_grad for p in sup.parameters())
    sup.train()
    assert not any(m.training for m in sup.loss.modules())  # the metric stays in eval mode


def test_mismatched_declaration_is_an_error(metric):
    sup = ASCCLSupervision(metric=metric)
    sup.adapter = get_adapter("image2image", value_range=(0.0, 1.0))
    images = random_images(1, SIZE)
    with pytest.raises(ValueError, match="declared"):
        sup({"source": images}, images, step=0)


def test_a_value_range_given_as_a_list_runs(metric):
    # a YAML/JSON config gives lists (and ints): the same range as the loss's float tuple
    images = (random_images(1, SIZE, 1) + 1) / 2
    sup = ASCCLSupervision(metric=metric, adapter=get_adapter("image2image", value_range=[0, 1]))
    loss, _ = sup({"source": images}, {"generated": images.flip(-1)}, step=0)
    assert sup.loss.input_range == (0.0, 1.0) and torch.isfinite(loss)

    class ListAdapter:  # any SPFEMAdapter, not only KeyedAdapter, may declare a list
        def __init__(self):
            self.value_range, self.channel_order = [0, 1], "rgb"

        def pair(self, batch, outputs):
            return ImagePair(outputs, batch["source"], None, [0, 1], "rgb")

    sup = ASCCLSupervision(metric=metric, adapter=ListAdapter())
    loss, _ = sup({"source": images}, images.flip(-1), step=0)
    assert torch.isfinite(loss)


def test_training_toward_identity_with_asccl_alone_reduces_the_loss(metric):
    torch.manual_seed(0)
    sup = ASCCLSupervision(metric=metric, adapter="image2image")
    generator = nn.Sequential(nn.Conv2d(3, 3, 3, padding=1), nn.Tanh())
    optimiser = torch.optim.Adam(generator.parameters(), lr=3e-2)
    source = random_images(2, SIZE, 4)

    def step_loss(step):
        return sup({"source": source}, generator(source), step, generator=regions_rng())[0]

    with torch.no_grad():
        before = step_loss(0).item()
    for step in range(15):
        optimiser.zero_grad()
        step_loss(step).backward()
        optimiser.step()
    with torch.no_grad():
        after = step_loss(0).item()
    assert after < 0.8 * before, (before, after)


def test_the_example_runs(capsys):
    module = runpy.run_path(str(EXAMPLE))
    history = module["main"](steps=3)
    assert [row["asccl_weight"] for row in history] == [0.0, 0.5, 1.0]
    assert "asccl" not in history[0] and all("asccl" in row for row in history[1:])
    assert "step=2" in capsys.readouterr().out
