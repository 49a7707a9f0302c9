"""``asccl experiment``: baseline vs +ASCCL for the reference generators, end to end.

For each model in ``models`` (``"ganmut"``, ``"icface"``):

1. **Train** twice with :func:`asccl.spfem.train.train_spfem` and the model's training
   config (``ExperimentConfig.ganmut`` / ``.icface``), same seed, same data and same step
   budget: ``baseline`` (``asccl_weight = 0``: the metric
   is never built) and ``asccl`` (``asccl_weight = asccl_weight`` with the frozen metric
   ``metric``). The test speakers are held out of training. Each run resumes from its
   newest checkpoint, so a killed experiment picks up where it stopped; a run whose
   checkpoints were made with other settings (another seed, learning rate, metric...) is
   refused in one line naming them, before anything is written (``--resume false``
   retrains from scratch).
2. **Generate** the test set's results in the layout ``asccl evaluate`` reads
   (:mod:`asccl.evaluation.results`): for every DTW-paired (neutral, emotional) clip of a test
   speaker, the whole neutral clip is turned, frame by frame, into the emotional clip's
   emotion. Method folders are ``<model>`` and ``<model>_asccl``; settings are ``single`` for
   GANmut (no reference input) and, for ICface, ``inter_id`` (the reference is the same
   speaker's emotional clip of that sentence, frame ``j`` aligned by DTW to source frame
   ``i``) and ``cross_id`` (the same emotion and sentence spoken by another speaker, same
   frame indices, clipped to its length). Sources are the neutral crops resized to the
   model's size with the neutral clip's audio copied in (LSE-D/LSE-C use it); results are
   silent and frame-aligned with their source. A result that already exists is kept only
   while it was made by the same weights (per method) and the same data, clip selection and
   image sizes (``results/.settings.json``); otherwise it is made again, and the run says how
   many.
3. **Evaluate** the results folder with :func:`asccl.evaluation.runner.run_evaluation` and
   ``ExperimentConfig.eval`` (tables per setting in the seed's Tables 1-2 layout, bar
   plots, qualitative grids like its Figures 1-4), then write ``comparison.{md,csv}``: per
   model and setting the average of every metric for the baseline and +ASCCL, the
   difference and which is better, whatever the numbers say.

On the demo data (``configs/experiments/demo.toml``) the evaluation models have random
weights unless real ones are given, so the numbers show the plumbing, not the method.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from asccl.config import (
    ConfigError,
    is_device,
    is_int,
    is_number,
    names_field,
    path_field,
    require,
)
from asccl.data.clip_index import read_clip_index
from asccl.data.clips import Clip
from asccl.data.crop_store import STORE_SUFFIX, ClipCropsReader, crop_path, open_clip_crops
from asccl.data.errors import DataError
from asccl.data.pair_files import read_pairs_table
from asccl.data.video import write_video
from asccl.evaluation.results import REFERENCES, SOURCES
from asccl.evaluation.runner import EvalConfig
from asccl.evaluation.tables import AVERAGE, METRICS
from asccl.io import write_text_atomic
from asccl.spfem.config import SPFEMTrainConfig
from asccl.spfem.data import EMOTIONS, ClipPairFrames, clip_tensors, emotion_label

MODELS = ("ganmut", "icface")
#: settings each reference generator is evaluated in
MODEL_SETTINGS = {"ganmut": ("single",), "icface": ("inter_id", "cross_id")}
VARIANTS = ("baseline", "asccl")


@dataclass(frozen=True)
class ExperimentConfig:
    """Settings of ``asccl experiment`` (see ``configs/experiments/demo.toml``).

    ``ganmut`` and ``icface`` are the models' training configs (``[ganmut]`` tables, or a
    file: ``ganmut = "configs/spfem/ganmut_demo.toml"``), ``eval`` the evaluation's. The
    experiment sets in each run's copy what makes its two variants one experiment: ``data``,
    ``seed``, ``resume``, ``exclude_speakers`` (the test speakers), ``out``
    (``<out>/train/<method>``), ``asccl_weight`` (0 for the baseline) and
    ``asccl_checkpoint`` (``metric``); in ``eval``: ``results``, ``out`` (``<out>/eval``)
    and ``methods``. Those keys of the nested configs are not used.
    """

    data: Path = Path("runs/demo/data")  #: stage-1 output (clips.csv, pairs.csv, crops/)
    metric: Path | None = None  #: the frozen ASCCL metric (.safetensors) for the +ASCCL runs
    out: Path = Path("runs/demo/experiment")  #: train/, results/, eval/, comparison.*
    models: tuple[str, ...] = MODELS
    #: training of the GANmut-style runs (its ``model`` must be "ganmut")
    ganmut: SPFEMTrainConfig = field(default_factory=lambda: SPFEMTrainConfig(model="ganmut"))
    #: training of the ICface-style runs (its ``model`` must be "icface")
    icface: SPFEMTrainConfig = field(default_factory=lambda: SPFEMTrainConfig(model="icface"))
    asccl_weight: float = 1.0
    seed: int = 0
    test_speakers: tuple[str, ...] = ("W903",)  #: held out of training, used for results
    cross_speakers: tuple[str, ...] = ()  #: cross-ID references from these; () = any other
    max_clips_per_emotion: int = 0  #: test clips per emotion; 0 = all
    generation_batch_size: int = 16  #: frames per generator call when writing results
    device: str = "cpu"  #: where results are generated (training: each model's ``device``)
    evaluate: bool = True  #: false: train and write the results only
    eval: EvalConfig = field(default_factory=EvalConfig)  #: how the results are evaluated
    #: false: train every run from scratch (the earlier runs' checkpoints are removed)
    resume: bool = True

    def __post_init__(self) -> None:
        """One :class:`~asccl.config.ConfigError` per nonsense value, naming its key."""
        for name in ("models", "test_speakers", "cross_speakers"):
            names_field(self, name)
        for name in ("data", "out"):
            path_field(self, name)
        path_field(self, "metric", optional=True)
        unknown = [m for m in self.models if m not in MODELS]
        if unknown:
            raise ConfigError(f"models: unknown {unknown}; valid: {list(MODELS)}")
        require(0 < len(self.models) == len(set(self.models)), self, "models",
                f"must name one or more of {list(MODELS)}, each once")  # fmt: skip
        for model in MODELS:
            train = getattr(self, model)
            require(isinstance(train, SPFEMTrainConfig), self, model,
                    "must be a training config (a table or a config file name)")  # fmt: skip
            if train.model != model:
                raise ConfigError(f'{model}.model must be "{model}" (the table is the {model} '
                                  f"runs' training config), got {train.model!r}")  # fmt: skip
        require(isinstance(self.eval, EvalConfig), self, "eval",
                "must be an evaluation config (a table or a config file name)")  # fmt: skip
        require(is_number(self.asccl_weight) and self.asccl_weight > 0, self, "asccl_weight",
                "must be a finite number > 0 (the baseline is weight 0)")  # fmt: skip
        require(len(self.test_speakers) > 0, self, "test_speakers",
                "must name at least one held-out speaker")  # fmt: skip
        require(is_int(self.seed, 0, 2**63 - 3), self, "seed", "must be in [0, 2**63 - 2)")
        require(is_int(self.max_clips_per_emotion, 0), self, "max_clips_per_emotion",
                "must be an integer >= 0 (0: all)")  # fmt: skip
        require(is_int(self.generation_batch_size, 1), self, "generation_batch_size",
                "must be an integer >= 1")  # fmt: skip
        require(is_device(self.device), self, "device",
                'must be "cpu", "mps", "cuda" or "cuda:N"')  # fmt: skip
        for name in ("evaluate", "resume"):
            require(isinstance(getattr(self, name), bool), self, name, "must be true or false")


def method_name(model: str, variant: str) -> str:
    """Results folder name: ``ganmut`` (baseline) or ``ganmut_asccl``."""
    return model if variant == "baseline" else f"{model}_{variant}"


# ----------------------------------------------------------------------------- 1. training


def train_configs(config: ExperimentConfig, model: str) -> dict[str, SPFEMTrainConfig]:
    """``{variant: SPFEMTrainConfig}`` of ``model``'s baseline and +ASCCL runs: its training
    config with the experiment's data, seed, held-out speakers, output folders and ASCCL
    settings (a bad combination is a ConfigError naming the model and key)."""
    if config.metric is None:
        raise ConfigError("metric is not set: the +ASCCL runs need a trained ASCCL metric "
                          "(.safetensors from `asccl train-metric`)")  # fmt: skip
    configs = {}
    for variant in VARIANTS:
        try:
            configs[variant] = replace(
                getattr(config, model),
                data=config.data,
                out=config.out / "train" / method_name(model, variant),
                seed=config.seed,
                exclude_speakers=config.test_speakers,
                asccl_weight=0.0 if variant == "baseline" else config.asccl_weight,
                asccl_checkpoint=config.metric,
                resume=config.resume,
            )
        except ConfigError as exc:
            raise ConfigError(f"{model}: {exc}") from None
    return configs


def train_variants(config: ExperimentConfig, model: str) -> dict[str, Path]:
    """Train (or resume) ``model``'s baseline and +ASCCL runs; ``{variant: checkpoint}``.
    A run whose checkpoints were made with other settings is refused (one line naming the
    keys), not resumed: rerun with ``--resume false`` or another ``--out``."""
    from asccl.spfem.train import train_spfem

    checkpoints = {}
    for variant, train in train_configs(config, model).items():
        print(f"\ntraining {method_name(model, variant)} (ASCCL weight "
              f"{train.asccl_weight:g}) -> {train.out}")  # fmt: skip
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
    unlabelled = sorted({p.emotion for p in pairs} - set(EMOTIONS))
    if unlabelled:
        raise DataError(config.data / "pairs.csv", f"emotion(s) {unlabelled} have no "
                        f"generator label; valid: {', '.join(EMOTIONS)}")  # fmt: skip
    missing = sorted({c for p in pairs for c in (p.neutral_clip, p.emotional_clip)} - set(clips))
    if missing:
        raise DataError(config.data / "clips.csv", f"{len(missing)} clip(s) of pairs.csv "
                        f"missing, e.g. {missing[0]}: run `asccl data prepare` again")  # fmt: skip
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
    write_video(path, frames, fps=fps, audio_from=audio)


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
    for start in range(0, len(frames), config.generation_batch_size):
        part = slice(start, start + config.generation_batch_size)
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
    """Write ``model``'s results for every test clip, both variants; returns the root.
    Results already there are kept only while they come from the same weights (see
    :func:`_drop_stale`); call :func:`check_results_settings` first."""
    from asccl.spfem.generators.checkpoint import load_generator

    root = config.out / "results"
    test, others = test_clips(config)
    generators = {
        v: load_generator(path).to(config.device).eval() for v, path in checkpoints.items()
    }
    size = next(iter(generators.values())).config.image_size
    for variant, path in checkpoints.items():
        _drop_stale(root / method_name(model, variant), path)
    written = kept = 0
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
                if path.is_file():
                    kept += 1
                    continue
                result = _translate(generator, source, reference, emotion, config)
                _write_clip(path, _to_uint8(result), fps)
                written += 1
    print(f"{model} results: {written} written, {kept} kept (same weights and settings)")
    return root


def results_settings(config: ExperimentConfig, sizes: dict[str, int]) -> dict[str, str]:
    """What the results folder's sources, references and clip selection depend on, beyond
    each method's weights: the data (its path, ``pairs.csv`` and ``clips.csv`` digests, the
    crop stores' sizes and mtimes), the test/cross speakers, ``max_clips_per_emotion`` and
    each model's image size (sources are written at it)."""
    from asccl.training.resume import file_digest

    data = Path(config.data)
    crops = hashlib.sha256()
    for path in sorted((data / "crops").rglob("*")) if (data / "crops").is_dir() else []:
        if path.is_file():
            st = path.stat()
            crops.update(f"{path.relative_to(data)} {st.st_size} {st.st_mtime_ns}\n".encode())
    return {
        "data": str(data.resolve()),
        "data_pairs_csv": file_digest(data / "pairs.csv"),
        "data_clips_csv": file_digest(data / "clips.csv"),
        "data_crops": crops.hexdigest()[:16],
        "test_speakers": json.dumps(list(config.test_speakers)),
        "cross_speakers": json.dumps(list(config.cross_speakers)),
        "max_clips_per_emotion": str(config.max_clips_per_emotion),
        "image_sizes": json.dumps(sizes, sort_keys=True),
    }


SETTINGS_FILE = ".settings.json"


def check_results_settings(config: ExperimentConfig, settings: dict[str, str]) -> None:
    """Keep ``results/`` only if it was made with ``settings``; otherwise remove it (saying
    which settings changed and how many files go) so that every clip is made again."""
    from asccl.training.resume import settings_differences

    root = config.out / "results"
    stamp = root / SETTINGS_FILE
    try:
        saved = json.loads(stamp.read_text())
    except (OSError, ValueError):
        saved = None
    if saved == settings:
        return
    files = [p for p in root.rglob("*") if p.is_file()] if root.is_dir() else []
    if files:
        changed = settings_differences(saved, settings) if isinstance(saved, dict) else [
            f"{SETTINGS_FILE} missing or unreadable"]  # fmt: skip
        print(f"results: made with other settings ({'; '.join(changed)}): removing its "
              f"{len(files)} files, every result is made again")  # fmt: skip
        shutil.rmtree(root)
    write_text_atomic(stamp, json.dumps(settings, indent=1, sort_keys=True) + "\n")


def _drop_stale(method_dir: Path, checkpoint: Path) -> None:
    """Results are kept across runs only while they come from the same weights: a digest
    of the checkpoint's tensors and metadata (:func:`asccl.training.resume.weights_digest`)."""
    from asccl.training.resume import weights_digest

    stamp = f"{weights_digest(checkpoint)} {Path(checkpoint).resolve()}\n"
    stamp_file = method_dir / ".checkpoint"
    if stamp_file.is_file() and stamp_file.read_text() == stamp:
        return
    if method_dir.exists():
        old = sum(1 for p in method_dir.rglob("*.mp4"))
        if old:
            print(f"{method_dir.name}: its weights changed, {old} result clips made again")
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


def eval_config(config: ExperimentConfig, results: Path) -> EvalConfig:
    """The :class:`~asccl.evaluation.runner.EvalConfig` of ``results``: ``eval`` with the
    results folder, ``<out>/eval`` and all models' methods in table order."""
    methods = tuple(method_name(m, v) for m in config.models for v in VARIANTS)
    return replace(config.eval, results=results, out=config.out / "eval", methods=methods)


def evaluate_results(config: ExperimentConfig, results: Path) -> dict[str, Path]:
    """``asccl evaluate`` on the results folder (all models' methods, table order)."""
    from asccl.evaluation.runner import run_evaluation

    return run_evaluation(eval_config(config, results))


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
    """Train, generate, evaluate, compare; returns ``{name: path}`` of what it wrote.

    Every setting (each run's training config, the evaluation config) is checked before
    anything is written; a rerun with other settings redoes what
    they change (training refuses to resume from other settings: ``--resume false``)."""
    from asccl.config import save_config

    test, _ = test_clips(config)  # a bad data folder or test speaker fails before training
    if not test:
        raise DataError(config.data / "pairs.csv", "no clip pairs of the test speakers")
    from asccl.spfem.train import check_resumable

    trains = {model: train_configs(config, model) for model in config.models}
    results = config.out / "results"
    if config.evaluate:
        eval_config(config, results)
    for runs in trains.values():  # a run that cannot resume stops the experiment here
        for train in runs.values():
            check_resumable(train)
    config.out.mkdir(parents=True, exist_ok=True)
    paths = {"config": save_config(config, config.out / "config.json")}
    checkpoints = {}
    for model in config.models:
        checkpoints[model] = train_variants(config, model)
        for variant, path in checkpoints[model].items():
            paths[f"checkpoint_{method_name(model, variant)}"] = path
            log = config.out / "train" / method_name(model, variant) / "curves.png"
            if log.is_file():
                paths[f"curves_{method_name(model, variant)}"] = log
    sizes = {model: trains[model]["baseline"].image_size for model in config.models}
    check_results_settings(config, results_settings(config, sizes))
    for model in config.models:
        results = generate_results(config, model, checkpoints[model])
    paths["results"] = results
    if not config.evaluate:
        return paths
    evaluation = evaluate_results(config, results)
    paths |= {f"eval_{k}": v for k, v in evaluation.items()}
    paths |= compare(config, evaluation["scores"])
    return paths
