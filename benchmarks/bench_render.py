"""Cost of the 3DMM route (render two 224x224 images per sample, then ASCCL) against the
metric's forward pass alone, per sample, as ratios.

    python benchmarks/bench_render.py                         # CPU: batch 2, iresnet50
    python benchmarks/bench_render.py --device cuda --batch 16

The mesh is a synthetic FLAME-sized head (5042 vertices, 10080 faces; FLAME: 5023, 9976) with
100 shape and 50 expression components and FLAME's five joints; coefficients are random, the
camera is DECA's ``[s, tx, ty]``. The metric has random weights (the cost does not depend on
them). Rows, interleaved round-robin, each the median over ``--steps`` timed steps after
``--warmup`` (CUDA synchronised):

* metric forward: ``ASCCLLoss`` on two ready images (key under ``no_grad``, query with a graph);
* render: FLAME + projection + shading + soft rasterisation of the generated and the source
  coefficients (the source under ``no_grad``), forward only;
* render + loss: both, forward only;
* loss fwd+bwd / render + loss fwd+bwd: the same with ``backward()`` to the images / to the
  coefficients, i.e. what a training step pays.

Printed: milliseconds per sample and each row over the metric's forward. The issue's target is
render / metric forward < 1 on a GPU.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from asccl.losses.asccl_loss import ASCCLLoss
from asccl.metric.model import ASCCLMetric
from asccl.spfem.face3d import MeshRenderer, orthographic_project, synthetic_flame
from asccl.spfem.face3d.synthetic import FLAME_SIZED_GRID


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch", type=int, help="default: 16 on CUDA, 2 on CPU")
    p.add_argument("--backbone", default="iresnet50")
    p.add_argument("--size", type=int, default=224, help="render size (the metric resizes)")
    p.add_argument("--mode", choices=["shaded", "normals"], default="shaded")
    p.add_argument("--steps", type=int, help="timed steps (default: 20 on CUDA, 5 on CPU)")
    p.add_argument("--warmup", type=int, help="untimed steps (default: 5 on CUDA, 1 on CPU)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    cuda = args.device.startswith("cuda")
    args.batch = args.batch or (16 if cuda else 2)
    args.steps = args.steps or (20 if cuda else 5)
    args.warmup = args.warmup if args.warmup is not None else (5 if cuda else 1)
    return args


def timed(
    rows: list[tuple[str, Callable[[], object]]], steps: int, warmup: int, device: torch.device
) -> dict[str, float]:
    """Median seconds of each row, rows interleaved round-robin (shared load hits all alike)."""
    times: dict[str, list[float]] = {name: [] for name, _ in rows}
    for i in range(warmup + steps):
        for name, fn in rows:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if i >= warmup:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    flame = synthetic_flame(
        *FLAME_SIZED_GRID, n_shape=100, n_exp=50, shape_total=100, exp_total=50, seed=args.seed
    ).to(device)
    renderer = MeshRenderer(args.size, mode=args.mode)
    metric = ASCCLMetric(backbone=args.backbone).eval().to(device)
    loss_fn = ASCCLLoss(metric=metric, input_range=(0.0, 1.0)).to(device)
    b = args.batch
    shape = 0.5 * torch.randn(b, 100, device=device)
    cam = torch.tensor([7.0, 0.0, 0.0], device=device).expand(b, 3)
    jaw = torch.zeros(b, 3, device=device)
    jaw[:, 0] = 0.1
    exp_real = torch.randn(b, 50, device=device)
    exp_fake = (exp_real + 0.3 * torch.randn(b, 50, device=device)).requires_grad_(True)
    g = torch.Generator().manual_seed(args.seed)

    def render(expression: torch.Tensor) -> torch.Tensor:
        vertices = flame(shape, expression, jaw_pose=jaw)
        return renderer(vertices, flame.faces, orthographic_project(vertices, cam)).image

    def render_pair() -> tuple[torch.Tensor, torch.Tensor]:
        generated = render(exp_fake)
        with torch.no_grad():
            source = render(exp_real)
        return generated, source

    with torch.no_grad():
        images = render_pair()
    ready = images[0].detach().clone().requires_grad_(True), images[1]

    def metric_forward() -> None:
        loss_fn(*ready, generator=g)

    def loss_step() -> None:
        loss_fn(*ready, generator=g).backward()

    def render_only() -> None:
        render_pair()

    def render_loss() -> None:
        loss_fn(*render_pair(), generator=g)

    def render_loss_step() -> None:
        loss_fn(*render_pair(), generator=g).backward()

    rows = [
        ("metric forward", metric_forward),
        ("render (2 images)", render_only),
        ("render + loss", render_loss),
        ("loss fwd+bwd", loss_step),
        ("render + loss fwd+bwd", render_loss_step),
    ]
    results = {name: t / b for name, t in timed(rows, args.steps, args.warmup, device).items()}
    threads = torch.get_num_threads()
    print(
        f"device={device} batch={b} backbone={args.backbone} size={args.size} mode={args.mode} "
        f"threads={threads} mesh={flame.v_template.shape[0]}v/{len(flame.faces)}f"
    )
    base = results["metric forward"]
    for name, seconds in results.items():
        print(f"{name:>24}: {seconds * 1e3:9.1f} ms/sample  {seconds / base:6.2f} x metric forward")


if __name__ == "__main__":
    main()
