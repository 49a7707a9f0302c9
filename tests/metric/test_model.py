import pytest
import torch
from tests.conftest import random_images

from asccl.metric import ASCCLMetric, MetricConfig

SIZE = 112  # small inputs keep these tests fast; the metric works at any multiple of 16


@pytest.fixture(scope="module")
def metric():
    torch.manual_seed(0)
    return ASCCLMetric(backbone="iresnet18", image_size=SIZE).eval()


def test_loss_is_lower_for_identical_images_than_unrelated_ones(metric):
    x, unrelated = random_images(2, SIZE, seed=1), random_images(2, SIZE, seed=2)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        regions = metric.sample_regions(2, image_size=SIZE, generator=g)
        same = metric(x, x, regions=regions)
        other = metric(x, unrelated, regions=regions)
    assert same.loss < other.loss
    assert (same.stage_losses < other.stage_losses).all()
    # identical images: positives have cosine 1, the health gap is large
    health = metric.health(x, x, regions=regions)
    torch.testing.assert_close(health.positive_cosine, torch.ones(4), atol=1e-4, rtol=0)
    assert (health.gap > 0.05).all()
    assert (metric.health(x, unrelated, regions=regions).gap < health.gap).all()


def test_output_structure_and_loss_scale(metric):
    x, y = random_images(2, SIZE, seed=3), random_images(2, SIZE, seed=4)
    out = metric(x, y, generator=torch.Generator().manual_seed(1))
    assert out.loss.shape == () and out.stage_losses.shape == (4,)
    assert out.per_sample.shape == (2,) and out.per_stage.shape == (2, 4)
    assert torch.equal(out.loss, out.per_sample.mean())
    torch.testing.assert_close(out.per_sample, 0.3 * out.per_stage.sum(-1))
    torch.testing.assert_close(out.loss, 0.3 * out.stage_losses.sum())
    assert out.health is None  # diagnostics only when asked for
    assert len(out.regions) == 4
    assert [r.num_pairs for r in out.regions] == [32 * 8, 16 * 8, 8 * 8, 4 * 8]


def test_per_sample_losses_are_each_images_own(metric):
    """With regions shared by the batch (the default), a sample's value is what it scores
    alone on the same regions: the per-sample output does not mix the batch."""
    x, y = random_images(3, SIZE, seed=23), random_images(3, SIZE, seed=24)
    with torch.no_grad():
        regions = metric.sample_regions(3, image_size=SIZE, generator=torch.Generator())
        batch = metric(x, y, regions=regions)
        alone = [metric(x[i : i + 1], y[i : i + 1], regions=regions) for i in range(3)]
    # eval-mode BatchNorm: per-image maths; float32 kernels may block differently by batch
    torch.testing.assert_close(batch.per_sample, torch.cat([a.per_sample for a in alone]),
                               rtol=1e-4, atol=1e-5)  # fmt: skip
    torch.testing.assert_close(batch.per_stage, torch.cat([a.per_stage for a in alone]),
                               rtol=1e-4, atol=1e-5)  # fmt: skip


def test_health_equals_the_cosines_by_hand(metric):
    """Patch mode: positives are the diagonal of the (S, S) cosine matrix of each stage,
    negatives its off-diagonal entries; the gap is their difference."""
    from asccl.metric.contrastive import patch_nce
    from asccl.metric.sampler import gather_disparities

    x, y = random_images(2, SIZE, seed=25), random_images(2, SIZE, seed=26)
    with torch.no_grad():
        regions = metric.sample_regions(2, image_size=SIZE, generator=torch.Generator())
        health = metric.health(x, y, regions=regions)
        fx, fy = metric.features(x), metric.features(y)
        for stage, reg in enumerate(regions):
            q, k = (metric.heads(stage, gather_disparities(f[stage], reg.anchor_index,
                                                           reg.neighbour_index)).flatten(1, 2)
                    for f in (fx, fy))  # fmt: skip
            _, cosine = patch_nce(q, k, 0.07)
            eye = torch.eye(cosine.shape[-1], dtype=torch.bool).expand_as(cosine)
            torch.testing.assert_close(health.positive_cosine[stage], cosine[eye].mean())
            torch.testing.assert_close(health.negative_cosine[stage], cosine[~eye].mean())
    torch.testing.assert_close(health.gap, health.positive_cosine - health.negative_cosine)


def test_health_leaves_the_loss_unchanged_and_needs_no_graph(metric):
    x = random_images(2, SIZE, seed=27).requires_grad_()
    y = random_images(2, SIZE, seed=28)
    regions = metric.sample_regions(2, image_size=SIZE, generator=torch.Generator())
    plain = metric(x, y, regions=regions)
    with_health = metric(x, y, regions=regions, health=True)
    assert torch.equal(plain.loss, with_health.loss)
    assert with_health.health is not None and not with_health.health.gap.requires_grad
    assert not metric.health(x, y, regions=regions).positive_cosine.requires_grad


def test_gradients_reach_the_query_only(metric):
    x = random_images(2, SIZE, seed=5).requires_grad_()
    y = random_images(2, SIZE, seed=6).requires_grad_()
    out = metric(x, y, generator=torch.Generator().manual_seed(2))
    out.loss.backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert y.grad is None
    assert metric.heads.heads[0][0].weight.grad is not None
    metric.zero_grad(set_to_none=True)


def test_given_regions_are_reused_exactly(metric):
    x, y = random_images(2, SIZE, seed=7), random_images(2, SIZE, seed=8)
    with torch.no_grad():
        first = metric(x, y, generator=torch.Generator().manual_seed(3))
        again = metric(x, y, regions=first.regions)
        other = metric(x, y, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(first.loss, again.loss)
    assert not torch.isclose(first.loss, other.loss)


@pytest.mark.parametrize("per_image", [False, True])
def test_random_negative_mode(per_image):
    torch.manual_seed(0)
    m = ASCCLMetric(
        backbone="iresnet18", image_size=SIZE, negatives="random", per_image_regions=per_image
    ).eval()
    x, y = random_images(3, SIZE, seed=9), random_images(3, SIZE, seed=10)
    with torch.no_grad():
        out = m(x, y, generator=torch.Generator().manual_seed(0), health=True)
        same = m(x, x, regions=out.regions, health=True)
    assert out.regions[0].negative_index.shape == (3 if per_image else 1, 32, 8)
    assert torch.isfinite(out.loss) and same.loss < out.loss
    assert out.per_sample.shape == (3,) and torch.equal(out.loss, out.per_sample.mean())
    # identical images: every positive cosine is 1, above the random negatives
    torch.testing.assert_close(same.health.positive_cosine, torch.ones(4), atol=1e-4, rtol=0)
    assert (same.health.gap > out.health.gap).all()


def test_patch_and_random_modes_differ(metric):
    x, y = random_images(2, SIZE, seed=11), random_images(2, SIZE, seed=12)
    random_mode = ASCCLMetric(metric.config.replace(negatives="random")).eval()
    random_mode.load_state_dict(metric.state_dict())
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        feats_x, feats_y = metric.features(x), metric.features(y)
        regions = random_mode.sample_regions(
            2, image_size=SIZE, generator=g
        )  # has negatives; patch ignores them
        patch = metric.contrast(feats_x, feats_y, regions).loss
        rand = random_mode.contrast(feats_x, feats_y, regions).loss
    assert not torch.isclose(patch, rand)


def test_adaptive_modes_give_different_losses(metric):
    x, y = random_images(2, SIZE, seed=13), random_images(2, SIZE, seed=14)
    g = torch.Generator().manual_seed(6)
    values = {}
    with torch.no_grad():
        fx, fy = metric.features(x), metric.features(y)
        regions = metric.sample_regions(2, image_size=SIZE, generator=g)
        for mode in ("pair", "authors", "off"):
            metric.config = metric.config.replace(adaptive=mode)
            values[mode] = float(metric.contrast(fx, fy, regions).loss)
    metric.config = metric.config.replace(adaptive="pair")
    assert len(set(values.values())) == 3


@pytest.mark.slow
def test_a_few_steps_of_training_separate_positives_from_negatives():
    torch.manual_seed(0)
    m = ASCCLMetric(backbone="iresnet18", image_size=64)
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    x = random_images(4, 64, seed=15)
    y = (x + 0.1 * random_images(4, 64, seed=16)).clamp(-1, 1)  # a paired, similar view
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(4):
        out = m(x, y, generator=g)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(out.loss.item())
    assert losses[-1] < losses[0]


def test_config_validation_and_round_trip():
    cfg = MetricConfig(backbone="iresnet34", negatives="random", num_anchors=[8, 8, 4, 2])
    assert MetricConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown metric config keys"):
        MetricConfig.from_dict({**cfg.to_dict(), "tau": 0.1})
    with pytest.raises(ValueError, match="unknown backbone 'resnet50'"):
        MetricConfig(backbone="resnet50")
    with pytest.raises(ValueError, match="negatives"):
        MetricConfig(negatives="hard")
    with pytest.raises(ValueError, match="multiple of 16"):
        ASCCLMetric(image_size=100)


def test_bf16_autocast_matches_fp32(metric):
    x, y = random_images(2, SIZE, seed=17), random_images(2, SIZE, seed=18)
    with torch.no_grad():
        regions = metric.sample_regions(
            2, image_size=SIZE, generator=torch.Generator().manual_seed(7)
        )
        full = metric(x, y, regions=regions).loss
        with torch.autocast("cpu", dtype=torch.bfloat16):
            half = metric(x, y, regions=regions).loss
    assert half.dtype == torch.float32 and torch.isfinite(half)
    # A property of this seeded draw (weights, images, regions), not a derived bound: bf16
    # rounds every conv's inputs and weights to 8 bits (2^-8 relative), the four stage
    # losses move by up to 0.4 % and partly cancel in their sum. Measured |rel. change|:
    # 4.6e-4 (AVX512-BF16 kernels), 4.9e-4 (ATEN_CPU_CAPABILITY=avx2, ONEDNN_MAX_CPU_ISA=AVX2),
    # 7.7e-5 (SSE4.1). 2e-3 is 4x the largest; logits rounded to bf16 (the float32 region
    # of patch_nce removed) measured 5.1e-3 and fail it.
    assert abs(float(half) - float(full)) / float(full) < 2e-3


def test_channels_last_matches(metric):
    x, y = random_images(2, SIZE, seed=19), random_images(2, SIZE, seed=20)
    g = torch.Generator().manual_seed(8)
    with torch.no_grad():
        regions = metric.sample_regions(2, image_size=SIZE, generator=g)
        ref = metric(x, y, regions=regions).loss
        metric.to(memory_format=torch.channels_last)
        cl = metric(
            x.contiguous(memory_format=torch.channels_last),
            y.contiguous(memory_format=torch.channels_last),
            regions=regions,
        ).loss
        metric.to(memory_format=torch.contiguous_format)
    torch.testing.assert_close(ref, cl, rtol=1e-4, atol=1e-4)


def test_regions_for_another_size_are_rejected(metric):
    x = random_images(1, SIZE, seed=21)
    regions = metric.sample_regions(1, image_size=224)
    with pytest.raises(ValueError, match="regions drawn for a 112x112 map"):
        metric(x, x, regions=regions)


def test_compile_backbone_compiles_the_stage_pass_features_runs():
    """nn.Module.compile() on the backbone wraps __call__, which the metric never calls;
    compile_backbone() must put the code features() runs under dynamo (backend "eager":
    dynamo's graph capture without inductor, so the values are the eager ones exactly)."""
    from torch._dynamo.utils import counters

    torch.manual_seed(0)
    metric = ASCCLMetric(backbone="iresnet18", image_size=64).eval()
    x = random_images(1, 64, seed=5)
    with torch.no_grad():
        eager = metric.features(x)
    torch._dynamo.reset()
    counters.clear()
    state = {k: v.clone() for k, v in metric.state_dict().items()}
    assert metric.compile_backbone(backend="eager") is metric
    with torch.no_grad():
        compiled = metric.features(x)
    assert counters["stats"]["unique_graphs"] >= 1  # 0 with backbone.compile()
    for a, b in zip(eager, compiled, strict=True):
        assert torch.equal(a, b)
    # checkpoints are unaffected: the same keys and tensors
    assert metric.state_dict().keys() == state.keys()
    assert all(torch.equal(metric.state_dict()[k], v) for k, v in state.items())
    torch._dynamo.reset()
