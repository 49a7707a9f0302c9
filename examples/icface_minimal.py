"""ASCCL supervising an ICface-style generator, end to end on CPU in seconds.

Run: ``python examples/icface_minimal.py``

The model mirrors the training half of ICface's ``Pix2PixModel``: ``set_input`` reads the
batch keys ``A`` (source frame), ``B`` (driving frame of the same video), ``PA``/``PB`` (20
control values: 3 head-pose angles + 17 OpenFace action units); ``forward`` neutralises
``real_A`` with ``netGN`` (``fake_B``) and drives the result with ``netG`` to ``PB``
(``fake_B_recon``, the output); ``backward_G`` sums ``loss_G`` and ASCCL is one more term
of that sum, compared between the output ``fake_B_recon`` and the input ``real_A``.
``get_current_errors`` reports it next to ICface's own losses.

Everything is a stand-in: a random-weight IResNet-18 metric at 64x64 saved to a temporary
file (use your trained ``metric.safetensors`` instead), two-layer generators, a tiny
discriminator and random frames. The conventions are ICface's: images ``(B, 3, H, W)`` in
[-1, 1] (PIL RGB, ``Normalize(0.5, 0.5)``; ICface: 128x128), tanh outputs, RGB.
"""

from __future__ import annotations

import tempfile
from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from asccl.metric import ASCCLMetric, save_metric
from asccl.spfem import ASCCLSupervision

SIZE, BATCH, N_PARAMS = 64, 2, 20
LAMBDA_A, LAMBDA_D = 10.0, 10.0  # ICface's train_options defaults


def stand_in_generator() -> nn.Module:
    """``(B, 3 + 20, H, W)`` image + control maps -> ``(B, 3, H, W)`` in [-1, 1] (tanh)."""
    return nn.Sequential(
        nn.Conv2d(3 + N_PARAMS, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 3, 3, padding=1),
        nn.Tanh(),
    )


class StandInDiscriminator(nn.Module):
    """``netDA(x) -> (pred (B, 1, h, w), cond (B, 20))``: real/fake and the controls."""

    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Conv2d(3, 16, 4, stride=4), nn.LeakyReLU(0.2))
        self.pred = nn.Conv2d(16, 1, 3, padding=1)
        self.cond = nn.Linear(16, N_PARAMS)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.trunk(x)
        return self.pred(h), self.cond(h.mean(dim=(2, 3)))


def control_maps(params: Tensor, size: int) -> Tensor:
    """``(B, 20)`` -> ``(B, 20, size, size)``, each value a constant plane (ICface's expand)."""
    return params[:, :, None, None].expand(-1, -1, size, size)


class StandInICface(nn.Module):
    """ICface's ``Pix2PixModel`` reduced to its tensors and its two generator updates."""

    def __init__(self, asccl: ASCCLSupervision) -> None:
        super().__init__()
        self.netGN, self.netG = stand_in_generator(), stand_in_generator()
        self.I_E = nn.Sequential(nn.Conv2d(3, 3, 3, padding=1), nn.Tanh())  # ICface's Estimate
        self.netDA = StandInDiscriminator()
        self.optimizer_G = torch.optim.RMSprop(self.netG.parameters(), lr=2e-4)
        self.optimizer_GN = torch.optim.RMSprop(self.netGN.parameters(), lr=2e-4)
        self.optimizer_I = torch.optim.Adam(self.I_E.parameters(), lr=2e-4)
        self.optimizer_DA = torch.optim.RMSprop(self.netDA.parameters(), lr=2e-4)
        self.asccl = asccl  # frozen: adds no parameter to any optimiser above
        self.asccl_step = 0  # ICface's model has no step counter: one per generator update

    def set_input(self, input: dict[str, Tensor]) -> None:
        self.input_A, self.input_B = input["A"], input["B"]
        self.P_A, self.P_B = input["PA"], input["PB"]

    def forward(self) -> None:
        self.real_A, self.real_B = self.input_A, self.input_B  # (B, 3, H, W) in [-1, 1], RGB
        self.param_A = self.P_A.view(-1, N_PARAMS).float()
        self.param_B = self.P_B.view(-1, N_PARAMS).float()
        size = self.real_A.shape[-1]
        aun = control_maps(self.param_A, size) / 1e8  # neutral target: action units ~ 0 ...
        aun[:, 0:3] = 0.5  # ... and a frontal pose
        self.fake_B = self.netGN(torch.cat([self.I_E(self.real_A), aun], dim=1))  # neutralised
        aur = control_maps(self.param_B, size)
        self.fake_B_recon = self.netG(torch.cat([self.I_E(self.fake_B), aur], dim=1))  # output

    def backward_G(self) -> None:
        pred_fake_recon, gar_con = self.netDA(self.fake_B_recon)
        self.loss_G_GAN = F.mse_loss(pred_fake_recon, torch.ones_like(pred_fake_recon))  # LSGAN
        self.sal_loss_N1 = F.l1_loss(gar_con, self.param_B) * LAMBDA_A
        self.recon_loss = F.l1_loss(self.fake_B_recon, self.real_B) * LAMBDA_D
        self.loss_asccl, self.asccl_logs = self.asccl(
            {"source": self.real_A}, {"generated": self.fake_B_recon}, self.asccl_step
        )
        self.loss_G = self.loss_G_GAN + self.recon_loss + self.sal_loss_N1 + self.loss_asccl
        self.loss_G.backward(retain_graph=True)

    def backward_GR(self) -> None:
        pred_fake, _ = self.netDA(self.fake_B)
        self.loss_G_GANE = F.mse_loss(pred_fake, torch.ones_like(pred_fake))
        self.loss_GR = self.loss_G_GANE
        # Only netGN steps on this loss. Restricting the backward to its parameters keeps
        # autograd out of I_E, whose weights optimizer_I.step() has just changed in place
        # (ICface's plain .backward() ran on PyTorch 0.4, whose optimisers wrote p.data).
        self.loss_GR.backward(inputs=list(self.netGN.parameters()))

    def optimize_parameters_D(self) -> None:
        self.forward()
        self.optimizer_DA.zero_grad(set_to_none=True)
        pred_real, cond_real = self.netDA(self.real_A)
        pred_fake, _ = self.netDA(self.fake_B_recon.detach())
        self.loss_D = (
            F.mse_loss(pred_real, torch.ones_like(pred_real))
            + F.mse_loss(pred_fake, torch.zeros_like(pred_fake))
            + F.l1_loss(cond_real, self.param_A) * LAMBDA_A
        )
        self.loss_D.backward()
        self.optimizer_DA.step()

    def optimize_parameters_G(self) -> None:
        self.optimizer_G.zero_grad(set_to_none=True)
        self.optimizer_I.zero_grad(set_to_none=True)
        self.backward_G()  # ASCCL's gradient reaches netG and I_E (and netGN, zeroed below)
        self.optimizer_G.step()
        self.optimizer_I.step()
        self.optimizer_GN.zero_grad(set_to_none=True)
        self.backward_GR()
        self.optimizer_GN.step()
        self.asccl_step += 1

    def get_current_errors(self) -> OrderedDict[str, float]:
        errors = OrderedDict(
            [
                ("G_GAN", self.loss_G_GAN.item()),
                ("G_GANE", self.loss_G_GANE.item()),
                ("sal_lossN1", self.sal_loss_N1.item()),
                ("recon_loss", self.recon_loss.item()),
                ("D_loss", self.loss_D.item()),
                ("asccl_weight", float(self.asccl_logs["asccl_weight"])),
            ]
        )
        if "asccl" in self.asccl_logs:  # absent while the weight is 0 (the metric did not run)
            errors["asccl"] = float(self.asccl_logs["asccl"])
        return errors


def fake_batch(generator: torch.Generator) -> dict[str, Tensor]:
    """ICface-like batch: two frames of one video in [-1, 1], RGB, and their 20 controls."""

    def frame() -> Tensor:
        return torch.rand(BATCH, 3, SIZE, SIZE, generator=generator) * 2 - 1

    def params() -> Tensor:  # pose normalised to ~[0, 1], AU intensities / 5
        return torch.rand(BATCH, 1, N_PARAMS, generator=generator)

    return {"A": frame(), "B": frame(), "PA": params(), "PB": params()}


def main(steps: int = 4, seed: int = 0) -> list[dict[str, float]]:
    """Train for ``steps`` D + G updates; the logged rows."""
    torch.manual_seed(seed)
    with tempfile.TemporaryDirectory() as tmp:
        metric = ASCCLMetric(backbone="iresnet18", image_size=SIZE, num_anchors=(8, 4, 4, 2))
        checkpoint = save_metric(metric, Path(tmp) / "asccl.safetensors")
        asccl = ASCCLSupervision(
            checkpoint=checkpoint,
            adapter="icface",  # outputs["generated"] vs batch["source"], [-1, 1], RGB
            weight=1.0,
            warmup_steps=2,  # counted in generator updates
        )
    model = StandInICface(asccl)
    data_rng = torch.Generator().manual_seed(seed)
    history = []
    for step in range(steps):
        model.set_input(fake_batch(data_rng))
        model.optimize_parameters_D()  # runs forward()
        model.optimize_parameters_G()
        errors = model.get_current_errors()
        print(f"step={step} " + " ".join(f"{k}={v:.4f}" for k, v in errors.items()))
        history.append({"step": float(step), **errors})
    return history


if __name__ == "__main__":
    main()
