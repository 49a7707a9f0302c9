"""A run's outputs: per setting its tables (titled by :func:`table_caption`, footnoted by
the scoring's notes), plot and qualitative grid (:func:`write_setting`), then
``scores.csv``, ``summary.json`` and ``report.txt`` (:func:`write_run_files`; skipped clips
counted by reason: :func:`skipped_by_reason`); :func:`remove_stale_outputs` drops what an
earlier run wrote for settings or methods no longer evaluated."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from asccl.data.errors import DataError
from asccl.evaluation.config import EvalConfig, EvalSummary
from asccl.evaluation.ground_truth_scoring import CAPPED_FRAMES, PSNR_FRAMES, cap_columns
from asccl.evaluation.results import ResultsIndex, read_frames
from asccl.evaluation.scoring import SettingScores
from asccl.evaluation.tables import METRICS, plot_scores, qualitative_grid, write_tables
from asccl.io import write_text_atomic

#: what each real set is (``EvalConfig.real_set``), for table captions
REAL_SET_TEXT = {
    "sources": "sources (the methods' inputs of each emotion)",
    "references": "references (the setting's reference clips of each emotion)",
    "ground_truth": "ground truth (the setting's target clips of each emotion)",
}
#: metric -> (procedure, extractor whose input it reads)
PROCEDURES = {
    "fid": ("Frechet distance of pytorch-fid Inception pool3 features", "inception"),
    "fad": ("Frechet distance of ArcFace embeddings", "arcface"),
    "kid": (
        "unbiased KID (cubic polynomial MMD^2, mean over subsets) of pytorch-fid "
        "Inception pool3 features",
        "inception",
    ),
    "csim": ("mean cosine of ArcFace embeddings, source vs result frame", "arcface"),
    "lse_d": ("syncnet_python's LSE-D, mean over clips", "syncnet"),
    "lse_c": ("syncnet_python's LSE-C, mean over clips", "syncnet"),
    "lme_mouth": (
        "mean distance of the 20 mouth landmarks (48-67) to the ground truth's / its "
        "inter-ocular distance (36-45), mean over frames with a face (results' landmarks: "
        "the evaluation's face tracker; the ground truth's: its .landmarks.npy, else tracked)",
        "ground_truth",
    ),
    "lme_face": ("the same over all 68 landmarks", "ground_truth"),
    "lmd_mouth": (
        "mean distance of the 20 mouth landmarks to the ground truth's as the same tracker "
        "finds them (LMD: a tracker bias common to both cancels) / the exact ground truth's "
        "inter-ocular distance (Mouth-LME's units), mean over frames with a face in both",
        "ground_truth",
    ),
    "lmd_face": ("the same over all 68 landmarks", "ground_truth"),
    "psnr": (
        "PSNR (dB) against the ground-truth frame, mean over frames; a frame equal to its "
        "ground truth counts 100 dB",
        "ground_truth",
    ),
    "ssim": (
        "SSIM (Wang et al. 2004, per channel) against the ground-truth frame, mean over frames",
        "ground_truth",
    ),
}


def table_caption(config: EvalConfig, setting: str) -> str:
    """A table's title: the setting, each metric's procedure (FID/FAD with the real set)
    and what each network's input is made of, in the framing's own words
    (:func:`~asccl.evaluation.framing.describe`: framing, crop scale, landmarks)."""
    from asccl.evaluation.framing import describe

    parts, kinds = [], []
    for metric in config.table_metrics:
        procedure, kind = PROCEDURES[metric]
        if metric in ("fid", "fad", "kid"):
            procedure += f"; real set: {REAL_SET_TEXT[config.real_set]}"
        parts.append(f"{METRICS[metric][0]} {procedure}")
        kinds += [kind] if kind not in kinds else []
    words = describe(config.framing_of("arcface"), config.framing_of("syncnet"),
                     config.fid_preprocess, config.crop_scale, config.landmark_backend,
                     config.lse_codecs, config.lse_ffmpeg)  # fmt: skip
    texts = {"inception": "Inception: " + words["fid"], "arcface": words["csim"],
             "syncnet": words["lse"], "ground_truth": "ground truth: result and ground-truth "
             "frames as stored (uint8 RGB), frame i against frame i"}  # fmt: skip
    inputs = "; ".join(texts[k] for k in kinds if k in texts)
    return f"Setting {setting}. " + ". ".join(parts) + f". Inputs: {inputs}."


def skipped_by_reason(failures: dict[str, str]) -> dict[str, int]:
    """``{reason: clips}`` of the skipped clips (``EvalSummary.failures``), reasons grouped:
    an unreadable clip, a CSIM without its source, an LSE too short (a clip may count
    under several)."""
    counts: dict[str, int] = {}
    for reason in failures.values():
        kinds = set()
        for part in reason.split("; "):
            if "no frame with a face" in part:
                kinds.add("no face found")
            elif part.startswith("CSIM not scored"):
                kinds.add("CSIM not scored: source unreadable")
            elif part.startswith("LSE not scored"):
                kinds.add("LSE not scored: too short or no face")
            else:
                kinds.add("unreadable clip")
        for kind in kinds:
            counts[kind] = counts.get(kind, 0) + 1
    return dict(sorted(counts.items()))


def setting_grid(
    index: ResultsIndex, methods: list[str], setting: str, config: EvalConfig, path: Path
) -> Path | None:
    """A qualitative grid of ``setting`` at ``path``: up to ``grid_clips`` rows (one clip per
    emotion first), columns reference, source and each method; ``None`` if no clip."""
    methods = [m for m in methods if index.select(method=m, setting=setting)]
    names = sorted({(c.emotion, c.name) for c in index.select(setting=setting)})
    # one clip per emotion first (the paper's figures show every emotion), then the next
    rank: dict[tuple[str, str], int] = {}
    per_emotion: dict[str, int] = {}
    for emotion, name in names:
        rank[emotion, name] = per_emotion.get(emotion, 0)
        per_emotion[emotion] = rank[emotion, name] + 1
    names.sort(key=lambda key: (rank[key], key))
    rows, labels = [], []

    def frame(p: Path | None):
        if p is None:
            return None
        try:
            frames = read_frames(p, max(1, min(config.max_frames_per_clip or 8, 8)))
        except DataError:
            return None
        return frames[len(frames) // 2]

    for emotion, name in names[: config.grid_clips]:
        by_method = {
            c.method: c for c in index.select(setting=setting, emotion=emotion) if c.name == name
        }
        any_clip = next(iter(by_method.values()))
        row = [frame(any_clip.reference), frame(any_clip.source)]
        row += [frame(by_method[m].path) if m in by_method else None for m in methods]
        rows.append(row)
        labels.append(f"{emotion}/{name}")
    if not rows:
        return None
    columns = ["Reference", "Source", *methods]
    if all(row[0] is None for row in rows):  # no reference input (e.g. GANmut): no column
        rows, columns = [row[1:] for row in rows], columns[1:]
    return qualitative_grid(rows, columns, path, labels)


def remove_stale_outputs(out: Path, outputs: dict[str, Path]) -> None:
    """Remove the tables, plots and grids an earlier run wrote that this one did not (a
    setting or method no longer evaluated), so ``out`` holds only this run's results."""
    kept = {Path(p).resolve() for p in outputs.values()}
    for folder in ("tables", "plots", "grids"):
        for path in sorted((out / folder).glob("*")) if (out / folder).is_dir() else []:
            stale = path.resolve() not in kept
            if stale and path.is_file() and path.suffix in (".md", ".csv", ".tex", ".png"):
                path.unlink()


def write_setting(
    result: SettingScores,
    index: ResultsIndex,
    methods: list[str],
    setting: str,
    config: EvalConfig,
) -> dict[str, Path]:
    """Tables (MD/CSV/LaTeX), plot and (``grid_clips`` > 0) qualitative grid of one setting
    under ``config.out``; returns ``{name: path}``."""
    out, metrics, scores = Path(config.out), config.table_metrics, result.scores
    outputs: dict[str, Path] = {}
    stem = out / "tables" / setting
    md, csv_path, tex = write_tables(scores, metrics, stem, caption=table_caption(config, setting),
                                     notes=result.notes, comparable=result.comparable)  # fmt: skip
    outputs |= {f"table_{setting}_md": md, f"table_{setting}_csv": csv_path}
    outputs[f"table_{setting}_tex"] = tex
    title = f"{setting} (real set: {config.real_set})" if config.use_distribution else setting
    outputs[f"plot_{setting}"] = plot_scores(
        scores, metrics, out / "plots" / f"{setting}.png", title=title
    )
    if config.grid_clips > 0:
        grid = setting_grid(index, methods, setting, config, out / "grids" / f"{setting}.png")
        if grid is not None:
            outputs[f"grid_{setting}"] = grid
    return outputs


def write_run_files(
    out: Path,
    long_rows: list[tuple],
    summary: EvalSummary,
    index: ResultsIndex,
    comparable: bool = True,
    real_set: str = "sources",
    results: dict[str, SettingScores] | None = None,
) -> dict[str, Path]:
    """``scores.csv`` (one row per setting, method, emotion, metric; a PSNR row's frames at
    the 100 dB cap and its frames in the columns ``psnr_capped_frames`` and ``psnr_frames``,
    from ``results``' :class:`SettingScores` per setting:
    :func:`~asccl.evaluation.ground_truth_scoring.cap_columns`), ``summary.json`` (with
    ``skipped`` by reason and ``comparable``: whether any average compares every method)
    and ``report.txt`` under ``out``; returns ``{name: path}``."""
    outputs: dict[str, Path] = {}
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(["setting", "method", "emotion", "metric", "value", CAPPED_FRAMES,
                     PSNR_FRAMES])  # fmt: skip
    writer.writerows(cap_columns(long_rows, results or {}))
    outputs["scores"] = write_text_atomic(out / "scores.csv", buffer.getvalue())
    summary_json = {
        "computed": summary.computed,
        "redone": summary.redone,
        "cached": summary.cached,
        "problems": summary.problems,
        "failures": summary.failures,
        "skipped": skipped_by_reason(summary.failures),
        "comparable": comparable,
        "real_set": real_set,
        "methods": index.methods,
        "settings": index.settings,
        "emotions": index.emotions,
    }
    outputs["summary"] = write_text_atomic(
        out / "summary.json", json.dumps(summary_json, indent=2) + "\n"
    )
    outputs["report"] = write_text_atomic(out / "report.txt", summary.report())
    return outputs
