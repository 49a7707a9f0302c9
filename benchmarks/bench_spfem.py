"""What the ASCCL term adds to one reference-generator training step, in one run.

    python benchmarks/bench_spfem.py                          # CPU: GANmut-style, small, ~1 min
    python benchmarks/bench_spfem.py --device cuda --model ganmut --size 128 --batch 16 \\
        --backbone iresnet50 --metric-size 224 --amp bf16       # the paper-scale GPU check

Rows (same generator weights, same batch, steps interleaved round-robin, median reported):

* baseline: ``--n-critic`` discriminator steps and one generator step of ``--model`` (what
  ``asccl spfem train`` runs per step with ``asccl_weight = 0``; GANmut trains with 5);
* +ASCCL: the same, with ``ASCCLSupervision`` (random-weight metric of ``--backbone`` at
  ``--metric-size``; the generator's 128 px output is resized to it) added to the generator
  loss before its backward.

Prints both medians and ``+ASCCL / baseline`` (target on a GPU: <= 1.20x). Optimiser steps
are left out of both rows (identical work).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import statistics
import time

import torch

from asccl.metric.model import ASCCLMetric
from asccl.spfem.data import emotion_label
from asccl.spfem.generators import GENERATORS, build_generator
from asccl.spfem.supervision import ASCCLSupervision


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--model", choices=sorted(GENERATORS), default="ganmut")
    p.add_argument("--size", type=int, help="generator image side (default: 128 CUDA, 64 CPU)")
    p.add_argument("--batch", type=int, help="default: 16 on CUDA, 4 on CPU")
    p.add_argument("--width", type=int, help="generator/discriminator base width "
                   "(default: the model's paper width on CUDA, 16 on CPU)")  # fmt: skip
    p.add_argument("--backbone", help="metric backbone (default: iresnet50 CUDA, iresnet18 CPU)")
    p.add_argument("--metric-size", type=int, help="metric input (default: 224 CUDA, 112 CPU)")
    p.add_argument("--amp", choices=["off", "bf16", "fp16"], default="off")
    p.add_argument("--n-critic", type=int, default=1, help="D steps per G step (GANmut: 5)")
    p.add_argument("--steps", type=int, help="timed steps per row (default: 20 CUDA, 5 CPU)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    cuda = args.device.startswith("cuda")
    args.size = args.size or (128 if cuda else 64)
    args.batch = args.batch or (16 if cuda else 4)
    args.backbone = args.backbone or ("iresnet50" if cuda else "iresnet18")
    args.metric_size = args.metric_size or (224 if cuda else 112)
    args.steps = args.steps or (20 if cuda else 5)
    return args


def model_config(args: argparse.Namespace):
    config = GENERATORS[args.model].Config(image_size=args.size)
    if args.width is None and args.device.startswith("cuda"):
        return config
    width = args.width or 16
    names = {"ganmut": ("g_channels", "d_channels"), "icface": ("conv_dim", "d_conv_dim")}
    return dataclasses.replace(config, **dict.fromkeys(names[args.model], width))


def make_batch(args: argparse.Namespace, device: torch.device) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(args.seed)
    b, s = args.batch, args.size
    source = torch.rand(b, 3, s, s, generator=g) * 2 - 1
    target = torch.rand(b, 3, s, s, generator=g) * 2 - 1
    landmarks = torch.rand(b, 68, 2, generator=g) * 0.6 + 0.2
    batch = {
        "image": source, "source": source, "target": target, "reference": target,
        "emotion": torch.full((b,), emotion_label("neutral")),
        "target_emotion": torch.randint(1, 7, (b,), generator=g),
        "source_landmarks": landmarks, "target_landmarks": landmarks.flip(1),
    }  # fmt: skip
    return {k: v.to(device) for k, v in batch.items()}


def main() -> None:
    args = parse_args()
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    model = build_generator(args.model, model_config(args)).to(device)
    metric = ASCCLMetric(backbone=args.backbone, image_size=args.metric_size)
    asccl = ASCCLSupervision(metric=metric, adapter=model.adapter, weight=1.0).to(device)
    batch = make_batch(args, device)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.amp)
    regions = torch.Generator().manual_seed(args.seed + 1)

    def autocast():
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=dtype)

    def step(with_asccl: bool) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(args.n_critic):
            model.zero_grad(set_to_none=True)
            with autocast():
                d_loss = sum(model.discriminator_losses(batch).values())
            d_loss.backward()
        with autocast():
            terms, outputs = model.generator_losses(batch)
            total = sum(terms.values())
            if with_asccl:
                extra, _ = asccl(batch, outputs, step=1, generator=regions)
                total = total + extra
        total.backward()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    for _ in range(args.warmup):
        step(False), step(True)
    times: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(args.steps):
        for with_asccl in (False, True):
            times[with_asccl].append(step(with_asccl))
    base, ours = statistics.median(times[False]), statistics.median(times[True])
    print(f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"model {args.model} {args.size}px batch {args.batch}, metric {args.backbone} at "
          f"{args.metric_size}px, amp {args.amp}, n_critic {args.n_critic}, "
          f"{args.steps} steps per row")  # fmt: skip
    print("| row | median ms | min ms | max ms |\n|---|---:|---:|---:|")
    for name, values in (("baseline", times[False]), ("+ASCCL", times[True])):
        print(f"| {name} | {1e3 * statistics.median(values):.1f} | {1e3 * min(values):.1f} | "
              f"{1e3 * max(values):.1f} |")  # fmt: skip
    print(f"+ASCCL / baseline: {ours / base:.2f}x (target on a GPU: <= 1.20x)")


if __name__ == "__main__":
    main()
