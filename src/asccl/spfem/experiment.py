"""``asccl experiment``: baseline vs +ASCCL for the reference generators, end to end.

For each model in ``models`` (``"ganmut"``, ``"icface"``):

1. **Train** twice with :func:`asccl.spfem.train.train_spfem` and the model's config file,
   same seed, same data and same step budget: ``baseline`` (``asccl_weight = 0``: the metric
   is never built) and ``asccl`` (``asccl_weight = asccl_weight`` with the frozen metric
   ``metric``). The test speakers are held out of training. Each run resumes from its
   newest checkpoint, so a killed experiment picks up where it stopped.
2. **Generate** the test set's results in the layout ``asccl evaluate`` reads
   (:mod:`asccl.evaluation.results`): for every DTW-paired (neutral, emotional) clip of a test
   speaker, the whole neutral clip is turned, frame by frame, into the emotional clip's
   emotion. Method folders are ``<model>`` and ``<model>_asccl``; settings are ``single`` for
   GANmut (no reference input) and, for ICface, ``inter_id`` (the reference is the same
   speaker's emotional clip of that sentence, frame ``j`` aligned by DTW to source frame
   ``i``) and ``cross_id`` (the same emotion and sentence spoken by another speaker, same
   frame indices, clipped to its length). Sources are the neutral crops resized to the
   model's size with the neutral clip's audio copied in (LSE-D/LSE-C use it); results are
   silent and frame-aligned with their source. A result that already exists is kept.
3. **Evaluate** the results folder with :func:`asccl.evaluation.runner.run_evaluation`
   (tables per setting in the seed's Tables 1-2 layout, bar plots, qualitative grids like
   its Figures 1-4), then write ``comparison.{md,csv}``: per model and setting the average of
   every metric for the baseline and +ASCCL, the difference and which is better, whatever
   the numbers say.

On the demo data (``configs/experiments/demo.toml``) the evaluation models have random
weights unless real ones are given, so the numbers show the plumbing, not the method.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from asccl.data.clip_index import read_clip_index
from asccl.data.clips import Clip
from asccl.data.crop_store import ClipCropsReader, open_clip_crops
from asccl.data.errors import DataError
from asccl.data.pair_files import read_pairs_table
from asccl.data.prepare import STORE_SUFFIX, crop_path
from asccl.data.video import write_video
from asccl.evaluation.results import REFERENCES, SOURCES
from asccl.evaluation.tables import AVERAGE, METRICS, write_text_atomic
from asccl.spfem.data import ClipPairFrames, clip_tensors, emotion_label

MODELS = ("ganmut", "icface")
#: settings each reference generator is evaluated in
MODEL_SETTINGS = {"ganmut": ("single",), "icface": ("inter_id", "cross_id")}
VARIANTS = ("baseline", "asccl")


@dataclass
class ExperimentConfig:
    """Settings of ``asccl experiment`` (see ``configs/experiments/demo.toml``)."""

    data: Path = Path("runs/demo/data")  #: stage-1 output (clips.csv, pairs.csv, crops/)
    metric: Path | None = None  #: the frozen ASCCL metric (.safetensors) for the +ASCCL runs
    out: Path = Path("runs/demo/experiment")  #: train/, results/, eval/, comparison.*
    models: tuple[str, ...] = MODELS
    ganmut_config: Path = Path("configs/spfem/ganmut_demo.toml")
    icface_config: Path = Path("configs/spfem/icface_demo.toml")
    #: --key value overrides applied to both variants of every model (e.g. "--steps", "50")
    train_overrides: tuple[str, ...] = ()
    asccl_weight: float = 1.0
    seed: int = 0
    test_speakers: tuple[str, ...] = ("W903",)  #: held out of training, used for results
    cross_speakers: tuple[str, ...] = ()  #: cross-ID references from these; () = any other
    max_clips_per_emotion: int = 0  #: test clips per emotion; 0 = all
    batch_size: int = 16  #: frames per generator call when generating
    device: str = "cpu"
    eval_config: Path | None = Path("configs/eval/demo.toml")  #: None: no evaluation
    #: --key value overrides of the evaluation config (weights paths, device, ...)
    eval_overrides: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        unknown = [m for m in self.models if m not in MODELS]
        if unknown:
            raise ValueError(f"models: unknown {unknown}; valid: {list(MODELS)}")
        if self.asccl_weight <= 0:
            raise ValueError(f"asccl_weight must be > 0 (the baseline is weight 0), got "
                             f"{self.asccl_weight}")  # fmt: skip
        if not self.test_speakers:
            raise ValueError("test_speakers must name at least one held-out speaker")

    def model_config(self, model: str) -> Path:
        return {"ganmut": self.ganmut_config, "icface": self.icface_config}[model]


def method_name(model: str, variant: str) -> str:
    """Results folder name: ``ganmut`` (baseline) or ``ganmut_asccl``."""
    return model if variant == "baseline" else f"{model}_{variant}"


# ----------------------------------------------------------------------------- 1. training


def train_variants(config: ExperimentConfig, model: str) -> dict[str, Path]:
    """Train (or resume) ``model``'s baseline and +ASCCL runs; ``{variant: checkpoint}``."""
    from asccl.config import load_config
    from asccl.spfem.train import SPFEMTrainConfig, train_spfem

    if config.metric is None:
        raise DataError(Path("<config>"), "metric is not set: the +ASCCL runs need a trained "
                        "ASCCL metric (.safetensors from `asccl train-metric`)")  # fmt: skip
    checkpoints = {}
    for variant in VARIANTS:
        weight = 0.0 if variant == "baseline" else config.asccl_weight
        overrides = [
            *config.train_overrides,
            "--model", model,
            "--data", str(config.data),
            "--out", str(config.out / "train" / method_name(model, variant)),
            "--seed", str(config.seed),
            "--exclude-speakers", json.dumps(list(config.test_speakers)),
            "--asccl-weight", str(weight),
            "--asccl-checkpoint", str(config.metric),
        ]  # fmt: skip
        train = load_config(SPFEMTrainConfig, config.model_config(model), overrides)
        print(f"\ntraining {method_name(model, variant)} ({config.model_config(model)}, "
              f"ASCCL weight {weight:g}) -> {train.out}")  # fmt: skip
        checkpoints[variant] = train_spfem(train)
    return checkpoints


# --------------------------------------------------------------------------- 2. generation


@dataclass(frozen=True)
class TestClip:
    """One DTW-paired (neutral, emotional) clip pair, with both clips' index entries."""

    pair: ClipPairFrames
    neutral: Clip
    emotional: Clip

    @property
    def name(self) -> str:
        """Results clip name: ``<speaker>_<sentence>``."""
        return f"{self.neutral.speaker}_{self.neutral.sentence}"


def test_clips(config: ExperimentConfig) -> tuple[list[TestClip], list[TestClip]]:
    """``(test, others)``: the test speakers' clip pairs, and every other speaker's (cross-ID
    references), from the stage-1 tables ``pairs.csv`` and ``clips.csv``."""
    for name in ("pairs.csv", "clips.csv"):
        if not (config.data / name).is_file():
            raise DataError(config.data / name, "missing: run `asccl data prepare` first")
    clips = {c.clip_id: c for c in read_clip_index(config.data / "clips.csv")}
    pairs = read_pairs_table(config.data / "pairs.csv")
    speakers = {p.speaker for p in pairs}
    absent = [s for s in config.test_speakers if s not in speakers]
    if absent:
        found = sorted(speakers)
        raise DataError(config.data / "pairs.csv",
                        f"test speaker(s) {absent} have no pairs; found {found}")  # fmt: skip
    test, others = [], []
    per_emotion: dict[str, int] = {}
    for pair in pairs:
        frames = ClipPairFrames(
            pair.speaker, pair.emotion, pair.neutral_clip, pair.emotional_clip,
            pair.neutral_frames, pair.emotional_frames,
        )
        item = TestClip(frames, clips[pair.neutral_clip], clips[pair.emotional_clip])
        if pair.speaker not in config.test_speakers:
            if not config.cross_speakers or pair.speaker in config.cross_speakers:
                others.append(item)
            continue
        count = per_emotion.get(pair.emotion, 0)
        if config.max_clips_per_emotion and count >= config.max_clips_per_emotion:
            continue
        per_emotion[pair.emotion] = count + 1
        test.append(item)
    return test, others


def _store(config: ExperimentConfig, clip_id: str) -> ClipCropsReader:
    for fmt in STORE_SUFFIX:
        path = crop_path(config.data, clip_id, fmt)
        if path.exists():
            return open_clip_crops(path)
    raise DataError(crop_path(config.data, clip_id, "jpeg"), "no crop store for this clip")


def _to_uint8(images: Tensor) -> np.ndarray:
    """``(N, 3, H, W)`` in [-1, 1] -> ``(N, H, W, 3)`` uint8."""
    images = ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return images.permute(0, 2, 3, 1).cpu().numpy()


def _write_clip(path: Path, frames: np.ndarray, fps: float, audio: Path | None = None) -> None:
    """Write atomically; an existing file is kept (a resumed experiment skips it)."""
    if path.is_file():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    write_video(tmp, frames, fps=fps, audio_from=audio)
    os.replace(tmp, path)


@torch.no_grad()
def _translate(
    generator: torch.nn.Module,
    source: tuple[Tensor, Tensor],
    reference: tuple[Tensor, Tensor],
    emotion: str,
    config: ExperimentConfig,
) -> Tensor:
    """Every source frame turned to ``emotion`` (reference frame ``i`` drives frame ``i``)."""
    frames, landmarks = source
    ref_frames, ref_landmarks = reference
    out = []
    device = torch.device(config.device)
    for start in range(0, len(frames), config.batch_size):
        part = slice(start, start + config.batch_size)
        n = len(frames[part])
        src = frames[part].to(device)
        ref = ref_frames[part].to(device)
        batch = {
            "image": src, "source": src, "target": ref, "reference": ref,
            "source_landmarks": landmarks[part].to(device),
            "target_landmarks": ref_landmarks[part].to(device),
            "emotion": torch.full((n,), emotion_label("neutral"), device=device),
            "target_emotion": torch.full((n,), emotion_label(emotion), device=device),
        }  # fmt: skip
        out.append(generator.translate(batch).cpu())
    return torch.cat(out)


def generate_results(
    config: ExperimentConfig, model: str, checkpoints: dict[str, Path]
) -> Path:
    """Write ``model``'s results for every test clip, both variants; returns the root."""
    from asccl.spfem.train import load_generator

    root = config.out / "results"
    test, others = test_clips(config)
    generators = {
        v: load_generator(path).to(config.device).eval() for v, path in checkpoints.items()
    }
    size = next(iter(generators.values())).config.image_size
    for variant, path in checkpoints.items():
        _drop_stale(root / method_name(model, variant), path)
    for clip in tqdm(test, desc=f"generating {model} results", unit="clip"):
        neutral = _store(config, clip.pair.neutral_clip)
        source = clip_tensors(neutral, size)
        fps = neutral.fps
        emotion, name = clip.pair.emotion, f"{clip.name}.mp4"
        _write_clip(root / SOURCES / emotion / name, _to_uint8(source[0]), fps,
                    clip.neutral.audio or clip.neutral.video)  # fmt: skip
        for setting in MODEL_SETTINGS[model]:
            reference = _reference(config, clip, others, setting, len(source[0]), size)
            if reference is None:
                continue
            if setting != "single":
                _write_clip(root / REFERENCES / setting / emotion / name,
                            _to_uint8(reference[0]), fps)  # fmt: skip
            for variant, generator in generators.items():
                path = root / method_name(model, variant) / setting / emotion / name
                if not path.is_file():
                    result = _translate(generator, source, reference, emotion, config)
                    _write_clip(path, _to_uint8(result), fps)
    return root


def _drop_stale(method_dir: Path, checkpoint: Path) -> None:
    """Results are kept across runs only while they come from the same weights: a SHA-256
    of the checkpoint's tensors and metadata (not of its bytes: safetensors does not fix
    the order of its header, and a finished run that is run again rewrites the file)."""
    from safetensors import safe_open

    digest = hashlib.sha256()
    with safe_open(str(checkpoint), framework="pt") as handle:
        digest.update(json.dumps(handle.metadata(), sort_keys=True).encode())
        for key in sorted(handle.keys()):
            digest.update(key.encode())
            digest.update(handle.get_tensor(key).numpy().tobytes())
    stamp = f"{digest.hexdigest()} {Path(checkpoint).resolve()}\n"
    stamp_file = method_dir / ".checkpoint"
    if stamp_file.is_file() and stamp_file.read_text() == stamp:
        return
    if method_dir.exists():
        shutil.rmtree(method_dir)
    method_dir.mkdir(parents=True)
    write_text_atomic(stamp_file, stamp)


def _reference(
    config: ExperimentConfig,
    clip: TestClip,
    others: Sequence[TestClip],
    setting: str,
    num_frames: int,
    size: int,
) -> tuple[Tensor, Tensor] | None:
    """Per source frame, the reference frame (and landmarks) that drives it."""
    index = clip.pair.reference_index(num_frames)
    if setting in ("single", "inter_id"):
        driver = clip  # GANmut reads only the label; ICface inter-ID: the same speaker
    else:
        same = [o for o in others if o.pair.emotion == clip.pair.emotion]
        same.sort(key=lambda o: (o.emotional.sentence != clip.emotional.sentence, o.name))
        if not same:
            print(f"  {clip.name} {clip.pair.emotion}: no other speaker for a cross-ID "
                  "reference; skipped")  # fmt: skip
            return None
        driver = same[0]
    frames, landmarks = clip_tensors(_store(config, driver.pair.emotional_clip), size)
    index = np.minimum(index, len(frames) - 1)
    return frames[index], landmarks[index]


# --------------------------------------------------------------------------- 3. evaluation


def evaluate_results(config: ExperimentConfig, results: Path) -> dict[str, Path]:
    """``asccl evaluate`` on the results folder (all models' methods, table order)."""
    from asccl.config import load_config
    from asccl.evaluation.runner import EvalConfig, run_evaluation

    methods = [method_name(m, v) for m in config.models for v in VARIANTS]
    overrides = ["--results", str(results), "--out", str(config.out / "eval"),
                 "--methods", json.dumps(methods), *config.eval_overrides]  # fmt: skip
    evaluation = load_config(EvalConfig, config.eval_config, overrides)
    return run_evaluation(evaluation)


def compare(config: ExperimentConfig, scores_csv: Path) -> dict[str, Path]:
    """``comparison.{md,csv}``: per model, setting and metric, the average over emotions of
    the baseline and of +ASCCL, the difference (+ASCCL - baseline) and the better one."""
    with open(scores_csv, newline="") as handle:
        rows = list(csv.DictReader(handle))
    value = {(r["setting"], r["method"], r["emotion"], r["metric"]): float(r["value"])
             for r in rows}  # fmt: skip
    metrics = [m for m in METRICS if any(r["metric"] == m for r in rows)]
    table = []
    for model in config.models:
        base, ours = method_name(model, "baseline"), method_name(model, "asccl")
        for setting in MODEL_SETTINGS[model]:
            for metric in metrics:
                a = value.get((setting, base, AVERAGE, metric), math.nan)
                b = value.get((setting, ours, AVERAGE, metric), math.nan)
                if math.isnan(a) and math.isnan(b):
                    continue
                higher = METRICS[metric][2]
                if math.isnan(a) or math.isnan(b):
                    better = "-"
                elif f"{a:.3f}" == f"{b:.3f}":
                    better = "tie"  # equal to the table's precision
                else:
                    better = "+ASCCL" if (b > a) == higher else "baseline"
                table.append((model, setting, METRICS[metric][0], a, b, b - a, better))
    header = ("model", "setting", "metric", "baseline", "+ASCCL", "difference", "better")
    out = config.out
    csv_path = out / "comparison.csv"
    buffer = [",".join(header)]
    buffer += [",".join([m, s, k, f"{a:.4f}", f"{b:.4f}", f"{d:+.4f}", w])
               for m, s, k, a, b, d, w in table]  # fmt: skip
    write_text_atomic(csv_path, "\n".join(buffer) + "\n")
    md = [
        "# Baseline vs +ASCCL (average over emotions)\n",
        f"Test speakers: {', '.join(config.test_speakers)}; ASCCL weight "
        f"{config.asccl_weight:g}; seed {config.seed}; same data and step budget for both.\n",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    md += [f"| {m} | {s} | {k} | {a:.3f} | {b:.3f} | {d:+.3f} | {w} |"
           for m, s, k, a, b, d, w in table]  # fmt: skip
    md_path = write_text_atomic(out / "comparison.md", "\n".join(md) + "\n")
    return {"comparison_md": md_path, "comparison_csv": csv_path}


def run_experiment(config: ExperimentConfig) -> dict[str, Path]:
    """Train, generate, evaluate, compare; returns ``{name: path}`` of what it wrote."""
    from asccl.config import save_config

    test, _ = test_clips(config)  # a bad data folder or test speaker fails before training
    if not test:
        raise DataError(config.data / "pairs.csv", "no clip pairs of the test speakers")
    config.out.mkdir(parents=True, exist_ok=True)
    paths = {"config": save_config(config, config.out / "config.json")}
    results = config.out / "results"
    for model in config.models:
        checkpoints = train_variants(config, model)
        for variant, path in checkpoints.items():
            paths[f"checkpoint_{method_name(model, variant)}"] = path
            log = config.out / "train" / method_name(model, variant) / "curves.png"
            if log.is_file():
                paths[f"curves_{method_name(model, variant)}"] = log
        results = generate_results(config, model, checkpoints)
    paths["results"] = results
    if config.eval_config is None:
        return paths
    evaluation = evaluate_results(config, results)
    paths |= {f"eval_{k}": v for k, v in evaluation.items()}
    paths |= compare(config, evaluation["scores"])
    return paths

