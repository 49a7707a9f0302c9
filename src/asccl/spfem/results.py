"""Step 2 of ``asccl experiment``: the test set's results, in the layout ``asccl evaluate``
reads (:mod:`asccl.evaluation.results`).

For every DTW-paired (neutral, emotional) clip of a test speaker, the whole neutral clip
is turned, frame by frame, into the emotional clip's emotion by each variant's generator;
the references of each setting and the sources (with the neutral clip's audio) are written
beside them. The reference never is the target (:func:`choose_reference`, NED's protocol):
inter-ID takes another sentence of the same speaker in the target emotion, cross-ID a clip
of that emotion by another speaker (another sentence first); ``single`` (GANmut) reads the
emotion label only, and its generator is given the source itself as reference. Results are
kept across runs only while they come from the same weights and the same data, clip
selection, image sizes and crop format (see :func:`check_results_settings` and
:func:`_drop_stale`); a file already there that differs from what would be written (its size
or frame count) is refused, never kept (:func:`_kept`).

Each model's results read what its training read: the crop stores of its training config's
``crop_format`` (:func:`model_store`, :func:`~asccl.data.crop_store.crop_path` as
:class:`~asccl.training.dataset.PairedFrames` opens them, never another format's store of
the same clip), and only the emotions it was trained on (its ``emotions``; :func:`model_clips`).

Frames where stage 1 found no face (the store's ``valid`` mask, read from its header) are
never turned into results: a test clip whose neutral store has one is left out of the test
set (:func:`test_clips`, named in the log), and a reference with one among the frames it
would drive is passed over (:func:`choose_reference`).
The experiment itself is :mod:`asccl.spfem.experiment`.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from asccl.data.clip_index import read_clip_index
from asccl.data.clips import Clip
from asccl.data.crop_store import ClipCropsReader, crop_path, open_clip_crops, read_clip_header
from asccl.data.errors import DataError
from asccl.data.pair_files import read_pairs_table
from asccl.data.video import probe_video, write_video
from asccl.evaluation.results import GROUND_TRUTH, REFERENCES, SOURCES
from asccl.io import write_text_atomic
from asccl.spfem.data import EMOTIONS, ClipPairFrames, clip_tensors, emotion_label

if TYPE_CHECKING:
    from asccl.spfem.config import SPFEMTrainConfig
    from asccl.spfem.experiment import ExperimentConfig

#: settings each reference generator is evaluated in
MODEL_SETTINGS = {"ganmut": ("single",), "icface": ("inter_id", "cross_id")}


def method_name(model: str, variant: str) -> str:
    """Results folder name: ``ganmut`` (baseline) or ``ganmut_asccl``."""
    return model if variant == "baseline" else f"{model}_{variant}"


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


def test_clips(
    config: ExperimentConfig, *, quiet: bool = False
) -> tuple[list[TestClip], list[TestClip]]:
    """``(test, others)``: the test speakers' clip pairs, and every other speaker's (cross-ID
    references), from the stage-1 tables ``pairs.csv`` and ``clips.csv``.

    A test clip whose neutral (source) store has a frame without a face (``valid`` false:
    stage 1 found none, the crop is black) is left out before ``max_clips_per_emotion``
    counts it, so the next clip of its emotion takes its place. Every frame of the store is
    checked, since the source and each result are the whole clip (the DTW alignment's
    ``pair.neutral_frames`` are among them), in the store of every crop format the
    experiment's models read (:func:`_no_face`). Unless ``quiet``, each left-out clip is
    printed once with its count, and so is an emotion left without any test clip; when
    every test clip is left out: a :class:`DataError`."""
    test, others, left, empty = _select(config)
    if not quiet:
        for items, bad, total in left.values():
            emotions = ", ".join(c.pair.emotion for c in items)
            print(f"test clip {items[0].name} ({emotions}) left out: {bad} of its {total} "
                  "frames have no face (stage 1 found none)")  # fmt: skip
        for emotion in empty:
            print(f"{emotion}: every test clip has frames without a face: no results for it")
    return test, others


def left_out_clips(config: ExperimentConfig) -> dict[str, int]:
    """``{<speaker>_<sentence>: frames without a face}`` of the test clips that
    :func:`test_clips` leaves out (nothing printed)."""
    return {items[0].name: bad for items, bad, _ in _select(config)[2].values()}


def _select(
    config: ExperimentConfig,
) -> tuple[list[TestClip], list[TestClip], dict[str, tuple[list[TestClip], int, int]], list[str]]:
    """:func:`test_clips`' selection: ``(test, others, left, empty)``, ``left`` the test
    clips left out by neutral clip id with ``(frames without a face, frames)``, ``empty``
    the emotions left without a test clip by that."""
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
    formats = sorted({getattr(config, m).crop_format for m in config.models})
    faces: dict[str, tuple[int, int]] = {}  # neutral clip -> (frames without a face, frames)
    left: dict[str, list[TestClip]] = {}  # left-out test clips by neutral clip, in order
    tested: set[str] = set()
    test, others = [], []
    per_emotion: dict[str, int] = {}
    for pair in pairs:
        frames = ClipPairFrames(
            pair.speaker,
            pair.emotion,
            pair.neutral_clip,
            pair.emotional_clip,
            pair.neutral_frames,
            pair.emotional_frames,
        )
        item = TestClip(frames, clips[pair.neutral_clip], clips[pair.emotional_clip])
        if pair.speaker not in config.test_speakers:
            if not config.cross_speakers or pair.speaker in config.cross_speakers:
                others.append(item)
            continue
        count = per_emotion.get(pair.emotion, 0)
        if config.max_clips_per_emotion and count >= config.max_clips_per_emotion:
            continue
        tested.add(pair.emotion)
        if pair.neutral_clip not in faces:
            faces[pair.neutral_clip] = _no_face(config.data, pair.neutral_clip, formats)
        if faces[pair.neutral_clip][0]:
            left.setdefault(pair.neutral_clip, []).append(item)
            continue
        per_emotion[pair.emotion] = count + 1
        test.append(item)
    if left and not test:
        clip = next(iter(left))
        bad, total = faces[clip]
        raise DataError(config.data / "crops", "every test clip has frames without a face "
                        f"in its neutral crop store ({len(left)} store(s), e.g. {clip}: "
                        f"{bad} of {total} frames): no results to make")  # fmt: skip
    selected = {c.pair.emotion for c in test}
    return (test, others, {c: (items, *faces[c]) for c, items in left.items()},
            sorted(tested - selected))  # fmt: skip


def _no_face(data: Path, clip_id: str, formats: Sequence[str]) -> tuple[int, int]:
    """``(frames without a face, frames)`` of ``clip_id``'s crop store: the most over its
    stores in ``formats`` (each read from its header, no frame decoded)."""
    counts = []
    for fmt in formats:
        path = crop_path(data, clip_id, fmt)
        if not path.exists():
            raise DataError(path, f"missing: a model reads {fmt!r} crop stores (its "
                            "crop_format): `asccl data crops` makes them")  # fmt: skip
        valid, _ = read_clip_header(path)
        counts.append((int((~valid).sum()), len(valid)))
    return max(counts)


def model_clips(test: Sequence[TestClip], train: SPFEMTrainConfig) -> list[TestClip]:
    """The test clips whose target emotion the model of training config ``train`` was
    trained on (its ``emotions``; ``None``: all)."""
    if train.emotions is None:
        return list(test)
    return [c for c in test if c.pair.emotion in train.emotions]


def model_store(train: SPFEMTrainConfig, clip_id: str) -> ClipCropsReader:
    """The crop store of ``clip_id`` that the run of training config ``train`` reads: its
    ``data`` and ``crop_format`` through :func:`~asccl.data.crop_store.crop_path`, as
    :class:`~asccl.training.dataset.PairedFrames` opens it (another format's store of the
    same clip is never read)."""
    path = crop_path(train.data, clip_id, train.crop_format)
    if not path.exists():
        raise DataError(path, f"missing: the model trained on {train.crop_format!r} crop "
                        "stores (its crop_format): `asccl data crops` makes them")  # fmt: skip
    return open_clip_crops(path)


def _to_uint8(images: Tensor) -> np.ndarray:
    """``(N, 3, H, W)`` in [-1, 1] -> ``(N, H, W, 3)`` uint8."""
    images = ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return images.permute(0, 2, 3, 1).cpu().numpy()


def _kept(path: Path, num_frames: int, height: int, width: int) -> bool:
    """Whether ``path`` is already there as this run would write it: ``num_frames`` frames
    of ``width`` x ``height`` (a resumed experiment keeps it). A file there of another size
    or length was made with other settings: a :class:`DataError`, never kept silently."""
    if not path.is_file():
        return False
    info = probe_video(path)
    found = (info.num_frames, info.width, info.height)
    if found != (num_frames, width, height):
        raise DataError(path, f"made with other settings ({found[1]}x{found[2]} px, {found[0]} "
                        f"frames; this run writes {width}x{height} px, {num_frames} frames): "
                        "remove it (or the results folder) to make it again")  # fmt: skip
    return True


def _write_clip(path: Path, frames: np.ndarray, fps: float, audio: Path | None = None) -> None:
    """Write ``(N, H, W, 3)`` uint8 ``frames`` atomically; an existing file is kept if it
    has their size and length (:func:`_kept`)."""
    if _kept(path, *frames.shape[:3]):
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


def generate_results(config: ExperimentConfig, model: str, checkpoints: dict[str, Path]) -> Path:
    """Write ``model``'s results for every test clip of an emotion it was trained on, both
    variants; returns the root. Frames come from the crop stores its training read
    (:func:`model_store`). Results already there are kept only while they come from the
    same weights (see :func:`_drop_stale`); call :func:`check_results_settings` first."""
    from asccl.spfem.experiment import train_configs
    from asccl.spfem.generators.checkpoint import load_generator

    root = config.out / "results"
    train = train_configs(config, model)["baseline"]  # data and crop_format as trained
    every, _ = test_clips(config, quiet=True)  # run_experiment's call names the left-out
    test = model_clips(every, train)
    if len(test) < len(every):
        left = sorted({c.pair.emotion for c in every} - {c.pair.emotion for c in test})
        print(f"{model}: trained on {', '.join(train.emotions or ())} only: no results for "
              f"{', '.join(left)} ({len(every) - len(test)} test clip(s) left out)")  # fmt: skip
    candidates = reference_clips(config, train.crop_format)
    generators = {
        v: load_generator(path).to(config.device).eval() for v, path in checkpoints.items()
    }
    size = next(iter(generators.values())).config.image_size
    for variant, path in checkpoints.items():
        _drop_stale(root / method_name(model, variant), path)
    written = kept = 0
    for clip in tqdm(test, desc=f"generating {model} results", unit="clip"):
        neutral = model_store(train, clip.pair.neutral_clip)
        source = clip_tensors(neutral, size)
        fps = neutral.fps
        emotion, name = clip.pair.emotion, f"{clip.name}.mp4"
        _write_clip(root / SOURCES / emotion / name, _to_uint8(source[0]), fps,
                    clip.neutral.audio or clip.neutral.video)  # fmt: skip
        truth = _truth_video(config, clip)
        for setting in MODEL_SETTINGS[model]:
            reference = _reference(config, train, clip, candidates, setting, source, size)
            if reference is None:
                continue
            if truth is not None:
                from asccl.spfem.ground_truth import write_ground_truth

                write_ground_truth(neutral, truth, size, fps,
                                   root / GROUND_TRUTH / setting / emotion / name)  # fmt: skip
            if setting != "single":
                _write_clip(root / REFERENCES / setting / emotion / name,
                            _to_uint8(reference[0]), fps)  # fmt: skip
            for variant, generator in generators.items():
                path = root / method_name(model, variant) / setting / emotion / name
                if _kept(path, len(source[0]), size, size):
                    kept += 1
                    continue
                result = _translate(generator, source, reference, emotion, config)
                _write_clip(path, _to_uint8(result), fps)
                written += 1
    print(f"{model} results: {written} written, {kept} kept (same weights and settings)")
    return root


def _truth_video(config: ExperimentConfig, clip: TestClip) -> Path | None:
    """``<ground_truth>/<emotion>/<clip>.mp4`` of a test clip (``asccl data synth``'s
    layout), ``None`` without ``ground_truth``; missing there: a :class:`DataError`."""
    if config.ground_truth is None:
        return None
    path = Path(config.ground_truth) / clip.pair.emotion / f"{clip.name}.mp4"
    if not path.is_file():
        raise DataError(path, "missing: ground_truth must hold <emotion>/<speaker>_<sentence>"
                        ".mp4 for every test clip (`asccl data synth` writes it)")  # fmt: skip
    return path


def results_settings(
    config: ExperimentConfig, sizes: dict[str, int], crop_formats: dict[str, str]
) -> dict[str, str]:
    """What the results folder's sources, references and clip selection depend on, beyond
    each method's weights: the data (its path, ``pairs.csv`` and ``clips.csv`` digests, the
    crop stores' sizes and mtimes), the test/cross speakers, ``max_clips_per_emotion`` and
    each model's image size and crop format (sources are written at it, from its stores),
    and, when there are any, the test clips left out for frames without a face with their
    counts (:func:`left_out_clips`; a folder made before they were left out is rebuilt)."""
    from asccl.training.resume import file_digest

    left = left_out_clips(config)
    data = Path(config.data)
    crops = hashlib.sha256()
    for path in sorted((data / "crops").rglob("*")) if (data / "crops").is_dir() else []:
        if path.is_file():
            st = path.stat()
            crops.update(f"{path.relative_to(data)} {st.st_size} {st.st_mtime_ns}\n".encode())
    settings = {
        "data": str(data.resolve()),
        "data_pairs_csv": file_digest(data / "pairs.csv"),
        "data_clips_csv": file_digest(data / "clips.csv"),
        "data_crops": crops.hexdigest()[:16],
        "test_speakers": json.dumps(list(config.test_speakers)),
        "cross_speakers": json.dumps(list(config.cross_speakers)),
        "max_clips_per_emotion": str(config.max_clips_per_emotion),
        "image_sizes": json.dumps(sizes, sort_keys=True),
        "crop_formats": json.dumps(crop_formats, sort_keys=True),
    }
    if left:
        settings["left_out_no_face"] = json.dumps(left, sort_keys=True)
    if config.ground_truth:
        settings["ground_truth"] = str(Path(config.ground_truth).resolve())
    return settings


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


def reference_clips(config: ExperimentConfig, crop_format: str) -> list[Clip]:
    """Every emotional clip of ``clips.csv`` with a crop store in ``crop_format`` (the
    model's, :func:`model_store`): what references are chosen from
    (:func:`choose_reference`)."""
    clips = read_clip_index(config.data / "clips.csv")
    stored = [c for c in clips if c.emotion != "neutral"]
    return [c for c in stored if crop_path(config.data, c.clip_id, crop_format).exists()]


def choose_reference(
    clip: TestClip,
    candidates: Sequence[Clip],
    setting: str,
    config: ExperimentConfig,
    crop_format: str,
) -> Clip | None:
    """The clip whose frames drive ``clip``'s result in ``setting`` (``None``: none fits).

    Never the target (the emotional clip of the pair) nor its sentence: ``inter_id``: the
    same speaker, the target emotion, another sentence (NED's protocol); ``cross_id``: the
    target emotion by a speaker that is no test speaker (one of ``cross_speakers`` when
    given), another sentence first. Ties go to the target's intensity, then the lowest
    sentence, speaker and clip id, so the choice is the same on every run
    (:func:`reference_pool`). A candidate whose ``crop_format`` store has a frame without
    a face among those it would drive (frame ``i`` drives source frame ``i``, its last
    past its end: its first ``N`` frames for an ``N``-frame source) is passed over for the
    next; when every candidate has one, ``None``: the test clip gets no result in
    ``setting`` (the other settings keep it). Stores are read from their headers only."""
    pool = reference_pool(clip, candidates, setting, config)
    if not pool:
        return None
    path = crop_path(config.data, clip.pair.neutral_clip, crop_format)
    frames = len(read_clip_header(path)[0])  # the source: the whole neutral store
    for candidate in pool:
        valid, _ = read_clip_header(crop_path(config.data, candidate.clip_id, crop_format))
        if valid[:frames].all():
            return candidate
    return None


def reference_pool(
    clip: TestClip, candidates: Sequence[Clip], setting: str, config: ExperimentConfig
) -> list[Clip]:
    """Every candidate that may drive ``clip`` in ``setting``, in the order
    :func:`choose_reference` tries them (faces not checked)."""
    speaker, emotion = clip.neutral.speaker, clip.pair.emotion
    sentence, intensity = clip.neutral.sentence, clip.emotional.intensity
    if setting == "inter_id":
        pool = [c for c in candidates if c.speaker == speaker and c.emotion == emotion
                and c.sentence not in (sentence, clip.emotional.sentence)]  # fmt: skip
    elif setting == "cross_id":
        pool = [c for c in candidates if c.emotion == emotion and c.speaker != speaker
                and c.speaker not in config.test_speakers
                and (not config.cross_speakers or c.speaker in config.cross_speakers)]  # fmt: skip
    else:
        raise ValueError(f"no reference clip in setting {setting!r}")
    pool.sort(key=lambda c: (c.sentence == sentence, c.intensity != intensity, c.sentence,
                             c.speaker, c.clip_id))  # fmt: skip
    return pool


def _reference(
    config: ExperimentConfig,
    train: SPFEMTrainConfig,
    clip: TestClip,
    candidates: Sequence[Clip],
    setting: str,
    source: tuple[Tensor, Tensor],
    size: int,
) -> tuple[Tensor, Tensor] | None:
    """Per source frame, the reference frame (and landmarks) that drives it: frame ``i``
    of the chosen clip (:func:`choose_reference`; its last past its end); ``single``: the
    source itself (GANmut reads the label only). ``None`` (printed): no reference fits."""
    if setting == "single":
        return source
    driver = choose_reference(clip, candidates, setting, config, train.crop_format)
    if driver is None:
        pool = len(reference_pool(clip, candidates, setting, config))
        who = "another sentence of the speaker" if setting == "inter_id" else "another speaker"
        why = (f"each of its {pool} has frames without a face among the {len(source[0])} it "
               "would drive" if pool else f"{who} in that emotion")  # fmt: skip
        print(f"  {clip.name} {clip.pair.emotion}: no {setting} reference ({why}); skipped")
        return None
    frames, landmarks = clip_tensors(model_store(train, driver.clip_id), size)
    index = np.minimum(np.arange(len(source[0])), len(frames) - 1)
    return frames[index], landmarks[index]
