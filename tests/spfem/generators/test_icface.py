"""ICface-style generator: shapes, ranges, parameter routing, losses that go down."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tests.spfem.test_action_units import face_template
from tests.spfem.test_data import write_stage1

from asccl.config import load_config
from asccl.spfem.action_units import LANDMARK_LAYOUT, landmark_expression_params
from asccl.spfem.config import SPFEMTrainConfig
from asccl.spfem.generators import GENERATORS, build_generator
from asccl.spfem.generators.checkpoint import load_generator
from asccl.spfem.generators.icface import ICface, ICfaceConfig
from asccl.spfem.train import train_spfem

SIZE = 32


def tiny_config(**changes) -> ICfaceConfig:
    fields = dict(image_size=SIZE, conv_dim=8, num_down=2, res_blocks=1, d_conv_dim=8,
                  d_layers=3)  # fmt: skip
    fields.update(changes)
    return ICfaceConfig(**fields)


def tiny_batch(batch: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
    """Smooth random images and plausible landmarks (the template, jittered), in [0, 1]."""
    g = torch.Generator().manual_seed(seed)

    def images() -> torch.Tensor:
        coarse = torch.rand(batch, 3, SIZE // 8, SIZE // 8, generator=g) * 2 - 1
        return torch.nn.functional.interpolate(coarse, size=(SIZE, SIZE), mode="bilinear")

    def landmarks() -> torch.Tensor:
        lm = face_template()[None] * 0.25 + torch.tensor([0.5, 0.35])
        return (lm + 0.01 * torch.randn(batch, 68, 2, generator=g)).float()

    source, target = images(), images()
    return {
        "image": source, "source": source, "target": target, "reference": target,
        "emotion": torch.zeros(batch, dtype=torch.int64),
        "target_emotion": torch.full((batch,), 3, dtype=torch.int64),
        "source_landmarks": landmarks(), "target_landmarks": landmarks(),
    }  # fmt: skip


def test_registered_and_built_by_name():
    assert GENERATORS["icface"] is ICface
    model = build_generator("icface", {"image_size": SIZE, "conv_dim": 8, "d_layers": 3})
    assert isinstance(model, ICface) and model.adapter == "image2image"
    with pytest.raises(ValueError, match="params must be one of"):
        ICfaceConfig(params="aus")
    with pytest.raises(ValueError, match="mouth_from"):
        ICfaceConfig(mouth_from="lips")
    with pytest.raises(ValueError, match="multiple of"):
        ICfaceConfig(image_size=40, d_layers=4)


def test_shapes_ranges_and_outputs():
    torch.manual_seed(0)
    model = ICface(tiny_config())
    batch = tiny_batch()
    terms, out = model.generator_losses(batch)
    assert set(terms) == {"g_adv", "g_param", "g_rec", "g_paired"}
    assert all(t.dim() == 0 and torch.isfinite(t) for t in terms.values())
    for key in ("generated", "neutral", "reconstructed"):
        assert out[key].shape == (2, 3, SIZE, SIZE)
        assert out[key].min() >= -1 and out[key].max() <= 1
    assert out["driving_params"].shape == (2, LANDMARK_LAYOUT.size)
    d_terms = model.discriminator_losses(batch)
    assert set(d_terms) == {"d_adv", "d_param"}
    with pytest.raises(ValueError, match=r"source must be \(B, 3, 32, 32\)"):
        model.translate({**batch, "source": torch.zeros(2, 3, 16, 16)})


def test_driving_params_keep_source_speech():
    batch = tiny_batch()
    opened = batch["target_landmarks"].clone()
    opened[:, 65:68, 1] += 0.05  # the reference's mouth opens
    opened[:, 17:27, 1] -= 0.03  # and its brows rise
    batch["target_landmarks"] = opened
    p_src = landmark_expression_params(batch["source_landmarks"])
    p_ref = landmark_expression_params(opened)
    mouth = LANDMARK_LAYOUT.names.index("mouth_open")
    brow = LANDMARK_LAYOUT.names.index("brow_inner")
    out = ICface(tiny_config())._step(batch)
    torch.testing.assert_close(out["driving_params"][:, mouth], p_src[:, mouth])
    torch.testing.assert_close(out["driving_params"][:, brow], p_ref[:, brow])
    out = ICface(tiny_config(mouth_from="reference"))._step(batch)
    torch.testing.assert_close(out["driving_params"][:, mouth], p_ref[:, mouth])


def test_gradient_reaches_both_subnets_and_d_step_leaves_generator_alone():
    torch.manual_seed(0)
    model = ICface(tiny_config())
    batch = tiny_batch()
    sum(model.discriminator_losses(batch).values()).backward()
    assert all(p.grad is None for p in model.generator_parameters())
    assert all(p.grad is not None for p in model.discriminator_parameters())
    model.zero_grad(set_to_none=True)
    terms, _ = model.generator_losses(batch)
    sum(terms.values()).backward()
    for net in (model.neutraliser, model.driver):
        grads = [p.grad for p in net.parameters()]
        assert all(g is not None for g in grads)
        assert sum(g.abs().sum() for g in grads) > 0
    # the condition reaches the output: other driving parameters give another image
    source = batch["source"]
    with torch.no_grad():
        a = model(source, torch.zeros(2, 12))[0]
        b = model(source, torch.ones(2, 12))[0]
    assert (a - b).abs().mean() > 1e-4


def test_a_few_steps_reduce_the_generator_losses():
    torch.manual_seed(0)
    model = ICface(tiny_config())
    batch = tiny_batch()
    g_opt = torch.optim.Adam(model.generator_parameters(), lr=2e-3, betas=(0.5, 0.999))
    d_opt = torch.optim.Adam(model.discriminator_parameters(), lr=2e-3, betas=(0.5, 0.999))

    def image_losses() -> float:
        with torch.no_grad():
            terms, _ = model.generator_losses(batch)
        return (terms["g_rec"] + terms["g_paired"]).item()

    before = image_losses()
    for _ in range(30):
        d_opt.zero_grad(set_to_none=True)
        sum(model.discriminator_losses(batch).values()).backward()
        d_opt.step()
        g_opt.zero_grad(set_to_none=True)
        terms, _ = model.generator_losses(batch)
        sum(terms.values()).backward()
        g_opt.step()
    after = image_losses()
    print(f"rec + paired: {before:.3f} -> {after:.3f}")
    assert after < 0.7 * before, (before, after)


def test_skip_starts_at_the_identity():
    torch.manual_seed(0)
    model = ICface(tiny_config(skip=True))
    batch = tiny_batch()
    batch["source"] = batch["source"].clamp(-0.99, 0.99)
    torch.testing.assert_close(model.translate(batch), batch["source"], atol=1e-5, rtol=0)
    terms, out = model.generator_losses(batch)
    torch.testing.assert_close(out["neutral"], batch["source"], atol=1e-5, rtol=0)
    assert terms["g_rec"].item() < 1e-3
    sum(terms.values()).backward()
    assert model.driver.head.weight.grad.abs().sum() > 0


def test_translate_uses_reference_params_and_checks_them():
    torch.manual_seed(0)
    model = ICface(tiny_config()).eval()
    batch = tiny_batch()
    out = model.translate(batch)
    assert out.shape == (2, 3, SIZE, SIZE)
    reference = landmark_expression_params(batch["target_landmarks"])
    torch.testing.assert_close(model.translate({**batch, "reference_params": reference}), out)
    other = model.translate({**batch, "reference_params": reference + 0.5})
    assert not torch.allclose(other, out)
    with pytest.raises(ValueError, match=r"reference_params must be \(B, 12\) landmarks"):
        model.translate({**batch, "reference_params": torch.zeros(2, 20)})


def test_openface_params_from_the_batch():
    torch.manual_seed(0)
    model = ICface(tiny_config(params="openface"))
    batch = tiny_batch()
    with pytest.raises(KeyError, match="source_params"):
        model.generator_losses(batch)
    batch["source_params"] = torch.rand(2, 20)
    batch["target_params"] = torch.rand(2, 20)
    terms, out = model.generator_losses(batch)
    assert out["driving_params"].shape == (2, 20) and torch.isfinite(terms["g_param"])
    # only the reference is needed when nothing is taken from the source
    model = ICface(tiny_config(params="openface", mouth_from="reference", pose_from="reference"))
    out = model.translate({"source": batch["source"], "reference_params": torch.rand(2, 20)})
    assert out.shape == (2, 3, SIZE, SIZE)


# ---------------------------------------------------------------- with the trainer

CONFIGS = Path(__file__).resolve().parents[3] / "configs" / "spfem"


@pytest.mark.parametrize("name", ["icface_demo.toml", "icface.toml"])
def test_configs_load_and_build(name):
    config = load_config(SPFEMTrainConfig, CONFIGS / name)
    assert config.model == "icface"
    model = build_generator("icface", config.model_config())
    assert model.config.image_size == config.image_size
    assert model.config.params == "landmarks" and model.config.mouth_from == "source"


def test_train_spfem_runs_icface(tmp_path):
    stage1 = write_stage1(tmp_path / "stage1")
    config = SPFEMTrainConfig(
        model="icface", data=stage1, out=tmp_path / "run", steps=3, batch_size=2,
        image_size=SIZE, workers=0, device="cpu", sample_every=3, checkpoint_every=3,
        log_every=1, icface=tiny_config(),
    )  # fmt: skip
    final = train_spfem(config)
    with (tmp_path / "run" / "log.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["step"]) for r in rows] == [1, 2, 3]
    for column in ("d_adv", "d_param", "g_adv", "g_param", "g_rec", "g_paired"):
        assert math.isfinite(float(rows[-1][column]))
    assert (tmp_path / "run" / "samples" / "step_00000003.png").is_file()
    model = load_generator(final)
    assert isinstance(model, ICface) and model.config == tiny_config()


def test_train_spfem_icface_resume_equals_uninterrupted(tmp_path):
    stage1 = write_stage1(tmp_path / "stage1")

    def config(out: Path, steps: int) -> SPFEMTrainConfig:
        return SPFEMTrainConfig(
            model="icface", data=stage1, out=out, steps=steps, batch_size=2, image_size=SIZE,
            workers=0, device="cpu", sample_every=0, checkpoint_every=2, log_every=1,
            icface=tiny_config(),
        )  # fmt: skip

    straight = train_spfem(config(tmp_path / "straight", 4))
    train_spfem(config(tmp_path / "resumed", 2))  # "killed" after its step-2 checkpoint
    resumed = train_spfem(config(tmp_path / "resumed", 4))
    a, b = load_file(str(straight)), load_file(str(resumed))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
