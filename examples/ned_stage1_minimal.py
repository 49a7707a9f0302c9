"""ASCCL supervising NED's stage 1 (the expression manipulator), end to end on CPU in seconds.

Run: ``python examples/ned_stage1_minimal.py``

NED's manipulator maps sequences of DECA coefficients ``x_real`` ``(B, T, 51)`` (jaw opening +
50 expression) to manipulated ones ``x_fake``. ASCCL compares images, so the ``ned_stage1``
adapter turns both into FLAME meshes, renders them with DECA's camera (here NED's
visualisation camera ``[6, 0, 0]``) and hands the renders to the loss; the gradient flows
back through the renderer and FLAME into ``x_fake`` and the manipulator.

Everything is a stand-in: a synthetic FLAME-format head (use ``load_flame("flame.npz")`` made
by ``convert_flame`` from FLAME's ``generic_model.pkl``), a random-weight IResNet-18 metric at
64x64 saved to a temporary file (use your trained ``metric.safetensors``), a one-layer
"manipulator" and random sequences.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from torch import nn

from asccl.metric import ASCCLMetric, save_metric
from asccl.spfem import ASCCLSupervision
from asccl.spfem.face3d import MeshRenderer, get_coefficient_adapter, synthetic_flame

SIZE, BATCH, WINDOW, N_EXP = 64, 2, 4, 8


class StandInManipulator(nn.Module):
    """``(B, T, 1 + N_EXP)`` coefficients + target emotion id -> same shape (a residual MLP)."""

    def __init__(self, num_emotions: int = 3) -> None:
        super().__init__()
        self.style = nn.Embedding(num_emotions, 1 + N_EXP)
        self.net = nn.Sequential(nn.Linear(1 + N_EXP, 32), nn.ReLU(), nn.Linear(32, 1 + N_EXP))

    def forward(self, x: torch.Tensor, emotion: torch.Tensor) -> torch.Tensor:
        return x + 0.1 * self.net(x + self.style(emotion)[:, None])


def fake_batch(generator: torch.Generator) -> dict[str, torch.Tensor]:
    """NED-like: ``x_real`` (B, T, 1 + N_EXP), a target emotion, DECA's camera per frame."""
    x_real = torch.randn(BATCH, WINDOW, 1 + N_EXP, generator=generator)
    x_real[..., 0] = 0.15 * x_real[..., 0].abs()  # jaw opening (radians), small and positive
    cam = torch.tensor([6.0, 0.0, 0.0]).expand(BATCH, WINDOW, 3)
    emotion = torch.randint(0, 3, (BATCH,), generator=generator)
    return {"x_real": x_real, "cam": cam, "emotion": emotion}


def main(steps: int = 3, seed: int = 0) -> list[dict[str, float]]:
    torch.manual_seed(seed)
    flame = synthetic_flame(16, 16, n_shape=4, n_exp=N_EXP, shape_total=4, exp_total=N_EXP)
    adapter = get_coefficient_adapter(
        "ned_stage1",
        model=flame,
        renderer=MeshRenderer(SIZE, mode="shaded"),
        layout="ned",  # x_real / x_fake, NED's packed (B, T, 51) layout
        frames="last",  # render the last frame of each window (``"all"``: every frame)
    )
    with tempfile.TemporaryDirectory() as tmp:
        metric = ASCCLMetric(backbone="iresnet18", image_size=SIZE, num_anchors=(8, 4, 4, 2))
        checkpoint = save_metric(metric, Path(tmp) / "asccl.safetensors")
        asccl = ASCCLSupervision(checkpoint=checkpoint, adapter=adapter, weight=1.0)
    manipulator = StandInManipulator()
    optimiser = torch.optim.Adam(manipulator.parameters(), lr=1e-3)
    data_rng = torch.Generator().manual_seed(seed)
    history = []
    for step in range(steps):
        batch = fake_batch(data_rng)
        x_fake = manipulator(batch["x_real"], batch["emotion"])
        own = (x_fake - batch["x_real"]).abs().mean()  # stand-in for NED's own G losses
        extra, logs = asccl(batch, {"x_fake": x_fake}, step)
        optimiser.zero_grad(set_to_none=True)
        (own + extra).backward()
        optimiser.step()
        row = {"step": step, "own": own.item(), "asccl": float(logs["asccl"])}
        history.append(row)
        print(
            " ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items())
        )
    return history


if __name__ == "__main__":
    main()
