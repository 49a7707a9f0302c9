"""``asccl metric evaluate``: a metric's health on held-out speakers, beside its baselines.

Two measurements on the DTW clip pairs of the held-out speakers (``val_speakers``, as
``asccl train-metric`` holds them out; read through
:class:`~asccl.training.dataset.PairedFrames`):

* **cosine gap**, per stage and on average: the mean cosine of the positive pairs
  ``(x_{i->j}, y_{i->j})`` minus that of the negatives, as the metric's training defines
  them (``"patch"``: the other pairs of the same image, ``"random"``: random regions),
  on each sampled neutral frame and its DTW partner (the middle one where DTW stretched
  time): what :meth:`ASCCLMetric.health` gives for that pair, on the run's fixed regions.
* **DTW-partner retrieval**: for each sampled neutral frame, every emotional frame of
  its clip pair (those with a face) is ranked by the metric's coherence score (minus its
  ASCCL loss, neutral frame as query: :mod:`asccl.metric.retrieval`); a hit is a frame
  within ``tolerance`` frames of its DTW partner in the top 1 / top 5 (tied losses count
  their expected hit rate under a random order of the tied frames, so a collapsed metric
  scores chance). Per stage: ranked by that stage's loss; ``average``: by their sum, the
  metric's loss.

Methods, in the same run, on the same frames and regions: the trained metric; the
untrained metric (the same architecture, heads at random init and the backbone ArcFace's
when ``arcface_weights`` is given, else random, both seeded with ``seed``: the table says
which); plain pixel L2 (mean squared difference of the crops, retrieval only); and chance
(the expected hit rate of a random ranking).

Outputs under ``out``: ``metric_health.{md,csv,tex}`` (the house table writers, rows =
stages), ``metric_health.png`` (bars per stage) and ``metric_health.json`` (every number,
the counts and the settings).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from asccl.data.clips import PAPER_EMOTIONS
from asccl.data.crop_store import ClipCropsReader, crop_path, open_clip_crops
from asccl.io import write_text_atomic
from asccl.metric import retrieval
from asccl.metric.config import MetricEvalConfig
from asccl.metric.model import ASCCLMetric

log = logging.getLogger(__name__)

STAGES = ("stage 1", "stage 2", "stage 3", "stage 4")
AVERAGE = "average"
TABLE_METRICS = ("gap", "top1", "top5")
#: the columns this table adds to the house table writers' registry: label, LaTeX, higher
HEALTH_METRICS = ("gap", "top1", "top5")  # columns: their labels in tables.METRICS


@dataclass(frozen=True)
class ClipPairFrames:
    """The frames of one clip pair that the evaluation reads.

    Attributes:
        queries: ``(Q,)`` neutral frame indices (evenly spaced along the DTW path).
        partners: per query, its emotional partner frames on the path (several where DTW
            stretched time).
        candidates: ``(E,)`` every emotional frame with a face.
    """

    emotion: str
    neutral_clip: str
    emotional_clip: str
    queries: np.ndarray
    partners: list[np.ndarray]
    candidates: np.ndarray


def select_pairs(config: MetricEvalConfig) -> list[ClipPairFrames]:
    """The held-out clip pairs and their frames (at most ``max_pairs``, evenly spread over
    the pairs sorted by emotion, speaker and clip; ``max_frames`` queries each)."""
    from asccl.data.pair_files import read_pairs_table
    from asccl.training.dataset import PairedFrames

    frames = PairedFrames(config.data, speakers=list(config.val_speakers),
                          emotions=config.emotions, crop_format=config.crop_format,
                          verify=False)  # fmt: skip
    emotion = {(p.neutral_clip, p.emotional_clip): p.emotion
               for p in read_pairs_table(config.data / "pairs.csv")}  # fmt: skip
    path: dict[tuple[str, str], list[tuple[int, int]]] = {}
    for i in range(len(frames)):  # only frame pairs whose two frames show a face
        neutral_clip, n, emotional_clip, e = frames.frame_pair(i)
        path.setdefault((neutral_clip, emotional_clip), []).append((n, e))
    order = {name: i for i, name in enumerate(PAPER_EMOTIONS)}
    keys = sorted(path, key=lambda k: (order.get(emotion[k], len(order)), emotion[k], k))
    if config.max_pairs and len(keys) > config.max_pairs:
        picks = np.unique(np.linspace(0, len(keys) - 1, config.max_pairs).round().astype(int))
        keys = [keys[i] for i in picks]
    selected = []
    for key in keys:
        steps = np.array(path[key])
        queries = np.unique(steps[:, 0])
        if config.max_frames and len(queries) > config.max_frames:
            picks = np.linspace(0, len(queries) - 1, config.max_frames).round().astype(int)
            queries = queries[np.unique(picks)]
        partners = [steps[steps[:, 0] == q, 1] for q in queries]
        store = open_clip_crops(crop_path(config.data, key[1], config.crop_format))
        candidates = np.flatnonzero(store.valid)
        selected.append(ClipPairFrames(emotion[key], *key, queries, partners, candidates))
    return selected


class _Readers(dict):
    """Crop store readers by clip id, opened on first use (a neutral clip serves several
    pairs)."""

    def __init__(self, data: Path, crop_format: str) -> None:
        super().__init__()
        self.data, self.crop_format = data, crop_format

    def __missing__(self, clip: str) -> ClipCropsReader:
        reader = self[clip] = open_clip_crops(crop_path(self.data, clip, self.crop_format))
        return reader

    def frames(self, clip: str, index: np.ndarray) -> torch.Tensor:
        """``(len(index), 3, S, S)`` uint8 RGB crops."""
        reader = self[clip]
        return torch.from_numpy(np.stack([reader.frame(int(i)) for i in index])).permute(0, 3, 1, 2)


def _untrained(trained: ASCCLMetric, config: MetricEvalConfig) -> tuple[ASCCLMetric, str]:
    """The baseline: the trained metric's architecture at init, seeded; its label."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        metric = ASCCLMetric(trained.config)
    if config.arcface_weights is not None:
        from asccl.metric.iresnet import check_arcface_weights

        metric.init_backbone_from_arcface(
            check_arcface_weights(config.arcface_weights, trained.config.backbone)
        )
        return metric, "untrained (ArcFace)"
    return metric, f"untrained (random init, seed {config.seed})"


def evaluate_metric(config: MetricEvalConfig) -> dict[str, Path]:
    """Run the evaluation; returns the paths it wrote (``table_md``, ``table_csv``,
    ``table_tex``, ``plot_png``, ``summary_json``)."""
    from asccl.metric.checkpoint import load_metric
    from asccl.training.dataset import to_model_input
    from asccl.training.distributed import require_device

    require_device(config.device)
    device = torch.device(
        ("cuda" if torch.cuda.is_available() else "cpu") if config.device == "auto"
        else config.device
    )  # fmt: skip
    if config.threads:
        torch.set_num_threads(config.threads)
    trained = load_metric(config.checkpoint)
    untrained, untrained_name = _untrained(trained, config)
    metrics = {"trained": trained, untrained_name: untrained}
    layout = torch.channels_last if config.channels_last else torch.contiguous_format
    for metric in metrics.values():
        metric.to(device, memory_format=layout).eval()
    pairs = select_pairs(config)
    cfg = trained.config
    regions = trained.sample_regions(
        1, generator=torch.Generator().manual_seed(config.seed), device=device
    )

    def prepare(uint8: torch.Tensor) -> torch.Tensor:
        flip = cfg.channel_order == "bgr"
        return to_model_input(uint8.to(device), size=cfg.image_size, flip_channels=flip,
                              channels_last=config.channels_last)  # fmt: skip

    def embed(metric: ASCCLMetric, images: torch.Tensor) -> list:
        chunks = [retrieval.embed_frames(metric, prepare(images[i : i + config.batch_size]),
                                         regions)
                  for i in range(0, len(images), config.batch_size)]  # fmt: skip
        return retrieval.cat_embeddings(chunks)

    readers = _Readers(config.data, config.crop_format)
    hits: dict[str, list[np.ndarray]] = {}  # method/row -> (Q, 2) per pair
    cosines = {name: np.zeros((2, 4)) for name in metrics}  # positive, negative per stage
    num_queries = 0
    for pair in tqdm(pairs, desc="metric health", unit="clip pair"):
        neutral = readers.frames(pair.neutral_clip, pair.queries)
        emotional = readers.frames(pair.emotional_clip, pair.candidates)
        position = {int(f): j for j, f in enumerate(pair.candidates)}
        partner = [position[int(p[len(p) // 2])] for p in pair.partners]  # the path's middle
        args = (pair.candidates, pair.partners, config.tolerance)
        with torch.no_grad():
            for name, metric in metrics.items():
                scores = retrieval.coherence_losses(
                    metric, embed(metric, neutral), embed(metric, emotional), partner
                )
                losses = scores.losses.cpu()  # (Q, E, 4)
                for s, row in enumerate(STAGES):
                    hits.setdefault(f"{name}/{row}", []).append(
                        retrieval.retrieval_hits(losses[..., s], *args))  # fmt: skip
                hits.setdefault(f"{name}/{AVERAGE}", []).append(
                    retrieval.retrieval_hits(losses.sum(-1), *args))  # fmt: skip
                cosines[name][0] += scores.positive_cosine.double().sum(0).cpu().numpy()
                cosines[name][1] += scores.negative_cosine.double().sum(0).cpu().numpy()
        distances = retrieval.pixel_distances(neutral, emotional)
        hits.setdefault(f"pixel L2/{AVERAGE}", []).append(
            retrieval.retrieval_hits(distances, *args)
        )
        chance = retrieval.chance_hits(*args)  # one random ranking serves every row
        for row in (*STAGES, AVERAGE):
            hits.setdefault(f"chance/{row}", []).append(chance)
        num_queries += len(pair.queries)

    scores: dict[str, dict[str, dict[str, float]]] = {}
    for key, values in hits.items():
        name, row = key.rsplit("/", 1)
        rate = np.concatenate(values).astype(np.float64).mean(0)
        scores.setdefault(name, {})[row] = {"top1": float(rate[0]), "top5": float(rate[1])}
    cosine_rows: dict[str, dict[str, dict[str, float]]] = {}
    for name, (pos, neg) in cosines.items():
        pos, neg = pos / num_queries, neg / num_queries
        for s, row in enumerate([*STAGES, AVERAGE]):
            p, n = (pos[s], neg[s]) if s < 4 else (pos.mean(), neg.mean())
            scores[name][row]["gap"] = float(p - n)
            cosine_rows.setdefault(name, {})[row] = {"positive": float(p), "negative": float(n)}
    scores = {name: scores[name] for name in [*metrics, "pixel L2", "chance"]}
    return _write_outputs(config, scores, cosine_rows, pairs, num_queries, untrained_name)


def _write_outputs(config, scores, cosine_rows, pairs, num_queries, untrained_name) -> dict:
    from asccl.evaluation import tables

    out = config.out
    out.mkdir(parents=True, exist_ok=True)
    stem = out / "metric_health"
    plural = "s" if len(pairs) != 1 else ""
    caption = (f"Metric health on held-out {', '.join(config.val_speakers)}: {len(pairs)} clip "
               f"pair{plural}, {num_queries} neutral frames; a retrieval hits within "
               f"{config.tolerance} frame(s) of the DTW partner")  # fmt: skip
    no_gap = "no contrastive embeddings, so no cosine gap"
    notes = {(m, row, "gap"): no_gap for m in ("pixel L2", "chance") for row in (*STAGES, AVERAGE)}
    for row in STAGES:
        for metric in ("top1", "top5"):
            notes["pixel L2", row, metric] = "no stages: ranked by the whole crop (Average row)"
    notes["chance", AVERAGE, "top1"] = (
        "the expected hit rate of a uniformly random ranking (every row the same)"
    )
    written = tables.write_tables(
        scores, TABLE_METRICS, stem, caption=caption, notes=notes, row_header="Stage"
    )
    paths = {f"table_{path.suffix[1:]}": path for path in written}
    paths["plot_png"] = tables.plot_scores(
        scores, TABLE_METRICS, stem.with_suffix(".png"), title=caption
    )
    summary = {
        "checkpoint": str(config.checkpoint),
        "untrained_baseline": untrained_name,
        "clip_pairs": len(pairs),
        "neutral_frames": num_queries,
        "candidates_per_pair": float(np.mean([len(p.candidates) for p in pairs])),
        "scores": scores,
        "cosines": cosine_rows,
        "pairs": [f"{p.neutral_clip} -> {p.emotional_clip} ({p.emotion})" for p in pairs],
        "config": json.loads(json.dumps(asdict(config), default=str)),
    }
    paths["summary_json"] = write_text_atomic(
        stem.with_suffix(".json"), json.dumps(summary, indent=2, allow_nan=True) + "\n"
    )
    return paths


__all__ = ["MetricEvalConfig", "evaluate_metric", "select_pairs"]
