"""DTW against librosa.sequence.dtw (same path, same cost), both tie rules against plain
re-creations on tie-heavy costs, frame pairs, diagnostics, the preset's rule in pair files."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from asccl.data.audio import FEATURE_PRESETS, frame_features, load_audio
from asccl.data.dtw import (
    TIE_RULES,
    _accumulate_authors_py,
    _accumulate_py,
    _backtrack_py,
    accumulated_cost,
    align_audio,
    alignment_quality,
    cost_matrix,
    dtw,
    frame_pairs,
)

librosa = pytest.importorskip("librosa")

SR, FPS = 16000, 30


def librosa_dtw(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """librosa's accumulated cost ``(N, M)`` and path, turned to run from (0, 0) forward."""
    acc, path = librosa.sequence.dtw(C=cost)
    return acc, path[::-1].astype(np.int64)


def assert_same_as_librosa(cost: np.ndarray) -> np.ndarray:
    path, total = dtw(cost)
    ref_acc, ref_path = librosa_dtw(cost)
    np.testing.assert_array_equal(path, ref_path)
    assert path.dtype == np.int64
    assert total == ref_acc[-1, -1]
    np.testing.assert_array_equal(accumulated_cost(cost), ref_acc)
    return path


# ----------------------------------------------------------------------------- dtw vs librosa


@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (9, 1), (2, 2), (12, 12), (17, 29), (40, 23)])
def test_random_costs_match_librosa(shape):
    rng = np.random.default_rng(sum(shape))
    for _ in range(5):
        assert_same_as_librosa(rng.random(shape))


def test_tied_integer_costs_match_librosa():
    """Costs in {0, 1, 2} make many exact ties: the path shows the tie-breaking order."""
    rng = np.random.default_rng(0)
    for _ in range(200):
        n, m = rng.integers(1, 25, size=2)
        assert_same_as_librosa(rng.integers(0, 3, size=(n, m)).astype(np.float64))
    for cost in (np.zeros((6, 9)), np.ones((9, 6)), np.ones((1, 5))):
        assert_same_as_librosa(cost)


def test_tie_order_diagonal_then_advance_b_then_advance_a():
    # All-zero costs tie everywhere: the diagonal wins, then (i, j-1) before (i-1, j).
    path, total = dtw(np.zeros((3, 5)))
    assert total == 0.0
    np.testing.assert_array_equal(path, [[0, 0], [0, 1], [0, 2], [1, 3], [2, 4]])
    path, _ = dtw(np.zeros((5, 3)))
    np.testing.assert_array_equal(path, [[0, 0], [1, 0], [2, 0], [3, 1], [4, 2]])


@pytest.mark.parametrize(
    ("ties", "python_kernel"), [("librosa", _accumulate_py), ("authors", _accumulate_authors_py)]
)
def test_compiled_kernels_equal_the_python_ones(ties, python_kernel):
    rng = np.random.default_rng(3)
    cost = rng.integers(0, 4, size=(15, 21)).astype(np.float64)
    acc, steps = python_kernel(cost)
    np.testing.assert_array_equal(acc, accumulated_cost(cost, ties))
    np.testing.assert_array_equal(_backtrack_py(steps), dtw(cost, ties)[0])


# ----------------------------------------------------------------------------- tie rules
# Plain re-creations of each rule, written independently of the kernels: a padded
# accumulated-cost table (inf border, 0 in the corner) and a traceback from the end that
# re-decides every step from the table.

_MOVES = {"diag": (1, 1), "advance_a": (1, 0), "advance_b": (0, 1)}  # (di, dj) taken back


def reference_dtw(cost: np.ndarray, ties: str) -> tuple[list[tuple[int, int]], float]:
    """Path (from (0, 0)) and total cost of ``cost`` under rule ``ties``, in plain Python.

    librosa: candidates diagonal, (i, j-1), (i-1, j); sums ``D[pred] + C`` compared, a later
    one wins only if strictly smaller. authors: the textbook ``C + min(D[pred])``, the first
    minimum of the predecessors in the order diagonal, (i-1, j), (i, j-1).
    """
    if ties == "librosa":
        return _reference(cost, ("diag", "advance_b", "advance_a"), compare_sums=True)
    return _reference(cost, ("diag", "advance_a", "advance_b"), compare_sums=False)


def _reference(
    cost: np.ndarray, order: tuple[str, ...], compare_sums: bool
) -> tuple[list[tuple[int, int]], float]:
    n, m = cost.shape
    c = cost.tolist()
    inf = float("inf")
    table = [[inf] * (m + 1) for _ in range(n + 1)]  # table[i + 1][j + 1] = D[i, j]
    table[0][0] = 0.0

    def choose(i: int, j: int) -> str:
        preds = {k: table[i + 1 - di][j + 1 - dj] for k, (di, dj) in _MOVES.items()}
        if i == 0 and j == 0:
            return "start"
        best_move, best = None, inf
        for move in order:
            value = preds[move] + c[i][j] if compare_sums else preds[move]
            if value < best:
                best_move, best = move, value
        return best_move

    for i in range(n):
        for j in range(m):
            move = choose(i, j)
            if move == "start":
                table[1][1] = c[0][0]
            else:
                di, dj = _MOVES[move]
                table[i + 1][j + 1] = table[i + 1 - di][j + 1 - dj] + c[i][j]
    path = [(n - 1, m - 1)]
    while path[-1] != (0, 0):
        i, j = path[-1]
        di, dj = _MOVES[choose(i, j)]
        path.append((i - di, j - dj))
    return path[::-1], table[n][m]


def tie_heavy_costs(seed: int, count: int):
    """``count`` cost matrices of random sizes 1..20 whose entries make many exact ties:
    {0, 1}; {0.1, 0.2, 0.3} (sums that look equal but differ in the last bit); and
    {0, 1, 2**60} (where adding 2**60 rounds 0 and 1 to the same sum)."""
    rng = np.random.default_rng(seed)
    values = (np.array([0.0, 1.0]), np.array([0.1, 0.2, 0.3]), np.array([0.0, 1.0, 2.0**60]))
    for k in range(count):
        n, m = rng.integers(1, 21, size=2)
        yield rng.choice(values[k % 3], size=(n, m))


@pytest.mark.parametrize("ties", TIE_RULES)
def test_each_tie_rule_matches_its_plain_re_creation(ties):
    differ = 0
    for cost in tie_heavy_costs(seed=16, count=300):
        path, total = dtw(cost, ties)
        ref_path, ref_total = reference_dtw(cost, ties)
        assert path.tolist() == [list(p) for p in ref_path], cost
        assert total == ref_total
        other = TIE_RULES[1 - TIE_RULES.index(ties)]
        np.testing.assert_array_equal(accumulated_cost(cost, ties), accumulated_cost(cost, other))
        differ += not np.array_equal(path, dtw(cost, other)[0])
    assert differ > 0  # the two rules do part ways on such costs: the test can see it


def test_authors_rule_compares_predecessors_not_sums():
    """With 2**60 in the costs, ``D[p] + C`` rounds unequal predecessors to equal sums:
    comparing sums (librosa's way) in the authors' order would then pick other paths."""
    order = ("diag", "advance_a", "advance_b")
    differ = 0
    for k, cost in enumerate(tie_heavy_costs(seed=16, count=300)):
        if k % 3 == 2:  # the {0, 1, 2**60} family
            by_sums = _reference(cost, order, compare_sums=True)[0]
            differ += dtw(cost, "authors")[0].tolist() != [list(p) for p in by_sums]
    assert differ > 0


def test_librosa_rule_is_librosa_on_tie_heavy_costs():
    for cost in tie_heavy_costs(seed=17, count=150):
        assert_same_as_librosa(cost)
        assert dtw(cost, "librosa")[0].tolist() == dtw(cost)[0].tolist()


def test_the_issues_example_parts_the_rules():
    cost = np.array([[0.0, 0, 0], [0, 1, 0], [0, 0, 0]])
    librosa_path, librosa_total = dtw(cost, "librosa")
    authors_path, authors_total = dtw(cost, "authors")
    assert librosa_total == authors_total == 0.0
    np.testing.assert_array_equal(librosa_path, [[0, 0], [1, 0], [2, 1], [2, 2]])
    np.testing.assert_array_equal(authors_path, [[0, 0], [0, 1], [1, 2], [2, 2]])
    # all-zero costs: the diagonal wins every tie it is in, under both rules alike
    for shape in ((3, 5), (5, 3)):
        np.testing.assert_array_equal(
            dtw(np.zeros(shape), "authors")[0], dtw(np.zeros(shape), "librosa")[0]
        )


def test_align_audio_uses_the_tie_rule():
    rng = np.random.default_rng(18)
    differ = 0
    for _ in range(20):
        a, b = rng.integers(0, 2, size=(9, 2)), rng.integers(0, 2, size=(11, 2))  # l1 in 0..2
        paths = {}
        for ties in TIE_RULES:
            idx_n, idx_e, _, _ = align_audio(a, b, 9, 11, ties=ties)
            paths[ties] = np.column_stack((idx_n, idx_e))
            ref = reference_dtw(cost_matrix(a, b), ties)[0]
            np.testing.assert_array_equal(paths[ties], ref)
        differ += not np.array_equal(*paths.values())
    assert differ > 0
    with pytest.raises(ValueError, match="librosa, authors"):
        dtw(np.zeros((2, 2)), "textbook")


def test_feature_presets_pick_the_tie_rule_and_dtype():
    from asccl.data.config import DataConfig

    assert FEATURE_PRESETS["mfcc_psf"].dtw_ties == "authors"
    assert FEATURE_PRESETS["mfcc_psf"].dtype == "float64"
    assert FEATURE_PRESETS["mel"].dtw_ties == FEATURE_PRESETS["mfcc"].dtw_ties == "librosa"
    assert {p.dtw_ties for p in FEATURE_PRESETS.values()} <= set(TIE_RULES)
    psf = DataConfig(features="mfcc_psf").pair_settings()
    assert (psf["dtw_ties"], psf["feature_dtype"]) == ("authors", "float64")
    mel = DataConfig().pair_settings()
    assert (mel["dtw_ties"], mel["feature_dtype"]) == ("librosa", "float32")


def test_path_properties_and_total_cost():
    cost = np.random.default_rng(4).random((30, 45))
    path, total = dtw(cost)
    assert tuple(path[0]) == (0, 0) and tuple(path[-1]) == (29, 44)
    steps = {tuple(s) for s in np.diff(path, axis=0).tolist()}
    assert steps <= {(1, 1), (0, 1), (1, 0)}
    assert 45 <= len(path) <= 30 + 45 - 1
    assert total == pytest.approx(cost[path[:, 0], path[:, 1]].sum(), rel=1e-12)


def test_dtw_rejects_bad_costs():
    with pytest.raises(ValueError, match=r"\(0, 3\)"):
        dtw(np.zeros((0, 3)))
    with pytest.raises(ValueError, match="shape"):
        dtw(np.zeros(4))
    with pytest.raises(ValueError, match="NaN"):
        dtw(np.array([[0.0, np.nan]]))


def stretched_pair(seconds: float = 3.0, stretch: float = 1.3):
    """A speech-like signal (AM tone with pitch glides and pauses) and the same signal
    slowed down by ``stretch`` via resampling the time axis: the true warp is known."""
    t = np.arange(int(seconds * SR)) / SR
    syllables = np.clip(np.sin(2 * np.pi * 2.7 * t) + 0.4 * np.sin(2 * np.pi * 0.9 * t), 0, None)
    pitch = 140 + 40 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / SR
    carrier = np.sin(phase) + 0.5 * np.sin(2 * phase)
    x = (0.3 * syllables * carrier).astype(np.float32)
    t_slow = np.arange(int(seconds * stretch * SR)) / SR
    y = np.interp(t_slow / stretch, t, x).astype(np.float32)
    return x, y


@pytest.mark.parametrize("kind", ["mel", "mfcc"])
def test_speech_like_pair_matches_librosa_and_recovers_the_stretch(kind):
    stretch = 1.3
    x, y = stretched_pair(stretch=stretch)
    a, b = frame_features(x, SR, FPS, kind=kind), frame_features(y, SR, FPS, kind=kind)
    path = assert_same_as_librosa(cost_matrix(a, b, "l1"))
    # Frame k of x is frame k * stretch of y: the path must follow that line.
    error = np.abs(path[:, 1] - path[:, 0] * stretch)
    assert np.median(error) <= 1.0 and np.percentile(error, 95) <= 3.0, error.max()


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_synthetic_speech_with_espeak(tmp_path):
    text = "the quick brown fox jumps over the lazy dog"
    other = "seven green apples sit in a wooden box"
    paths = {}
    for name, speed, words in (("slow", 120, text), ("fast", 190, text), ("other", 120, other)):
        paths[name] = tmp_path / f"{name}.wav"
        subprocess.run(["espeak-ng", "-s", str(speed), "-w", str(paths[name]), words], check=True)
    feats = {k: frame_features(load_audio(p), SR, FPS) for k, p in paths.items()}
    same = cost_matrix(feats["slow"], feats["fast"])
    assert_same_as_librosa(same)
    other = cost_matrix(feats["other"], feats["fast"])
    q_same = alignment_quality(dtw(same)[0], same)
    q_other = alignment_quality(dtw(other)[0], other)
    assert q_same["mean_step_cost"] < 0.8 * q_other["mean_step_cost"]


# ----------------------------------------------------------------------------- cost_matrix


def test_cost_matrix_metrics():
    rng = np.random.default_rng(5)
    a, b = rng.standard_normal((7, 4)), rng.standard_normal((9, 4))
    diff = a[:, None] - b[None]  # (N, M, D)
    np.testing.assert_allclose(cost_matrix(a, b), np.abs(diff).sum(-1))
    np.testing.assert_allclose(cost_matrix(a, b, "euclidean"), np.sqrt((diff**2).sum(-1)))
    cos = (a / np.linalg.norm(a, axis=1, keepdims=True)) @ (
        b / np.linalg.norm(b, axis=1, keepdims=True)
    ).T
    np.testing.assert_allclose(cost_matrix(a, b, "cosine"), 1 - cos, atol=1e-12)
    assert cost_matrix(a.astype(np.float32), b).dtype == np.float64
    with pytest.raises(ValueError, match="l1, euclidean, cosine"):
        cost_matrix(a, b, "manhattan")
    with pytest.raises(ValueError, match=r"\(7, 4\) and \(9, 3\)"):
        cost_matrix(a, b[:, :3])


# ----------------------------------------------------------------------------- frame_pairs


def test_frame_pairs_identity_inside_the_videos():
    path = np.array([[0, 0], [1, 0], [2, 1], [2, 2], [3, 3]])
    idx_a, idx_b = frame_pairs(path, 4, 4)
    np.testing.assert_array_equal(idx_a, path[:, 0])
    np.testing.assert_array_equal(idx_b, path[:, 1])
    assert idx_a.dtype == idx_b.dtype == np.int64


def test_frame_pairs_clip_to_the_real_frame_counts():
    # Audio ran 2 frames past video a and 1 past video b.
    path = np.array([[0, 0], [1, 1], [2, 2], [3, 2], [4, 3], [5, 4], [5, 5], [6, 5]])
    idx_a, idx_b = frame_pairs(path, n_frames_a=5, n_frames_b=5)
    assert idx_a.max() == 4 and idx_b.max() == 4
    assert len(idx_a) == len(idx_b)
    assert np.all(np.diff(idx_a) >= 0) and np.all(np.diff(idx_b) >= 0)
    np.testing.assert_array_equal(idx_a, [0, 1, 2, 3, 4, 4])  # clipped duplicates dropped
    np.testing.assert_array_equal(idx_b, [0, 1, 2, 2, 3, 4])


def test_frame_pairs_validation():
    with pytest.raises(ValueError, match=">= 1"):
        frame_pairs(np.zeros((3, 2), np.int64), 0, 5)
    with pytest.raises(ValueError, match=r"\(3,\)"):
        frame_pairs(np.zeros(3, np.int64), 5, 5)


# ----------------------------------------------------------------------------- quality


def test_alignment_quality_on_a_hand_made_path():
    cost = np.arange(12, dtype=np.float64).reshape(3, 4)
    path = np.array([[0, 0], [0, 1], [0, 2], [1, 3], [2, 3]])
    q = alignment_quality(path, cost)
    assert q == {
        "mean_step_cost": pytest.approx((0 + 1 + 2 + 7 + 11) / 5),
        "diagonal_fraction": 0.25,
        "max_repeat_a": 3.0,
        "max_repeat_b": 2.0,
        "length_ratio": 5 / 4,
    }
    diag = alignment_quality(np.stack([np.arange(4)] * 2, axis=1), np.zeros((4, 4)))
    assert diag["diagonal_fraction"] == 1.0 and diag["length_ratio"] == 1.0
    assert diag["max_repeat_a"] == diag["max_repeat_b"] == 1.0
    assert alignment_quality(np.zeros((1, 2), np.int64), np.ones((1, 1)))["diagonal_fraction"] == 1


def test_align_audio_end_to_end():
    x, y = stretched_pair(seconds=2.0, stretch=1.2)
    a, b = frame_features(x, SR, FPS), frame_features(y, SR, FPS)
    # The videos are a frame shorter than the audio says: pairs must stay inside them.
    idx_n, idx_e, total, quality = align_audio(a, b, len(a) - 1, len(b) - 1)
    assert idx_n.max() == len(a) - 2 and idx_e.max() == len(b) - 2
    assert len(idx_n) == len(idx_e) >= len(b) - 2
    assert total == dtw(cost_matrix(a, b))[1]
    assert set(quality) == {
        "mean_step_cost", "diagonal_fraction", "max_repeat_a", "max_repeat_b", "length_ratio",
    }  # fmt: skip


DEMO_AUDIO = Path(__file__).resolve().parents[2] / "demo_data/MEAD/W901/audio"


@pytest.mark.parametrize("kind", ["mel", "mfcc"])
@pytest.mark.parametrize(
    ("emotion", "sentence"), [("angry", "001"), ("sad", "002"), ("disgusted", "030")]
)
def test_same_path_as_librosa_on_demo_speech(kind, emotion, sentence):
    """The bundled demo speech (espeak-ng, neutral vs emotional prosody), real features."""
    neutral_sentence = {"030": "003"}.get(sentence, sentence)
    feats = [
        frame_features(load_audio(DEMO_AUDIO / f"{e}/{lvl}/{s}.m4a", SR), SR, FPS, kind=kind)
        for e, lvl, s in (("neutral", "level_1", neutral_sentence), (emotion, "level_3", sentence))
    ]
    for metric in ("l1", "euclidean"):
        path = assert_same_as_librosa(cost_matrix(feats[0], feats[1], metric=metric))
        assert len(path) >= max(len(feats[0]), len(feats[1]))


def test_pairs_run_records_the_presets_rule_and_redoes_older_pairs(tmp_path):
    """``features = "mfcc_psf"``: pair files hold the authors' rule's frames and record it;
    one written before the rule was recorded (as older asccl did) is redone, and says so."""
    pytest.importorskip("python_speech_features")
    from asccl.data.clip_index import read_clip_index
    from asccl.data.pairing import PairingRule
    from asccl.data.prepare import DataConfig, run_index, run_pairs

    root = tmp_path / "MEAD"
    for sub in ("video/front", "audio"):
        for emotion in ("neutral", "angry"):
            shutil.copytree(DEMO_AUDIO.parent / sub / emotion, root / "W901" / sub / emotion)
    rule = PairingRule(emotions=("angry",), sentences=("001",))
    config = DataConfig(root=root, out=tmp_path / "out", pairing=rule, features="mfcc_psf",
                        workers=0)  # fmt: skip
    run_index(config)
    assert (run_pairs(config).done, run_pairs(config).skipped) == (1, 1)
    (path,) = (config.out / "pairs").rglob("*.json")
    record = json.loads(path.read_text())
    assert record["settings"]["dtw_ties"] == "authors"
    assert record["settings"]["feature_dtype"] == "float64"
    clips = {c.clip_id: c for c in read_clip_index(config.out / "clips.csv")}
    neutral, emotional = clips[record["neutral_clip"]], clips[record["emotional_clip"]]
    feats = [frame_features(load_audio(c.audio, SR), SR, c.fps, kind="mfcc_psf")
             for c in (neutral, emotional)]  # fmt: skip
    assert all(f.dtype == np.float64 for f in feats)
    idx_n, idx_e, total, _ = align_audio(
        *feats, neutral.num_frames, emotional.num_frames, ties="authors"
    )
    assert (record["neutral_frames"], record["emotional_frames"]) == (
        idx_n.tolist(),
        idx_e.tolist(),
    )
    assert record["dtw_cost"] == total
    for key in ("dtw_ties", "feature_dtype"):
        del record["settings"][key]
    path.write_text(json.dumps(record))
    again = run_pairs(config)
    assert (again.done, again.skipped) == (1, 0)
    assert any("dtw_ties: ? -> authors" in note for note in again.notes), again.notes
    assert json.loads(path.read_text())["settings"]["dtw_ties"] == "authors"
