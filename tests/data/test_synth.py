"""asccl data synth: determinism, the ground truth's construction, speech-driven mouths,
and the written tree as ``asccl data`` reads it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("av")
pytest.importorskip("dlib")
pytest.importorskip("skimage")

from asccl.cli import main
from asccl.data.mead import index_mead
from asccl.data.pairing import MEAD_RULE, pair_clips
from asccl.data.synth import Clip, SynthConfig, render_ground_truth, run_synth, synth_clip
from asccl.data.synth.dataset import clip_audio
from asccl.data.synth.expressions import BROW_POINTS, EYE_POINTS, MOUTH_OPEN, MOUTH_POINTS
from asccl.data.synth.speech import articulation, num_frames, sentence_units
from asccl.data.video import iter_frames

TINY = SynthConfig(out=Path("unused"), size=64, duration=0.6)
#: The face frame: nose bridge and eye corners, which no expression moves.
STABLE = [27, 28, 29, 36, 39, 42, 45]


def _in_face_frame(marks: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """(n, 68, 2) landmarks mapped by the similarity that best puts each frame's STABLE
    points onto ``ref``'s (Procrustes): head roll, scale and shift removed."""
    out = np.empty(marks.shape, np.float64)
    b = ref[STABLE] - ref[STABLE].mean(0)
    for i, x in enumerate(marks.astype(np.float64)):
        a = x[STABLE] - x[STABLE].mean(0)
        u, s, vt = np.linalg.svd(a.T @ b)
        out[i] = (x - x[STABLE].mean(0)) @ (u @ vt) * (s.sum() / (a**2).sum()) + ref[STABLE].mean(0)
    return out


def _unit(marks: np.ndarray) -> float:
    return float(np.linalg.norm(marks[0, 42:48].mean(0) - marks[0, 36:42].mean(0)))


def _gap(m: np.ndarray) -> np.ndarray:
    """Inner-lip gap per frame: lower inner lip (65-67) minus upper (61-63), y."""
    return m[:, 65:68, 1].mean(1) - m[:, 61:64, 1].mean(1)


@pytest.fixture(scope="module")
def clips():
    """Speaker 1's (M902) renders: neutral sentences 0 and 1, happy and surprised takes of
    sentence 0, and sentence 0's ground truth for happy and surprised."""
    got = {
        "neutral": synth_clip(TINY, Clip(1, "neutral", 1, 0)),
        "neutral_2": synth_clip(TINY, Clip(1, "neutral", 1, 1)),
    }
    for emotion in ("happy", "surprised"):
        got[emotion] = synth_clip(TINY, Clip(1, emotion, 3, 0))
        got[f"gt_{emotion}"] = render_ground_truth(TINY, 1, 0, emotion)
    return got


def test_render_is_deterministic_per_seed(clips):
    frames, marks, audio = synth_clip(TINY, Clip(1, "neutral", 1, 0))
    assert np.array_equal(frames, clips["neutral"][0])
    assert np.array_equal(marks, clips["neutral"][1])
    assert np.array_equal(audio, clips["neutral"][2])
    other = synth_clip(dataclasses.replace(TINY, seed=1), Clip(1, "neutral", 1, 0))[0]
    n = min(len(other), len(frames))
    assert not np.array_equal(other[:n], frames[:n])


def test_ground_truth_of_neutral_is_the_neutral_clip(clips):
    frames, marks, audio = render_ground_truth(TINY, 1, 0, "neutral")
    assert np.array_equal(frames, clips["neutral"][0])  # same speech, motion, expression
    assert np.array_equal(marks, clips["neutral"][1])
    assert np.array_equal(audio, clips["neutral"][2])


def test_ground_truth_mouth_follows_neutral_brows_and_eyes_follow_target(clips):
    ref = clips["neutral"][1][0]
    unit = _unit(clips["neutral"][1])
    neutral = _in_face_frame(clips["neutral"][1], ref)
    for target in ("happy", "surprised"):
        truth = _in_face_frame(clips[f"gt_{target}"][1], ref)
        take = _in_face_frame(clips[target][1], ref)
        assert len(truth) == len(neutral)  # the neutral clip's timeline
        # Mouth: the ground truth's opening is gain * the neutral's + a constant jaw drop
        # (happy: 1.05, 0.03; surprised 1.15, 0.3, clipped at 1.3), so its inner-lip gap
        # is the neutral's up to an affine map: correlation ~1 (measured 0.99999). The
        # emotional take speaks the words on its own timeline (measured 0.7).
        assert np.corrcoef(_gap(truth), _gap(neutral))[0, 1] > 0.995
        n = min(len(take), len(truth))
        assert np.corrcoef(_gap(truth[:n]), _gap(take[:n]))[0, 1] < 0.95
        # Mouth points: once the constant expression offset is removed, the ground truth
        # differs from the neutral only by (gain - 1) * opening (<= 1.3) * the largest
        # offset per unit opening (0.33 D): <= 0.15 * 1.3 * 0.33 D = 0.064 D per point.
        bound = 0.15 * 1.3 * max(abs(up) for _, _, up in MOUTH_OPEN)

        def wander(a: np.ndarray, b: np.ndarray) -> float:
            d = a[:, MOUTH_POINTS] - b[:, MOUTH_POINTS]
            return float(np.abs(d - d.mean(0)).max() / unit)

        assert wander(truth, neutral) < bound
        assert wander(truth[:n], take[:n]) > wander(truth, neutral)
        # Brows and eyes: the target's expression. Medians over frames (blinks are rare)
        # of the ground truth and the emotional take differ only by the expression's
        # +-6 % wobble (their phases differ), the neutral's by the whole expression.
        for group in (BROW_POINTS, EYE_POINTS):

            def median(m: np.ndarray, group=group) -> np.ndarray:
                return np.median(m[:, group], axis=0)

            to_take = np.linalg.norm(median(truth) - median(take), axis=1).mean()
            to_neutral = np.linalg.norm(median(truth) - median(neutral), axis=1).mean()
            assert to_take < 0.25 * to_neutral, (target, group[0], to_take, to_neutral)


def test_sentences_give_different_mouths(clips):
    ref = clips["neutral"][1][0]
    a = _in_face_frame(clips["neutral"][1], ref)
    b = _in_face_frame(clips["neutral_2"][1], ref)
    n = min(len(a), len(b))
    assert np.corrcoef(_gap(a[:n]), _gap(b[:n]))[0, 1] < 0.9
    # the width track, not only the opening: a sentence (3 s) both spreads and rounds
    audio = clip_audio(dataclasses.replace(TINY, duration=3.0), Clip(1, "neutral", 1, 0))
    opening, width = articulation(audio, num_frames(len(audio)))
    assert width.max() > 0.3 and width.min() < -0.3
    assert opening.max() > 0.5 and opening.min() < 0.05  # closes in the lead-in silence
    assert [u.phone for u in sentence_units(0, 3.0)] != [u.phone for u in sentence_units(1, 3.0)]


def test_emotional_takes_differ_in_timing(clips):
    lengths = {len(clips[k][2]) for k in ("neutral", "happy", "surprised")}
    assert len(lengths) == 3


def _decoded(path: Path) -> np.ndarray:
    return np.stack(list(iter_frames(path)))


@pytest.mark.slow
def test_synth_tree_indexes_pairs_resumes_and_is_deterministic(tmp_path, capsys):
    """One speaker, three sentences (MEAD's default rule pairs 001-003, disgusted 028-030)."""
    config = dataclasses.replace(TINY, out=tmp_path / "a", speakers=1, sentences=3, duration=0.5)
    summary = run_synth(config)
    assert summary.failures == [] and summary.done == 8 * 3 + 7 * 3
    clips, problems = index_mead(config.out / "MEAD")
    assert problems == []
    assert len(clips) == 24 and {c.speaker for c in clips} == {"W901"}
    assert {c.sentence for c in clips if c.emotion == "disgusted"} == {"028", "029", "030"}
    pairs, problems = pair_clips(clips, MEAD_RULE)
    assert problems == [] and len(pairs) == 6 * 3
    assert all(p.emotional.intensity == 3 and p.neutral.intensity == 1 for p in pairs)
    truth = config.out / "ground_truth" / "sad" / "W901_002"
    marks = np.load(f"{truth}.landmarks.npy")
    frames = _decoded(truth.with_suffix(".mp4"))
    assert marks.dtype == np.float32 and marks.shape == (len(frames), 68, 2)
    expected = render_ground_truth(config, 0, 1, "sad")
    assert np.array_equal(marks, expected[1])
    # lossy H.264 (CRF 26, yuv420p chroma halved) of 64-pixel frames: measured 4.4 grey
    # levels mean error; 8 (PSNR ~26 dB) is a loose codec bound (landmarks: exact above)
    assert np.abs(frames.astype(int) - expected[0]).mean() < 8
    neutral = config.out / "MEAD" / "W901" / "video" / "front" / "neutral" / "level_1" / "002.mp4"
    same = config.out / "ground_truth" / "neutral" / "W901_002.mp4"
    assert np.array_equal(_decoded(same), _decoded(neutral))

    # resume: everything complete is skipped
    assert run_synth(config).skipped == 45
    # the same seed in another folder (one sentence: 15 items): the same decoded frames
    copy = dataclasses.replace(config, out=tmp_path / "b", sentences=1)
    assert run_synth(copy).done == 15
    clip = "MEAD/W901/video/front/angry/level_3/001.mp4"
    assert np.array_equal(_decoded(copy.out / clip), _decoded(config.out / clip))
    # another seed over that folder (through the CLI): every clip redone, other frames
    argv = ["data", "synth", "--out", str(copy.out), "--size", "64", "--duration", "0.5",
            "--sentences", "1", "--speakers", "1", "--seed", "3"]  # fmt: skip
    assert main(argv) == 0
    assert "15 clips made with other settings (seed: 0 -> 3): redone" in capsys.readouterr().out
    assert not np.array_equal(_decoded(copy.out / clip), _decoded(config.out / clip))


def test_clips_of_another_recipe_are_redone(tmp_path):
    """A clip whose record names an older recipe (synth-1: images off their landmarks by
    up to ~0.4 px) is redone, the run saying why: never kept beside synth-2 clips."""
    import json

    from asccl.data.synth.config import RECIPE
    from asccl.data.synth.run import Item, item_paths, item_state, record_path

    config = dataclasses.replace(TINY, out=tmp_path)
    item = Item(Clip(0, "neutral", 1, 0))
    files = {}
    for path in item_paths(config, item).values():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * 10)
        files[path.relative_to(tmp_path).as_posix()] = 10
    record = record_path(config, item)
    record.parent.mkdir(parents=True, exist_ok=True)
    settings = config.clip_settings()
    record.write_text(json.dumps({"settings": settings, "files": files}))
    assert item_state(config, item) is None
    record.write_text(json.dumps({"settings": {**settings, "recipe": "synth-1"}, "files": files}))
    assert RECIPE == "synth-2"
    assert item_state(config, item) == "recipe: synth-1 -> synth-2"


def test_sentence_numbering_follows_mead():
    """Disgusted numbers the first three sentences 028-030 when there are three or more
    (the pairing then finds 030 and maps 001->028), else 001 (MEAD's other numbering)."""
    from asccl.data.synth.dataset import sentence_id

    assert [sentence_id("disgusted", k, 4) for k in range(4)] == ["028", "029", "030", "004"]
    assert sentence_id("disgusted", 0, 1) == "001" and sentence_id("angry", 2, 3) == "003"


def test_cli_bad_value_is_one_line(tmp_path, capsys):
    assert main(["data", "synth", "--out", str(tmp_path), "--size", "63"]) == 2
    err = capsys.readouterr().err
    assert err == "asccl: error: command line: size must be an even integer in 32..1024, got 63\n"
    assert not any(tmp_path.iterdir())
