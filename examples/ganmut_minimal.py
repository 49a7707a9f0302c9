"""ASCCL supervising a GANmut-style generator, end to end on CPU in seconds.

Run: ``python examples/ganmut_minimal.py``

The loop mirrors GANmut's ``solver.py``, ``Solver.train()``, linear parametrisation: a
discriminator step every iteration ``i``, a generator step when ``(i + 1) % n_critic == 0``,
and the generator loss ``g_loss`` summed from ``g_loss_fake``, ``g_loss_rec``, ``g_loss_cls``
and ``g_loss_info``; ASCCL is one more term of that sum, logged as ``G/loss_asccl`` next to
GANmut's own ``G/...`` entries.

Everything is a stand-in: a random-weight IResNet-18 metric at 64x64 saved to a temporary
file (use your trained ``metric.safetensors`` instead), a two-layer generator conditioned on
a point of a 2-D emotion plane, a tiny discriminator and random images. The conventions are
GANmut's: ``x_real`` and ``x_fake`` are ``(B, 3, H, W)`` in [-1, 1] (GANmut: 128x128) in
**BGR** order, because GANmut's loader reads with ``cv2.imread`` and never converts; the
adapter therefore declares ``channel_order="bgr"`` and ASCCL flips to the metric's RGB.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from asccl.metric import ASCCLMetric, save_metric
from asccl.spfem import ASCCLSupervision, get_adapter

SIZE, BATCH, C_DIM, N_CRITIC = 64, 4, 7, 2
LAMBDA_REC, LAMBDA_CLS, LAMBDA_INFO = 10.0, 1.0, 1.0  # GANmut's defaults (main.py)


class StandInGenerator(nn.Module):
    """GANmut's ``G(x_real, c_trg, expression_strength) -> (x_fake, cord)``.

    ``x_real`` ``(B, 3, H, W)`` in [-1, 1], ``c_trg`` one-hot ``(B, C)``, strength ``(B,)``;
    ``cord`` ``(B, 2)`` is the point in the emotion plane (direction of the target emotion's
    learned axis, length = strength) and ``x_fake`` the edited image, tanh, [-1, 1].
    """

    def __init__(self, c_dim: int) -> None:
        super().__init__()
        self.axes = nn.Parameter(torch.randn(c_dim, 2))  # one learned 2-D axis per emotion
        self.net = nn.Sequential(
            nn.Conv2d(3 + 2, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 3, 3, padding=1), nn.Tanh()
        )

    def forward(self, x: Tensor, c: Tensor, strength: Tensor) -> tuple[Tensor, Tensor]:
        cord = strength[:, None] * F.normalize(c @ self.axes, dim=1)  # (B, 2)
        planes = cord[:, :, None, None].expand(-1, -1, *x.shape[-2:])  # (B, 2, H, W)
        return self.net(torch.cat([x, planes], dim=1)), cord


class StandInDiscriminator(nn.Module):
    """``D(x) -> (out_src (B, 1, h, w), out_cls (B, C), cord_hat (B, 2))``."""

    def __init__(self, c_dim: int) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Conv2d(3, 16, 4, stride=4), nn.LeakyReLU(0.01))
        self.src = nn.Conv2d(16, 1, 3, padding=1)
        self.cls = nn.Linear(16, c_dim)
        self.cord = nn.Linear(16, 2)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        h = self.trunk(x)
        pooled = h.mean(dim=(2, 3))
        return self.src(h), self.cls(pooled), self.cord(pooled)


def fake_batch(generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """``x_real`` ``(B, 3, H, W)`` in [-1, 1], BGR (as GANmut's loader), and labels ``(B,)``."""
    rgb = torch.rand(BATCH, 3, SIZE, SIZE, generator=generator) * 2 - 1
    x_real = rgb.flip(1)  # GANmut: cv2.imread gives BGR and nothing converts it
    label_org = torch.randint(0, C_DIM, (BATCH,), generator=generator)
    return x_real, label_org


def main(steps: int = 6, seed: int = 0) -> list[dict[str, float]]:
    """Train for ``steps`` iterations (a G step every ``N_CRITIC``); the logged rows."""
    torch.manual_seed(seed)
    with tempfile.TemporaryDirectory() as tmp:
        metric = ASCCLMetric(backbone="iresnet18", image_size=SIZE, num_anchors=(8, 4, 4, 2))
        checkpoint = save_metric(metric, Path(tmp) / "asccl.safetensors")
        asccl = ASCCLSupervision(
            checkpoint=checkpoint,
            adapter=get_adapter("ganmut", channel_order="bgr"),  # x_fake vs x_real, BGR
            weight=1.0,
            warmup_steps=2,  # counted in iterations i, like GANmut's schedules
        )
    G, D = StandInGenerator(C_DIM), StandInDiscriminator(C_DIM)
    g_optimizer = torch.optim.Adam(G.parameters(), 1e-4, betas=(0.5, 0.999))
    d_optimizer = torch.optim.Adam(D.parameters(), 1e-4, betas=(0.5, 0.999))
    data_rng = torch.Generator().manual_seed(seed)
    history = []
    for i in range(steps):
        x_real, label_org = fake_batch(data_rng)
        label_trg = label_org[torch.randperm(BATCH, generator=data_rng)]
        c_org, c_trg = F.one_hot(label_org, C_DIM).float(), F.one_hot(label_trg, C_DIM).float()
        strength = torch.rand(BATCH, generator=data_rng) * 0.8 + 0.2

        # 2. Train the discriminator (every iteration).
        out_src, out_cls, _ = D(x_real)
        x_fake, cord = G(x_real, c_trg, strength)
        out_src_fake, _, cord_hat = D(x_fake.detach())
        d_loss = (
            -out_src.mean()
            + out_src_fake.mean()
            + LAMBDA_CLS * F.cross_entropy(out_cls, label_org)
            + LAMBDA_INFO * F.mse_loss(cord_hat, cord.detach())
        )
        d_optimizer.zero_grad(set_to_none=True)
        d_loss.backward()
        d_optimizer.step()
        loss: dict[str, float] = {"D/loss": d_loss.item()}

        # 3. Train the generator (every n_critic iterations).
        if (i + 1) % N_CRITIC == 0:
            with torch.no_grad():
                _, cls_real, _ = D(x_real)
            x_fake, cord = G(x_real, c_trg, strength)
            out_src, out_cls, cord_hat = D(x_fake)
            g_loss_fake = -out_src.mean()
            g_loss_cls = F.cross_entropy(out_cls, label_trg)
            g_loss_info = F.mse_loss(cord_hat, cord)
            strength_real = F.softmax(cls_real, dim=1).max(1)[0]  # "approximate" cycle
            x_reconst, _ = G(x_fake, c_org, strength_real)
            g_loss_rec = (x_real - x_reconst).abs().mean()
            g_loss_asccl, asccl_logs = asccl({"image": x_real}, {"generated": x_fake}, i)
            g_loss = (
                g_loss_fake
                + LAMBDA_REC * g_loss_rec
                + LAMBDA_CLS * g_loss_cls
                + LAMBDA_INFO * g_loss_info
                + g_loss_asccl  # already weight_at(i) * raw
            )
            g_optimizer.zero_grad(set_to_none=True)
            g_loss.backward()
            g_optimizer.step()
            loss["G/loss_fake"] = g_loss_fake.item()
            loss["G/loss_rec"] = g_loss_rec.item()
            loss["G/loss_cls"] = g_loss_cls.item()
            loss["G/asccl_weight"] = float(asccl_logs["asccl_weight"])
            if "asccl" in asccl_logs:  # absent while the weight is 0 (the metric did not run)
                loss["G/loss_asccl"] = float(asccl_logs["asccl"])

        values = ", ".join(f"{k}: {v:.4f}" for k, v in loss.items())
        print(f"Iteration [{i + 1}/{steps}], {values}")  # GANmut's log line
        history.append({"step": float(i), **loss})
    return history


if __name__ == "__main__":
    main()
