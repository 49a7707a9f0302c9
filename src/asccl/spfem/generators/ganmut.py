"""GANmut-style generator: StarGAN-family translation conditioned on a 2-D emotion gamut.

After d'Apolito et al., "GANmut: Learning Interpretable Conditional Space for Gamut of
Emotions" (CVPR 2021; facts read from ``stefanodapolito/GANmut``, no code copied). The
generator takes an image and a point ``z`` of a learned 2-D plane, broadcast as two extra
input channels; the plane is the emotion gamut:

- ``"linear"``: every basic emotion ``k`` (neutral excepted) is a learned unit direction
  ``u_k`` (initialised at the angle ``theta_k = 2 pi (k - 1) / (K - 1)`` here); a point is
  ``z = rho * u_k`` with intensity ``rho`` in [0, 1]; neutral is the origin. Training draws
  ``rho ~ U[rho_min, 1]`` and adds N(0, ``point_noise``) jitter, as GANmut does.
- ``"gaussian"``: every emotion (neutral included) is a learned 2-D Gaussian (mean
  ``tanh(mu_k)``, covariance ``R(phi_k) diag(|s_k|) R(phi_k)^T``); a point's soft label is
  ``softmax(-mahalanobis^2(z))`` over the emotions. Training uses each target's mean.

In both variants the first ``num_random`` rows of every batch get a random gamut point
(uniform angle, ``rho ~ U[0, 1]``, or uniform in [-1, 1]^2) to explore the plane; they take
the adversarial and point-regression losses only.

Losses (StarGAN/GANmut; the weights are :class:`GANmutConfig` fields):

- adversarial: WGAN-GP by default (GANmut's "gp" regularisation: ``E[D(fake)] - E[D(real)]
  + lambda_gp * GP``), LSGAN on request (``adversarial = "lsgan"``, no penalty);
- classification: the discriminator's auxiliary head classifies real frames (D) and the
  generated ones as their target emotion (G). Gaussian variant: a symmetric KL between D's
  class distribution on a fake and the point's soft label, plus cross-entropy at the means;
- point regression (GANmut's "info" loss): D regresses the gamut point of a fake (D and G);
- intensity (linear only): D's top class probability on a fake follows ``rho``;
- cycle: ``G(G(x, z_target), z_source)`` returns to ``x`` (L1), ``z_source`` the source's
  own condition (the origin for a neutral source: label-driven, GANmut's "approximate"
  cycle with the source intensity known);
- reconstruction (not in GANmut; asked by the ASCCL spec): ``G(x, z_source) = x`` (L1);
- paired (not in GANmut; default weight 0 to stay GANmut-like): L1 between the generated
  frame and the DTW-aligned emotional target, rows with a random point excluded.

Differences from the authors' code, on purpose: instance norm without running statistics
(train and eval outputs agree), an optional skip connection (``skip``, off by default),
nearest-neighbour upsampling + 3x3 conv instead of
transposed convolutions, configurable widths (the demo uses much smaller ones), and the
discriminator sees real frames of every emotion: the neutral sources and the emotional
targets of the batch (GANmut's data are unpaired images of all emotions).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from asccl.spfem.config import GANmutConfig
from asccl.spfem.data import NEUTRAL
from asccl.spfem.generators.base import Batch, ReferenceGenerator, check_images
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


class GamutGenerator(nn.Module):
    """Image + gamut point -> image: ``(B, 3, S, S)``, ``(B, 2)`` -> ``(B, 3, S, S)`` in
    [-1, 1] (tanh). Stem 7x7, ``n`` downsamplings, residual bottleneck, ``n`` upsamplings,
    7x7 head."""

    def __init__(self, channels: int, downsamples: int, res_blocks: int,
                 skip: bool = False) -> None:  # fmt: skip
        super().__init__()
        self.skip = skip
        layers: list[nn.Module] = [ConvNormAct(3 + 2, channels, 7)]
        width = channels
        for _ in range(downsamples):
            layers.append(Down(width, width * 2))
            width *= 2
        layers += [ResidualBlock(width) for _ in range(res_blocks)]
        for _ in range(downsamples):
            layers.append(Up(width, width // 2))
            width //= 2
        self.net = nn.Sequential(*layers)
        self.head = nn.Conv2d(width, 3, 7, 1, 3, bias=False)
        if skip:  # start at the identity
            nn.init.zeros_(self.head.weight)

    def forward(self, images: Tensor, points: Tensor) -> Tensor:
        b, _, h, w = images.shape
        condition = points.to(images.dtype).view(b, 2, 1, 1).expand(b, 2, h, w)
        out = self.head(self.net(torch.cat([images, condition], dim=1)))
        if self.skip:  # in float32: 0.999 rounds to 1 in bf16, and atanh(1) = inf
            out = out.float() + torch.atanh(images.float().clamp(-0.999, 0.999))
        return torch.tanh(out)


class GANmut(ReferenceGenerator):
    """GANmut-style model: generator, gamut parameters and discriminator (see the module
    docstring for the conditioning and the losses)."""

    name: ClassVar[str] = "ganmut"
    adapter: ClassVar[str] = "image2image"  # outputs["generated"] vs batch["source"], RGB
    Config: ClassVar[type] = GANmutConfig

    def __init__(self, config: GANmutConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or GANmutConfig()
        k = config.num_emotions
        self.generator = GamutGenerator(config.g_channels, config.g_downsamples,
                                        config.g_res_blocks, config.skip)  # fmt: skip
        angles = 2 * math.pi * torch.arange(k - 1, dtype=torch.float32) / (k - 1)
        directions = torch.stack([angles.cos(), angles.sin()], dim=1)  # (K-1, 2)
        if config.variant == "linear":
            #: (K-1, 2) learned direction of every emotion but neutral (normalised on use)
            self.axes = nn.Parameter(directions.clone())
        else:
            # means tanh(mu): neutral at the origin, the others on a circle of radius 0.7
            mu = torch.cat([torch.zeros(1, 2), 0.7 * directions]).clamp(-0.99, 0.99)
            self.mu = nn.Parameter(torch.atanh(mu))  # (K, 2)
            self.cov_angle = nn.Parameter(torch.zeros(k))  # (K,) eigenvector angle
            self.cov_scale = nn.Parameter(torch.full((k, 2), 0.1))  # (K, 2) eigenvalues
        # aux head: K class logits + the 2-D point regression
        self.discriminator = PatchDiscriminator(
            config.image_size, 3, config.d_channels, config.d_layers, aux_outputs=k + 2
        )

    # ------------------------------------------------------------------ parameters

    def generator_parameters(self) -> Iterator[nn.Parameter]:
        yield from self.generator.parameters()
        if self.config.variant == "linear":
            yield self.axes
        else:
            yield from (self.mu, self.cov_angle, self.cov_scale)

    def discriminator_parameters(self) -> Iterator[nn.Parameter]:
        yield from self.discriminator.parameters()

    # ------------------------------------------------------------------ the gamut

    def emotion_points(self, labels: Tensor, rho: Tensor | float = 1.0) -> Tensor:
        """Gamut points of emotion ``labels`` ``(B,)``: ``(B, 2)``.

        Linear: ``rho * u_label`` (``rho`` a float or ``(B,)``), the origin for neutral.
        Gaussian: the emotion's mean ``tanh(mu_label)`` (``rho`` unused).
        """
        if self.config.variant == "gaussian":
            return torch.tanh(self.mu)[labels]
        axes = F.normalize(self.axes, dim=1)
        axes = torch.cat([axes.new_zeros(1, 2), axes])  # row 0: neutral, the origin
        rho = torch.as_tensor(rho, dtype=axes.dtype, device=axes.device)
        return axes[labels] * rho.reshape(-1, 1) if rho.dim() else axes[labels] * rho

    def soft_labels(self, points: Tensor) -> Tensor:
        """Gaussian variant: ``(B, K)`` log-probabilities ``log softmax(-d_k^2(points))``,
        ``d_k`` the Mahalanobis distance to emotion ``k``'s Gaussian."""
        cos, sin = self.cov_angle.cos(), self.cov_angle.sin()
        rot = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)
        var = self.cov_scale.abs() + 1e-3  # (K, 2)
        diff = points.float()[:, None, :] - torch.tanh(self.mu)[None]  # (B, K, 2)
        local = torch.einsum("bki,kij->bkj", diff, rot)  # coordinates along the eigenvectors
        distances = (local.pow(2) / var[None]).sum(-1)  # (B, K)
        return F.log_softmax(-distances, dim=1)

    def _training_points(self, batch: Batch) -> tuple[Tensor, Tensor, Tensor]:
        """``(points (B, 2), rho (B,), random (B,) bool)`` for this step's translations."""
        labels = batch["target_emotion"]
        b, device = labels.shape[0], labels.device
        cfg = self.config
        random = torch.arange(b, device=device) < min(cfg.num_random, b)
        if cfg.variant == "linear":
            rho = torch.rand(b, device=device) * (1 - cfg.rho_min) + cfg.rho_min
            rho = torch.where(labels == NEUTRAL, torch.zeros_like(rho), rho)
            points = self.emotion_points(labels, rho)
            points = points + torch.randn(b, 2, device=device) * cfg.point_noise
            angle = torch.rand(b, device=device) * (2 * math.pi)
            radius = torch.rand(b, device=device)
            wander = torch.stack([angle.cos(), angle.sin()], dim=1) * radius[:, None]
        else:
            rho = torch.ones(b, device=device)
            points = self.emotion_points(labels)
            wander = torch.rand(b, 2, device=device) * 2 - 1
        points = torch.where(random[:, None], wander, points)
        return points, rho, random

    # ------------------------------------------------------------------ losses

    def _real_images(self, batch: Batch) -> tuple[Tensor, Tensor]:
        """Real frames of every emotion for D: the sources then the targets, ``(2B, ...)``."""
        images = torch.cat([batch["source"], batch["target"]])
        labels = torch.cat([batch["emotion"], batch["target_emotion"]])
        return images, labels

    def discriminator_losses(self, batch: Batch) -> dict[str, Tensor]:
        cfg = self.config
        source = batch["source"]
        check_images(source, "batch['source']", cfg.image_size)
        with torch.no_grad():
            points, _, _ = self._training_points(batch)
            fake = self.generator(source, points)
        real, real_labels = self._real_images(batch)
        real_scores, real_aux = self.discriminator(real)
        fake_scores, fake_aux = self.discriminator(fake)
        k = cfg.num_emotions
        terms = {
            "d_adv": adversarial_d_loss(cfg.adversarial, real_scores, fake_scores),
            "d_cls": cfg.lambda_cls * F.cross_entropy(real_aux[:, :k].float(), real_labels),
            "d_point": cfg.lambda_point * F.mse_loss(fake_aux[:, k:].float(), points.float()),
        }
        if cfg.adversarial == "wgan-gp" and cfg.lambda_gp > 0:
            terms["d_gp"] = cfg.lambda_gp * gradient_penalty(
                self.discriminator, batch["target"], fake
            )
        return terms

    def generator_losses(self, batch: Batch) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        cfg = self.config
        source, labels = batch["source"], batch["target_emotion"]
        check_images(source, "batch['source']", cfg.image_size)
        k = cfg.num_emotions
        points, rho, random = self._training_points(batch)
        fake = self.generator(source, points)
        scores, aux = self.discriminator(fake)
        logits, point_hat = aux[:, :k].float(), aux[:, k:].float()
        keep = ~random  # rows translated to their target emotion
        terms: dict[str, Tensor] = {
            "g_adv": adversarial_g_loss(cfg.adversarial, scores),
            "g_point": cfg.lambda_point * F.mse_loss(point_hat, points.float()),
        }
        if cfg.variant == "linear":
            terms["g_cls"] = cfg.lambda_cls * _masked_mean(
                F.cross_entropy(logits, labels, reduction="none"), keep
            )
            emotional = keep & (labels != NEUTRAL)
            top = logits.softmax(dim=1).max(dim=1).values
            terms["g_strength"] = cfg.lambda_strength * _masked_mean(
                (top - rho.float()).pow(2), emotional
            )
        else:
            target = self.soft_labels(points)  # log-probabilities of the points' emotions
            predicted = F.log_softmax(logits, dim=1)
            kl = F.kl_div(predicted, target, log_target=True, reduction="batchmean")
            kl = kl + F.kl_div(target, predicted, log_target=True, reduction="batchmean")
            ce = _masked_mean(F.cross_entropy(logits, labels, reduction="none"), keep)
            terms["g_cls"] = cfg.lambda_cls * (kl + ce)
        own = self.emotion_points(batch["emotion"])  # the source's own condition
        if cfg.lambda_cycle > 0:
            cycled = self.generator(fake, own)
            terms["g_cycle"] = cfg.lambda_cycle * F.l1_loss(cycled.float(), source.float())
        if cfg.lambda_identity > 0:
            same = self.generator(source, own)
            terms["g_identity"] = cfg.lambda_identity * F.l1_loss(same.float(), source.float())
        if cfg.lambda_paired > 0:
            error = (fake.float() - batch["target"].float()).abs().flatten(1).mean(1)
            terms["g_paired"] = cfg.lambda_paired * _masked_mean(error, keep)
        return terms, {"generated": fake, "points": points}

    @torch.no_grad()
    def translate(self, batch: Batch) -> Tensor:
        """``batch["source"]`` (or ``"image"``) turned to ``batch["target_emotion"]`` at the
        emotion's gamut point (linear: intensity ``translate_rho``; neutral: the origin).
        A ``"points"`` entry ``(B, 2)`` replaces the labels (any point of the gamut)."""
        source = batch["source"] if "source" in batch else batch["image"]
        check_images(source, "batch['source']", self.config.image_size)
        points = batch.get("points")
        if points is None:
            points = self.emotion_points(batch["target_emotion"], self.config.translate_rho)
        return self.generator(source, points)


def _masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``values`` over ``mask``; 0 (with a graph) when the mask is empty."""
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp_min(1.0)
