"""Small building blocks shared by the reference generators (StarGAN/pix2pix family).

Shapes in the docstrings: ``B`` batch, ``C`` channels, ``H x W`` spatial size.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

Norm = Literal["instance", "batch", "none"]
Act = Literal["relu", "lrelu", "tanh", "none"]
Adversarial = Literal["wgan-gp", "lsgan"]


def _norm(kind: Norm, channels: int) -> nn.Module:
    if kind == "instance":
        # StarGAN's choice: affine, no running statistics (train and eval behave alike)
        return nn.InstanceNorm2d(channels, affine=True, track_running_stats=False)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}; valid: instance, batch, none")


def _act(kind: Act) -> nn.Module:
    acts = {"relu": nn.ReLU, "lrelu": lambda: nn.LeakyReLU(0.01), "tanh": nn.Tanh,
            "none": nn.Identity}  # fmt: skip
    if kind not in acts:
        raise ValueError(f"unknown activation {kind!r}; valid: {', '.join(acts)}")
    return acts[kind]()


class ConvNormAct(nn.Sequential):
    """``Conv2d -> norm -> activation``: ``(B, C_in, H, W) -> (B, C_out, H/stride, W/stride)``.

    ``padding`` defaults to ``kernel // 2`` (``(kernel - stride) // 2`` for even kernels),
    so a stride-2 4x4 conv halves the size exactly.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int = 3,
        stride: int = 1,
        norm: Norm = "instance",
        act: Act = "relu",
        padding: int | None = None,
    ) -> None:
        if padding is None:
            padding = kernel // 2 if kernel % 2 else (kernel - stride) // 2
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel, stride, padding, bias=norm == "none"),
            _norm(norm, out_channels),
            _act(act),
        )


class ResidualBlock(nn.Module):
    """``x + conv-norm-relu-conv-norm(x)``; ``(B, C, H, W) -> (B, C, H, W)``."""

    def __init__(self, channels: int, norm: Norm = "instance") -> None:
        super().__init__()
        self.body = nn.Sequential(
            ConvNormAct(channels, channels, 3, norm=norm, act="relu"),
            ConvNormAct(channels, channels, 3, norm=norm, act="none"),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class Down(ConvNormAct):
    """Stride-2 4x4 conv: ``(B, C_in, H, W) -> (B, C_out, H/2, W/2)``."""

    def __init__(self, in_channels: int, out_channels: int, norm: Norm = "instance",
                 act: Act = "relu") -> None:  # fmt: skip
        super().__init__(in_channels, out_channels, 4, 2, norm=norm, act=act)


class Up(nn.Sequential):
    """Nearest x2 upsampling then a 3x3 conv-norm-act (no checkerboard artefacts of
    transposed convolutions): ``(B, C_in, H, W) -> (B, C_out, 2H, 2W)``."""

    def __init__(self, in_channels: int, out_channels: int, norm: Norm = "instance",
                 act: Act = "relu") -> None:  # fmt: skip
        super().__init__(
            nn.Upsample(scale_factor=2, mode="nearest"),
            ConvNormAct(in_channels, out_channels, 3, norm=norm, act=act),
        )


class PatchDiscriminator(nn.Module):
    """StarGAN's discriminator: a PatchGAN trunk with an optional auxiliary head.

    Trunk: ``num_layers`` stride-2 4x4 convs with leaky ReLU (no normalisation, as WGAN-GP
    requires), channels doubling from ``base_channels`` (capped at ``max_channels``).

    Args:
        image_size: input side ``S`` (a multiple of ``2 ** num_layers``).
        in_channels: input channels (3; 6 for a conditional pair).
        aux_outputs: size of the auxiliary head (emotion logits, AU regression, ...);
            0: no head.

    ``forward(x)`` -> ``(patch, aux)``: ``patch`` ``(B, 1, S/2^n, S/2^n)`` real/fake scores,
    ``aux`` ``(B, aux_outputs)`` (one kernel covering the whole final map) or ``None``.
    """

    def __init__(
        self,
        image_size: int,
        in_channels: int = 3,
        base_channels: int = 64,
        num_layers: int = 4,
        max_channels: int = 512,
        aux_outputs: int = 0,
    ) -> None:
        super().__init__()
        if image_size % (2**num_layers):
            raise ValueError(
                f"image_size {image_size} must be a multiple of 2**num_layers = {2**num_layers}"
            )
        layers: list[nn.Module] = []
        channels = in_channels
        for i in range(num_layers):
            out = min(base_channels * 2**i, max_channels)
            layers.append(ConvNormAct(channels, out, 4, 2, norm="none", act="lrelu"))
            channels = out
        self.trunk = nn.Sequential(*layers)
        self.patch = nn.Conv2d(channels, 1, 3, 1, 1, bias=False)
        final = image_size // 2**num_layers
        self.aux = nn.Conv2d(channels, aux_outputs, final, bias=False) if aux_outputs else None

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        h = self.trunk(x)
        aux = self.aux(h).flatten(1) if self.aux is not None else None
        return self.patch(h), aux


# ----------------------------------------------------------------------------- losses


def adversarial_d_loss(kind: Adversarial, real_scores: Tensor, fake_scores: Tensor) -> Tensor:
    """Discriminator adversarial loss (without the gradient penalty).

    ``wgan-gp``: ``E[D(fake)] - E[D(real)]``; ``lsgan``: ``E[(D(real)-1)^2] + E[D(fake)^2]``
    (halved, as in LSGAN).
    """
    real_scores, fake_scores = real_scores.float(), fake_scores.float()
    if kind == "wgan-gp":
        return fake_scores.mean() - real_scores.mean()
    if kind == "lsgan":
        return 0.5 * ((real_scores - 1).pow(2).mean() + fake_scores.pow(2).mean())
    raise ValueError(f"unknown adversarial loss {kind!r}; valid: wgan-gp, lsgan")


def adversarial_g_loss(kind: Adversarial, fake_scores: Tensor) -> Tensor:
    """Generator adversarial loss: ``-E[D(fake)]`` (WGAN) or ``E[(D(fake)-1)^2]/2`` (LSGAN)."""
    fake_scores = fake_scores.float()
    if kind == "wgan-gp":
        return -fake_scores.mean()
    if kind == "lsgan":
        return 0.5 * (fake_scores - 1).pow(2).mean()
    raise ValueError(f"unknown adversarial loss {kind!r}; valid: wgan-gp, lsgan")


def gradient_penalty(
    discriminator: nn.Module, real: Tensor, fake: Tensor, generator: torch.Generator | None = None
) -> Tensor:
    """WGAN-GP: ``E[(||grad_x D(x)||_2 - 1)^2]`` at random points ``x`` between ``real`` and
    ``fake`` (``(B, C, H, W)`` each; ``fake`` detached here).

    The interpolation weights are drawn from ``generator`` (the global RNG when ``None``).
    Computed in float32 outside autocast: double backward through fp16 overflows easily.
    """
    alpha = torch.rand(real.shape[0], 1, 1, 1, generator=generator, device="cpu")
    alpha = alpha.to(real.device)
    x = (alpha * real.detach().float() + (1 - alpha) * fake.detach().float()).requires_grad_()
    with torch.autocast(device_type=x.device.type, enabled=False):
        scores = discriminator(x)[0]
        (grad,) = torch.autograd.grad(scores.sum(), x, create_graph=True)
    return (grad.flatten(1).norm(dim=1) - 1).pow(2).mean()


def init_weights(module: nn.Module, std: float = 0.02) -> None:
    """Normal(0, ``std``) conv/linear weights and zero biases; norms to weight 1, bias 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.InstanceNorm2d, nn.BatchNorm2d)) and m.affine:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def num_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


__all__ = [
    "ConvNormAct",
    "Down",
    "PatchDiscriminator",
    "ResidualBlock",
    "Up",
    "adversarial_d_loss",
    "adversarial_g_loss",
    "gradient_penalty",
    "init_weights",
    "num_parameters",
]
