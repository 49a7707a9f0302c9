"""Cost of one ASCCLLoss training step, against the backbone work no implementation avoids
and against the authors' arithmetic, on one batch, in one run.

    python benchmarks/bench_loss.py                    # CPU: batch 2, iresnet50, ~1 min
    python benchmarks/bench_loss.py --device cuda --batch 16 --amp bf16 --channels-last

Rows (one metric, same weights everywhere, eval mode, frozen; random weights unless
``--arcface PATH`` gives an insightface ``backbone.pth``):

* unavoidable: frozen backbone on the real image under ``no_grad``, plus forward of the
  generated image and backward to it (through all four stages);
* asccl: ``ASCCLLoss(metric=metric)(generated, source).backward()``;
* authors: their loss re-created (numpy region draw, index tensors built on the host,
  boolean-mask adaptive weights, ``CrossEntropyLoss`` PatchNCE, cosine logging on the host,
  ``loss.item()``), always float32 and contiguous, under PyTorch's default float32
  precision (the authors set none: cuDNN convolutions may use TF32, matmuls do not), as
  they ran it; ``--authors-fp32-ieee`` forces IEEE float32 for both instead.

``--amp`` and ``--channels-last`` apply to the first two rows only; ``--tf32`` likewise
(without it the first two rows run IEEE float32 convolutions and matmuls). The script
prints the precision every row ran under. Steps are interleaved round-robin and the median
is reported. ``--json PATH`` also writes the results.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F

from asccl.losses.asccl_loss import ASCCLLoss
from asccl.metric.model import ASCCLMetric

#: float32 precision (cuda matmul, cudnn conv) as PyTorch sets it, read before any row
#: changes it: the authors' row runs under these
DEFAULT_FP32 = (torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision)
OFFSETS = [[-1, -1], [-1, 0], [-1, 1], [0, -1], [0, 1], [1, -1], [1, 0], [1, 1]]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch", type=int, help="default: 16 on CUDA, 2 on CPU")
    p.add_argument("--backbone", default="iresnet50")
    p.add_argument("--steps", type=int, help="timed steps (default: 20 on CUDA, 5 on CPU)")
    p.add_argument("--warmup", type=int, help="untimed steps (default: 5 on CUDA, 1 on CPU)")
    p.add_argument("--amp", choices=["off", "bf16", "fp16"], default="off")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--tf32", action="store_true", help="allow TF32 for unavoidable and asccl")
    p.add_argument(
        "--authors-fp32-ieee",
        action="store_true",
        help="authors row in IEEE float32 (default: PyTorch's defaults, as the authors ran)",
    )
    p.add_argument("--arcface", metavar="PATH", help="insightface backbone.pth to load")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", metavar="PATH", help="also write the results here")
    args = p.parse_args()
    cuda = args.device.startswith("cuda")
    args.batch = args.batch or (16 if cuda else 2)
    args.steps = args.steps or (20 if cuda else 5)
    args.warmup = args.warmup if args.warmup is not None else (5 if cuda else 1)
    return args


def build_metric(args: argparse.Namespace) -> ASCCLMetric:
    """The metric, frozen, in eval mode. Without ``--arcface`` the convolutions are
    re-drawn with std ``1/sqrt(fan_in)``: the package's insightface init (std 0.1) drives
    iresnet50 activations to ~1e26, which overflows under fp16 autocast."""
    metric = ASCCLMetric(backbone=args.backbone)
    if args.arcface:
        metric.init_backbone_from_arcface(args.arcface)
    else:
        for module in metric.modules():
            if isinstance(module, torch.nn.Conv2d):
                torch.nn.init.normal_(module.weight, 0.0, module.weight[0].numel() ** -0.5)
    return metric.eval().requires_grad_(False)


def set_fp32(matmul: str, conv: str) -> None:
    """Float32 precision of CUDA matmuls and cuDNN convolutions (``"ieee"``, ``"tf32"``;
    ``"none"``: inherit PyTorch's global setting). Nothing to set without CUDA."""
    if torch.cuda.is_available():
        torch.backends.cuda.matmul.fp32_precision = matmul
        torch.backends.cudnn.conv.fp32_precision = conv


def set_tf32(enabled: bool) -> None:
    precision = "tf32" if enabled else "ieee"
    set_fp32(precision, precision)


def fp32_precision() -> str:
    """The float32 precision in force now, as a row reports it."""
    if not torch.cuda.is_available():
        return "n/a (no CUDA)"
    matmul, conv = (
        torch.backends.cuda.matmul.fp32_precision,
        torch.backends.cudnn.conv.fp32_precision,
    )
    return f"cuda.matmul {matmul}, cudnn.conv {conv}"


def authors_step(metric: ASCCLMetric, generated, real, nums=(32, 16, 8, 4), tau=0.07) -> float:
    """One generator step with the authors' loss arithmetic (query = generated, key = real).

    No ``no_grad`` on the real image, as in their code; with the metric's weights frozen
    (their renderer sets ``requires_grad = False``) autograd records nothing for it anyway.
    """
    device = generated.device
    query_feats = metric.backbone.forward_stages(generated)
    key_feats = metric.backbone.forward_stages(real)
    loss, pos, neg = 0.0, 0.0, 0.0
    for stage, (feat_q, feat_k) in enumerate(zip(query_feats, key_feats, strict=True)):
        h = feat_q.shape[2]
        side = int(h // 2 + 0.45 * h)
        border = (h - side) // 2
        grid = np.indices((side, side)).reshape(2, -1).T + border
        np.random.shuffle(grid)  # noqa: NPY002 (their global-RNG draw)
        chosen = torch.from_numpy(grid[: nums[stage]])
        nb = (chosen[:, None, :] + torch.tensor(OFFSETS)[None]).reshape(-1, 2).to(device)
        loc = chosen[:, None, :].repeat(1, 8, 1).reshape(-1, 2).to(device)
        head = metric.heads.heads[stage]

        def embed(feat, loc=loc, nb=nb, head=head):
            disparity = feat[:, :, loc[:, 0], loc[:, 1]] - feat[:, :, nb[:, 0], nb[:, 1]]
            f = head(disparity.permute(0, 2, 1)).permute(0, 2, 1)  # (B, D, S)
            return f / (f.pow(2).sum(1, keepdim=True).pow(0.5) + 1e-7), disparity

        flow_q, disparity = embed(feat_q)
        t = torch.sigmoid(disparity.abs())
        weight = torch.ones_like(t)
        weight[t > 0.8] = 2 * t[t > 0.8] ** 2  # boolean-mask indexing: a host sync
        flow_k, _ = embed(feat_k)

        # The authors' logging: host copies and syncs at every stage.
        shuffled = flow_k[..., torch.randperm(flow_k.shape[-1])].detach().cpu()
        pos += F.cosine_similarity(flow_q.detach().cpu(), flow_k.detach().cpu(), dim=-1).mean()
        neg += F.cosine_similarity(flow_q.detach().cpu(), shuffled, dim=-1).mean()

        # PatchNCE (CUT), with the key detached after the head.
        b, _, s = flow_q.shape
        fk = flow_k.detach()
        l_pos = (fk * flow_q).sum(dim=1)[:, :, None]
        l_neg = torch.bmm(flow_q.transpose(1, 2), fk)
        l_neg.masked_fill_(torch.eye(s, dtype=torch.bool)[None].to(device), -float("inf"))
        logits = torch.cat((l_pos, l_neg), dim=2) / tau
        targets = torch.zeros(b * s, dtype=torch.long).to(device)
        loss = loss + torch.mean(F.cross_entropy(logits.flatten(0, 1), targets) * weight)
    loss = loss * 0.3
    loss.backward()
    return loss.item()


def main() -> None:
    args = parse_args()
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)  # noqa: NPY002 (seeds the authors row)
    if cuda:
        torch.backends.cudnn.benchmark = True
    amp_dtype = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[args.amp]
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format

    # One metric; ASCCLLoss keeps its own (deep) copy, which rows (a) and (b) share and
    # which alone goes channels_last. Row (c) uses the original: same weights, fp32.
    metric = build_metric(args).to(device)
    loss_fn = ASCCLLoss(metric=metric).to(device=device, memory_format=fmt)
    backbone = loss_fn.metric.backbone

    real = torch.rand(args.batch, 3, 224, 224, device=device) * 2 - 1
    generated = (real + 0.2 * torch.randn_like(real)).clamp(-1, 1)
    real_ours = real.contiguous(memory_format=fmt)
    gen_ours = generated.contiguous(memory_format=fmt).requires_grad_(True)
    gen_authors = generated.clone().requires_grad_(True)

    def autocast():
        if amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=amp_dtype)

    def unavoidable() -> None:
        set_tf32(args.tf32)
        gen_ours.grad = None
        with autocast():
            with torch.no_grad():
                backbone.forward_stages(real_ours)
            total = sum(f.float().mean() for f in backbone.forward_stages(gen_ours))
        total.backward()

    def asccl() -> None:
        set_tf32(args.tf32)
        gen_ours.grad = None
        with autocast():
            loss = loss_fn(gen_ours, real_ours)
        loss.backward()

    authors_fp32 = ("ieee", "ieee") if args.authors_fp32_ieee else DEFAULT_FP32

    def authors() -> None:
        set_fp32(*authors_fp32)
        gen_authors.grad = None
        authors_step(metric, gen_authors, real)

    rows = {"unavoidable": unavoidable, "asccl": asccl, "authors": authors}
    times: dict[str, list[float]] = {name: [] for name in rows}
    precision: dict[str, str] = {}
    for step in range(args.warmup + args.steps):
        for name, fn in rows.items():  # round-robin: drift hits every row alike
            if cuda:
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            fn()
            if cuda:
                torch.cuda.synchronize(device)
            precision[name] = fp32_precision()  # as set by the row's own fn
            if step >= args.warmup:
                times[name].append(1e3 * (time.perf_counter() - start))

    median = {name: statistics.median(t) for name, t in times.items()}
    base = median["unavoidable"]
    print(f"device   : {torch.cuda.get_device_name(device) if cuda else 'cpu'} ({device})")
    print(f"torch    : {torch.__version__}, {torch.get_num_threads()} CPU threads")
    weights = args.arcface or "random (std 1/sqrt(fan_in))"
    print(f"batch    : {args.batch}x3x224x224, backbone {args.backbone}, weights {weights}")
    print(
        f"settings : amp={args.amp} channels_last={args.channels_last} tf32={args.tf32} "
        f"(authors row: fp32, contiguous, "
        f"{'IEEE float32 (--authors-fp32-ieee)' if args.authors_fp32_ieee else 'PyTorch defaults'}"
        f"); warmup {args.warmup}, median of {args.steps} steps"
    )
    for label, name in zip("abc", rows, strict=True):
        print(f"float32  : ({label}) {name:<12}{precision[name]}")
    print(f"\n{'row':<14}{'ms/step':>10}{'min':>10}{'max':>10}{'vs (a)':>9}")
    for label, name in zip("abc", rows, strict=True):
        t = times[name]
        print(
            f"({label}) {name:<10}{median[name]:>10.1f}{min(t):>10.1f}{max(t):>10.1f}"
            f"{median[name] / base:>8.2f}x"
        )
    print(f"\nasccl / unavoidable = {median['asccl'] / base:.2f}x (target <= 1.15x)")
    print(f"authors / unavoidable = {median['authors'] / base:.2f}x")
    print(f"asccl speed-up vs authors = {median['authors'] / median['asccl']:.2f}x")

    if args.json:
        result = {
            "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if cuda else "cpu",
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "settings": {k: v for k, v in vars(args).items() if k != "json"},
            "fp32_precision": precision,
            "median_ms": median,
            "all_ms": times,
            "asccl_over_unavoidable": median["asccl"] / base,
            "authors_over_unavoidable": median["authors"] / base,
            "asccl_speedup_vs_authors": median["authors"] / median["asccl"],
        }
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
        print(f"results written to {args.json}")


if __name__ == "__main__":
    main()
