"""GANmut-style generator: gamut conditioning, losses, translation, a small overfit."""

from __future__ import annotations

import math

import pytest
import torch

from asccl.spfem.data import EMOTIONS, emotion_label
from asccl.spfem.generators import GENERATORS, build_generator
from asccl.spfem.generators.ganmut import GANmut, GANmutConfig

TINY = dict(image_size=32, g_channels=8, g_res_blocks=1, d_channels=8, d_layers=3)


def make_batch(b: int = 4, size: int = 32, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(2 * b, 3, size // 8, size // 8, generator=g) * 2 - 1
    images = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear")
    source, target = images[:b], images[b:]
    return {
        "image": source, "source": source, "target": target, "reference": target,
        "emotion": torch.zeros(b, dtype=torch.int64),
        "target_emotion": torch.arange(b, dtype=torch.int64) % (len(EMOTIONS) - 1) + 1,
        "source_landmarks": torch.rand(b, 68, 2), "target_landmarks": torch.rand(b, 68, 2),
    }  # fmt: skip


def test_registered_and_built_from_a_dict():
    assert GENERATORS["ganmut"] is GANmut
    model = build_generator("ganmut", {**TINY, "variant": "gaussian"})
    assert isinstance(model, GANmut) and model.config.variant == "gaussian"
    assert model.adapter == "image2image" and model.Config is GANmutConfig
    with pytest.raises(ValueError, match="unknown config field"):
        build_generator("ganmut", {"widht": 3})
    with pytest.raises(ValueError, match="unknown generator"):
        build_generator("stargan")
    with pytest.raises(ValueError, match="multiple of 2\\*\\*d_layers"):
        GANmutConfig(image_size=40, d_layers=4)


def test_parameters_split_between_generator_and_discriminator():
    model = GANmut(GANmutConfig(**TINY))
    g = set(map(id, model.generator_parameters()))
    d = set(map(id, model.discriminator_parameters()))
    assert not g & d and g | d == set(map(id, model.parameters()))
    assert id(model.axes) in g


def test_linear_gamut_points():
    model = GANmut(GANmutConfig(**TINY))
    labels = torch.arange(len(EMOTIONS))
    points = model.emotion_points(labels, 0.5)
    assert torch.equal(points[0], torch.zeros(2))  # neutral: the origin
    assert torch.allclose(points[1:].norm(dim=1), torch.full((len(EMOTIONS) - 1,), 0.5))
    # initial directions: evenly spaced angles theta_k = 2 pi (k - 1) / (K - 1)
    angles = torch.atan2(points[1:, 1], points[1:, 0]) % (2 * math.pi)
    expected = 2 * math.pi * torch.arange(len(EMOTIONS) - 1) / (len(EMOTIONS) - 1)
    assert torch.allclose(angles, expected, atol=1e-5)
    rho = torch.tensor([0.0, 1.0, 0.25])
    assert torch.allclose(model.emotion_points(labels[1:4], rho).norm(dim=1), rho)


def test_gaussian_soft_labels_peak_at_each_mean():
    model = GANmut(GANmutConfig(**TINY, variant="gaussian"))
    labels = torch.arange(len(EMOTIONS))
    log_p = model.soft_labels(model.emotion_points(labels))
    assert torch.allclose(log_p.exp().sum(1), torch.ones(len(EMOTIONS)))
    assert torch.equal(log_p.argmax(1), labels)


@pytest.mark.parametrize("variant", ["linear", "gaussian"])
@pytest.mark.parametrize("adversarial", ["wgan-gp", "lsgan"])
def test_losses_and_translation(variant, adversarial):
    torch.manual_seed(0)
    model = GANmut(GANmutConfig(**TINY, variant=variant, adversarial=adversarial,
                                lambda_paired=1.0))  # fmt: skip
    batch = make_batch()
    d_terms = model.discriminator_losses(batch)
    assert ("d_gp" in d_terms) == (adversarial == "wgan-gp")
    g_terms, outputs = model.generator_losses(batch)
    assert {"g_adv", "g_cls", "g_point", "g_cycle", "g_identity", "g_paired"} <= set(g_terms)
    for value in (*d_terms.values(), *g_terms.values()):
        assert value.dim() == 0 and torch.isfinite(value)
    generated = outputs["generated"]
    assert generated.shape == batch["source"].shape and generated.abs().max() <= 1
    sum(g_terms.values()).backward()
    assert all(p.grad is not None for p in model.generator.parameters())
    out = model.translate(batch)
    assert out.shape == (4, 3, 32, 32) and not out.requires_grad and out.abs().max() <= 1
    # translate is deterministic and follows the label
    assert torch.equal(out, model.translate(batch))
    other = dict(batch, target_emotion=torch.full((4,), emotion_label("sad")))
    assert not torch.equal(out, model.translate(other))


def test_skip_starts_at_the_identity():
    model = GANmut(GANmutConfig(**TINY, skip=True))
    batch = make_batch()
    assert torch.allclose(model.translate(batch), batch["source"].clamp(-0.999, 0.999),
                          atol=1e-5)  # fmt: skip


def test_a_few_steps_on_a_fixed_batch_reduce_the_losses():
    torch.manual_seed(0)
    model = GANmut(GANmutConfig(**TINY, num_random=0))
    batch = make_batch(b=4)
    g_opt = torch.optim.Adam(model.generator_parameters(), lr=2e-3, betas=(0.5, 0.999))
    d_opt = torch.optim.Adam(model.discriminator_parameters(), lr=2e-3, betas=(0.5, 0.999))
    history = []
    for _ in range(40):
        d_opt.zero_grad()
        d_terms = model.discriminator_losses(batch)
        sum(d_terms.values()).backward()
        d_opt.step()
        g_opt.zero_grad()
        g_terms, _ = model.generator_losses(batch)
        sum(g_terms.values()).backward()
        g_opt.step()
        history.append({k: v.item() for k, v in {**d_terms, **g_terms}.items()})
    first, last = history[0], history[-1]
    # reconstruction (cycle + identity) and the real-frame classifier both improve a lot
    assert last["g_cycle"] + last["g_identity"] < 0.5 * (first["g_cycle"] + first["g_identity"])
    assert last["d_cls"] < 0.5 * first["d_cls"]
    assert last["d_gp"] < first["d_gp"]


@pytest.mark.parametrize("skip", [False, True])
def test_bf16_autocast_gives_finite_losses_and_gradients(skip):
    torch.manual_seed(0)
    model = GANmut(GANmutConfig(**TINY, skip=skip))
    batch = make_batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        d_terms = model.discriminator_losses(batch)
        g_terms, _ = model.generator_losses(batch)
    assert all(torch.isfinite(v) for v in (*d_terms.values(), *g_terms.values()))
    sum(g_terms.values()).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.generator.parameters())
