"""ASCCL supervising a NED-style neural renderer, end to end on CPU in seconds.

Run: ``python examples/ned_renderer_minimal.py``

Everything is a stand-in: a random-weight IResNet-18 metric at 64x64 saved to a temporary
file (use your trained ``metric.safetensors`` instead), a two-layer "renderer" mapping a
conditioning image (NED's NMFC render) to a frame, and random 2-frame windows as data.
The wiring is the real one: NED's renderer generates every frame of its window in a step,
``fake_B`` ``(B, T, 3, H, W)`` vs ``real_B`` in [-1, 1], RGB, all T frames folded into the
batch, ASCCL added to the renderer's own loss with a linear warm-up.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from torch import nn

from asccl.metric import ASCCLMetric, save_metric
from asccl.spfem import ASCCLSupervision

SIZE, BATCH, WINDOW = 64, 2, 2


def stand_in_renderer() -> nn.Module:
    """(B, 3, H, W) conditioning in [-1, 1] -> (B, 3, H, W) frame in [-1, 1]."""
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 3, 3, padding=1), nn.Tanh()
    )


def fake_batch(generator: torch.Generator) -> dict[str, torch.Tensor]:
    """NED-like batch: ``nmfc`` and the real window ``real_B``, both (B, T, 3, H, W)."""
    real_b = torch.rand(BATCH, WINDOW, 3, SIZE, SIZE, generator=generator) * 2 - 1
    nmfc = real_b.flip(2)  # stand-in conditioning derived from the real frames
    return {"nmfc": nmfc, "real_B": real_b}


def main(steps: int = 4, seed: int = 0) -> list[dict[str, float]]:
    torch.manual_seed(seed)
    with tempfile.TemporaryDirectory() as tmp:
        metric = ASCCLMetric(backbone="iresnet18", image_size=SIZE, num_anchors=(8, 4, 4, 2))
        checkpoint = save_metric(metric, Path(tmp) / "asccl.safetensors")
        asccl = ASCCLSupervision(
            checkpoint=checkpoint, adapter="ned_renderer", weight=1.0, warmup_steps=2
        )
    renderer = stand_in_renderer()
    optimiser = torch.optim.Adam(renderer.parameters(), lr=1e-3)
    data_rng = torch.Generator().manual_seed(seed)
    history = []
    for step in range(steps):
        batch = fake_batch(data_rng)
        fake_b = renderer(batch["nmfc"].flatten(0, 1)).unflatten(0, (BATCH, WINDOW))
        outputs = {"fake_B": fake_b}  # (B, T, 3, H, W): every frame of the window
        l1 = (outputs["fake_B"] - batch["real_B"]).abs().mean()  # renderer's own loss
        extra, logs = asccl(batch, outputs, step)
        optimiser.zero_grad(set_to_none=True)
        (l1 + extra).backward()
        optimiser.step()
        row = {"step": step, "l1": l1.item(), "asccl_weight": logs["asccl_weight"]}
        if "asccl" in logs:
            row["asccl"] = float(logs["asccl"])
        history.append(row)
        print(
            " ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items())
        )
    return history


if __name__ == "__main__":
    main()
