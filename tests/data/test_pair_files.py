"""The authors' nested pair JSON and asccl's pairs table: round trips and malformed files."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest

from asccl.data.clips import AlignedPair
from asccl.data.errors import DataError
from asccl.data.pair_files import (
    read_authors_json,
    read_pairs_table,
    write_authors_json,
    write_pairs_table,
)

# The authors' layout, by hand: two speakers; angry 001_001 and disgusted 001_028 (their
# disgusted clips are numbered 028-030); repeated indices where time was stretched.
AUTHORS_LAYOUT = {
    "M035": {
        "angry": {"001_001": [[0, 1, 2, 2, 3, 4], [0, 1, 1, 2, 3, 5]]},
        "disgusted": {"001_028": [[0, 0, 1, 2], [0, 1, 2, 2]]},
    },
    "W021": {
        "angry": {"001_001": [[0, 1, 1, 1, 2], [0, 0, 1, 2, 3]]},
        "disgusted": {"001_028": [[0, 1], [0, 1]]},
    },
}


def make_pairs() -> list[AlignedPair]:
    return [
        AlignedPair("M003", "angry", "M003/neutral/level_1/001", "M003/angry/level_3/001",
                    np.array([0, 1, 1, 2]), np.array([0, 0, 1, 2]), 12.5,
                    {"mean_step_cost": 3.125, "diagonal_fraction": 2 / 3}),
        AlignedPair("M003", "disgusted", "M003/neutral/level_1/002", "M003/disgusted/level_3/029",
                    np.array([0, 1, 2]), np.array([0, 1, 1]), float("nan"),
                    {"mean_step_cost": 0.1}),
        AlignedPair("W015", "angry", "W015/neutral/level_1/001", "W015/angry/level_3/001",
                    np.arange(5), np.arange(5), 0.0, {}),
    ]  # fmt: skip


def assert_same_frames(a: AlignedPair, b: AlignedPair) -> None:
    assert (a.speaker, a.emotion) == (b.speaker, b.emotion)
    np.testing.assert_array_equal(a.neutral_frames, b.neutral_frames)
    np.testing.assert_array_equal(a.emotional_frames, b.emotional_frames)
    assert a.neutral_frames.dtype == a.emotional_frames.dtype == np.int64


# ----------------------------------------------------------------------------- authors' JSON


def test_reads_the_authors_layout(tmp_path):
    path = tmp_path / "aligned_path.json"
    path.write_text(json.dumps(AUTHORS_LAYOUT))
    pairs = read_authors_json(path)
    assert [(p.speaker, p.emotion, p.neutral_clip, p.emotional_clip) for p in pairs] == [
        ("M035", "angry", "001", "001"),
        ("M035", "disgusted", "001", "028"),
        ("W021", "angry", "001", "001"),
        ("W021", "disgusted", "001", "028"),
    ]
    np.testing.assert_array_equal(pairs[0].neutral_frames, [0, 1, 2, 2, 3, 4])
    np.testing.assert_array_equal(pairs[0].emotional_frames, [0, 1, 1, 2, 3, 5])
    assert len(pairs[2]) == 5 and math.isnan(pairs[2].dtw_cost) and pairs[2].quality == {}


def test_both_disgusted_numberings_round_trip(tmp_path):
    """Their file keys disgusted 001_028 for some speakers and 001_001 for others (W021)."""
    pairs = [
        AlignedPair(s, "disgusted", f"{s}/neutral/level_1/001", f"{s}/disgusted/level_3/{e}",
                    np.arange(3), np.arange(3))
        for s, e in (("M035", "028"), ("W021", "001"))
    ]  # fmt: skip
    path = write_authors_json(pairs, tmp_path / "aligned.json")
    assert {s: list(e["disgusted"]) for s, e in json.loads(path.read_text()).items()} == {
        "M035": ["001_028"],
        "W021": ["001_001"],
    }
    back = read_authors_json(path)
    assert [(p.speaker, p.neutral_clip, p.emotional_clip) for p in back] == [
        ("M035", "001", "028"),
        ("W021", "001", "001"),
    ]


def test_authors_json_round_trip_uses_sentence_ids(tmp_path):
    path = write_authors_json(make_pairs(), tmp_path / "out" / "aligned.json")
    tree = json.loads(path.read_text())
    assert tree == {
        "M003": {"angry": {"001_001": [[0, 1, 1, 2], [0, 0, 1, 2]]},
                 "disgusted": {"002_029": [[0, 1, 2], [0, 1, 1]]}},
        "W015": {"angry": {"001_001": [[0, 1, 2, 3, 4], [0, 1, 2, 3, 4]]}},
    }  # fmt: skip
    back = read_authors_json(path)
    for original, read in zip(make_pairs(), back, strict=True):
        assert_same_frames(original, read)
        assert read.neutral_clip == original.neutral_clip.rsplit("/", 1)[-1]
        assert read.emotional_clip == original.emotional_clip.rsplit("/", 1)[-1]
    # Written back from what was read, the file is the same.
    assert json.loads(write_authors_json(back, tmp_path / "again.json").read_text()) == tree


def test_authors_json_refuses_two_pairs_with_one_key(tmp_path):
    pairs = make_pairs()
    with pytest.raises(ValueError, match="M003/angry/001_001"):
        write_authors_json([pairs[0], pairs[0]], tmp_path / "dup.json")
    assert not (tmp_path / "dup.json").exists()


MALFORMED_JSON = [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "expected an object speaker -> emotion -> pairs, got list"),
    ('{"M003": [1]}', "M003: expected an object emotion -> pairs, got list"),
    ('{"M003": {"angry": null}}', "M003/angry: expected an object key -> frame lists, got null"),
    ('{"M003": {"angry": {"001": [[0], [0]]}}}', "M003/angry/001: key is not"),
    ('{"M003": {"angry": {"001_001": [[0, 1]]}}}', "M003/angry/001_001: expected [[neutral"),
    ('{"M003": {"angry": {"001_001": [[0, 1], 5]}}}', "emotional frames are int, not a list"),
    ('{"M003": {"angry": {"001_001": [[0, 1, 2], [0, 1]]}}}', "differ in length (3 vs 2)"),
    ('{"M003": {"angry": {"001_001": [[0, -1], [0, 1]]}}}', "neutral frame index -1 is negative"),
    ('{"M003": {"angry": {"001_001": [[0, 1.5], [0, 1]]}}}', "index 1.5 is not an integer"),
    ('{"M003": {"angry": {"001_001": [[0, 1], [0, true]]}}}', "index True is not an integer"),
    ('{"M003": {"angry": {"001_001": [[0, 2, 1], [0, 1, 2]]}}}', "decrease at position 2 (2 -> 1)"),
    ('{"M003": {"angry": {"001_001": [[], []]}}}', "neutral frame list is empty"),
]


def assert_refused(read, path, text: str, problem: str) -> None:
    """``read(path)`` of a file holding ``text`` fails in one line naming the file and
    ``problem``."""
    path.write_text(text)
    with pytest.raises(DataError) as info:
        read(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and problem in message, message
    assert "\n" not in message


@pytest.mark.parametrize(("text", "problem"), MALFORMED_JSON)
def test_malformed_authors_json(tmp_path, text, problem):
    assert_refused(read_authors_json, tmp_path / "bad.json", text, problem)


def test_missing_and_binary_files(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        read_authors_json(tmp_path / "none.json")
    (tmp_path / "bin.csv").write_bytes(b"\xff\xfe\x00\x81")
    with pytest.raises(DataError, match="not UTF-8"):
        read_pairs_table(tmp_path / "bin.csv")


# ----------------------------------------------------------------------------- pairs table


def test_pairs_table_round_trip(tmp_path):
    pairs = make_pairs()
    path = write_pairs_table(pairs, tmp_path / "pairs.csv")
    header = path.read_text().splitlines()[0].split(",")
    assert header == [
        "speaker", "emotion", "neutral_clip", "emotional_clip", "num_pairs", "dtw_cost",
        "q_mean_step_cost", "q_diagonal_fraction", "neutral_frames", "emotional_frames",
    ]  # fmt: skip
    assert "0 1 1 2,0 0 1 2" in path.read_text()
    back = read_pairs_table(path)
    assert len(back) == len(pairs)
    for original, read in zip(pairs, back, strict=True):
        assert_same_frames(original, read)
        assert (read.neutral_clip, read.emotional_clip) == (
            original.neutral_clip,
            original.emotional_clip,
        )
        assert read.quality == original.quality  # exact floats; absent keys stay absent
        assert read.dtw_cost == original.dtw_cost or (
            math.isnan(read.dtw_cost) and math.isnan(original.dtw_cost)
        )


def test_pairs_table_empty_and_atomic(tmp_path):
    path = tmp_path / "pairs.csv"
    assert read_pairs_table(write_pairs_table([], path)) == []
    write_pairs_table(make_pairs(), path)
    before = path.read_text()
    broken = make_pairs()
    broken[0].quality["mean_step_cost"] = "oops"  # fails while the table is being built
    with pytest.raises(ValueError):
        write_pairs_table(broken, path)
    assert path.read_text() == before  # the old file is untouched
    assert sorted(os.listdir(tmp_path)) == ["pairs.csv"]  # no temporary file left behind
    assert os.stat(path).st_mode & 0o777 == 0o644


HEADER = "speaker,emotion,neutral_clip,emotional_clip,num_pairs,dtw_cost,q_x,neutral_frames,emotional_frames"  # noqa: E501
MALFORMED_TABLE = [
    ("speaker,emotion\nM003,angry\n", "missing column(s) neutral_clip, emotional_clip"),
    (f"{HEADER}\nM003,angry,a,b,2,1.0,,0 1,0 x\n", "line 2: invalid literal for int()"),
    (f"{HEADER}\nM003,angry,a,b,2,cheap,,0 1,0 1\n", "line 2: could not convert"),
    (f"{HEADER}\nM003,angry,a,b,3,1.0,,0 1,0 1\n", "num_pairs is 3 but the frame lists hold 2"),
    (f"{HEADER}\nM003,angry,a,b,2,1.0,,0 1,0 1 2\n", "line 2: frame lists differ in length"),
    (f"{HEADER}\nM003,angry,a,b,2,1.0,,1 0,0 1\n", "neutral frames decrease at position 1"),
    (f"{HEADER}\nM003,angry,a,b,2,1.0,,0 -1,0 1\n", "frame index -1 is negative"),
    (f"{HEADER}\nM003,angry,a,b,2,1.0,0 1,0 1\n", "line 2: expected 9 fields"),
    (f"{HEADER}\nM003,angry,a,b,2,1.0,,0 1,0 1,extra\n", "line 2: expected 9 fields"),
]


@pytest.mark.parametrize(("text", "problem"), MALFORMED_TABLE)
def test_malformed_pairs_table(tmp_path, text, problem):
    assert_refused(read_pairs_table, tmp_path / "pairs.csv", text, problem)


def test_a_clip_pair_on_two_lines_is_refused_naming_both(tmp_path):
    """A row copied by hand would make training use its frame pairs twice, silently."""
    text = (f"{HEADER}\nM003,angry,a,b,2,1.0,,0 1,0 1\nM003,angry,a,c,1,1.0,,0,0\n"
            "M003,angry,a,b,2,1.0,,0 1,0 1\n")  # fmt: skip
    assert_refused(
        read_pairs_table, tmp_path / "pairs.csv", text, "lines 2 and 4 both pair a with b"
    )
    # the same neutral clip with another emotional clip (line 3) is a pair of its own
    path = tmp_path / "pairs.csv"
    path.write_text("\n".join(text.splitlines()[:3]) + "\n")
    assert [(p.neutral_clip, p.emotional_clip) for p in read_pairs_table(path)] == [
        ("a", "b"), ("a", "c"),
    ]  # fmt: skip


def test_a_byte_order_mark_and_crlf_lines_read_as_the_plain_table(tmp_path):
    """Excel saves UTF-8 CSV with a byte order mark and CRLF line ends: the same pairs
    (the mark used to glue onto the first column's name: 'missing column(s) speaker')."""
    plain = write_pairs_table(make_pairs(), tmp_path / "pairs.csv")
    excel = tmp_path / "excel.csv"
    excel.write_bytes(b"\xef\xbb\xbf" + plain.read_bytes().replace(b"\n", b"\r\n"))
    for original, read in zip(read_pairs_table(plain), read_pairs_table(excel), strict=True):
        assert_same_frames(original, read)
        assert (read.neutral_clip, read.emotional_clip, read.quality) == (
            original.neutral_clip, original.emotional_clip, original.quality,
        )  # fmt: skip
    authors = tmp_path / "aligned_path.json"
    authors.write_bytes(b"\xef\xbb\xbf" + json.dumps(AUTHORS_LAYOUT).encode())
    assert len(read_authors_json(authors)) == 4
