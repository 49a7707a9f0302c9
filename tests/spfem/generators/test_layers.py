"""Shared generator layers and GAN losses."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from asccl.spfem.generators.layers import (
    ConvNormAct,
    Down,
    PatchDiscriminator,
    ResidualBlock,
    Up,
    adversarial_d_loss,
    adversarial_g_loss,
    gradient_penalty,
)


def test_blocks_keep_or_scale_the_size():
    x = torch.randn(2, 4, 16, 16)
    assert ConvNormAct(4, 8, 7)(x).shape == (2, 8, 16, 16)
    assert Down(4, 8)(x).shape == (2, 8, 8, 8)
    assert Up(4, 2)(x).shape == (2, 2, 32, 32)
    block = ResidualBlock(4)
    assert block(x).shape == x.shape
    with torch.no_grad():  # a zeroed body makes the block the identity
        for p in block.body.parameters():
            p.zero_()
    assert torch.equal(block(x), x)
    with pytest.raises(ValueError, match="unknown norm"):
        ConvNormAct(4, 8, norm="group")


def test_patch_discriminator_outputs():
    d = PatchDiscriminator(32, base_channels=8, num_layers=3, aux_outputs=5)
    patch, aux = d(torch.randn(3, 3, 32, 32))
    assert patch.shape == (3, 1, 4, 4) and aux.shape == (3, 5)
    patch, aux = PatchDiscriminator(32, base_channels=8, num_layers=3)(torch.randn(1, 3, 32, 32))
    assert aux is None
    with pytest.raises(ValueError, match="multiple of 2\\*\\*num_layers"):
        PatchDiscriminator(36, num_layers=3)


def test_adversarial_losses_values():
    real, fake = torch.tensor([1.0, 3.0]), torch.tensor([-1.0, 0.0])
    assert adversarial_d_loss("wgan-gp", real, fake).item() == pytest.approx(-0.5 - 2.0)
    assert adversarial_g_loss("wgan-gp", fake).item() == pytest.approx(0.5)
    # LSGAN: 0.5 * (mean((real-1)^2) + mean(fake^2)) = 0.5 * (2 + 0.5)
    assert adversarial_d_loss("lsgan", real, fake).item() == pytest.approx(1.25)
    assert adversarial_g_loss("lsgan", fake).item() == pytest.approx(0.5 * (4 + 1) / 2)
    with pytest.raises(ValueError, match="unknown adversarial"):
        adversarial_g_loss("hinge", fake)


class _Linear(nn.Module):
    """D(x) = <w, x>: its input gradient is w everywhere, so GP = (||w|| - 1)^2."""

    def __init__(self, w: torch.Tensor) -> None:
        super().__init__()
        self.w = nn.Parameter(w)

    def forward(self, x):
        return (x * self.w).flatten(1).sum(1), None


def test_gradient_penalty_matches_the_closed_form_and_reaches_d():
    w = torch.full((1, 3, 4, 4), 0.5)  # ||w|| = 0.5 * sqrt(48)
    d = _Linear(w.clone())
    gp = gradient_penalty(d, torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4))
    assert gp.item() == pytest.approx((0.5 * 48**0.5 - 1) ** 2, rel=1e-5)
    gp.backward()
    assert d.w.grad is not None and d.w.grad.abs().sum() > 0
