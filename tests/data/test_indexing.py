from pathlib import Path

import pytest

from asccl.data.clip_index import read_clip_index, write_clip_index
from asccl.data.errors import DataError
from asccl.data.mead import index_mead
from asccl.data.pairing import MEAD_RULE, RAVDESS_RULE, pair_clips
from asccl.data.ravdess import index_ravdess, parse_ravdess_name


def touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")


def make_mead(root: Path) -> None:
    for speaker in ("M003", "W021"):
        for sentence in ("001", "002", "003"):
            touch(root / speaker / "video/front/neutral/level_1" / f"{sentence}.mp4")
            touch(root / speaker / "audio/neutral/level_1" / f"{sentence}.m4a")
        for emotion, sentences in (
            ("angry", ("001", "002", "003")),
            ("disgusted", ("028", "029", "030")),
        ):
            for sentence in sentences:
                touch(root / speaker / f"video/front/{emotion}/level_3/{sentence}.mp4")
                touch(root / speaker / f"audio/{emotion}/level_3/{sentence}.m4a")
        touch(root / speaker / "video/left_30/angry/level_3/001.mp4")  # another view: ignored


def test_mead_index_and_pairs(tmp_path):
    make_mead(tmp_path)
    clips, problems = index_mead(tmp_path)
    assert problems == []
    assert len(clips) == 2 * 9
    clip = next(c for c in clips if c.clip_id == "W021/disgusted/level_3/029")
    assert (clip.speaker, clip.emotion, clip.intensity, clip.sentence) == (
        "W021",
        "disgusted",
        3,
        "029",
    )
    assert clip.video == tmp_path / "W021/video/front/disgusted/level_3/029.mp4"
    assert clip.audio == tmp_path / "W021/audio/disgusted/level_3/029.m4a"
    rule = MEAD_RULE.__class__(emotions=("angry", "disgusted"))
    pairs, pair_problems = pair_clips(clips, rule)
    assert pair_problems == []
    keys = sorted((p.speaker, p.emotion, p.key) for p in pairs)
    assert ("M003", "disgusted", "001_028") in keys and ("M003", "angry", "003_003") in keys
    assert len(keys) == 2 * 2 * 3


def test_mead_malformed_names_are_reported_not_guessed(tmp_path):
    make_mead(tmp_path)
    touch(tmp_path / "M003/video/front/angry/level_3/1.mp4")  # bad sentence name
    touch(tmp_path / "M003/video/front/angri/level_3/001.mp4")  # unknown emotion
    touch(tmp_path / "M003/video/front/angry/lvl3/001.mp4")  # bad level folder
    touch(tmp_path / "M003/audio/happy/level_3/004.m4a")  # audio without video
    (tmp_path / "notes").mkdir()
    clips, problems = index_mead(tmp_path)
    messages = [str(p) for p in problems]
    assert any("angry/level_3/1.mp4: expected NNN.mp4" in m for m in messages)
    assert any("angri: unknown MEAD emotion" in m for m in messages)
    assert any("lvl3: expected a level_<n> folder" in m for m in messages)
    assert any("004.m4a: no matching video file for M003/happy/level_3/004" in m for m in messages)
    assert any("notes: not a MEAD speaker folder" in m for m in messages)
    assert not any(c.emotion == "angri" for c in clips)
    assert len(messages) == 5


def test_missing_partners_are_reported(tmp_path):
    make_mead(tmp_path)
    (tmp_path / "M003/video/front/angry/level_3/002.mp4").unlink()
    (tmp_path / "M003/audio/angry/level_3/002.m4a").unlink()
    clips, _ = index_mead(tmp_path)
    pairs, problems = pair_clips(clips, MEAD_RULE.__class__(emotions=("angry",)))
    assert len(pairs) == 5
    assert [str(p) for p in problems] == [
        "M003/angry: no intensity-3 clip 002 to pair with neutral 002"
    ]


def test_mead_root_errors(tmp_path):
    with pytest.raises(DataError, match="MEAD root is not a folder"):
        index_mead(tmp_path / "missing")
    with pytest.raises(DataError, match="unknown MEAD view 'side'"):
        index_mead(tmp_path, view="side")


def test_ravdess_name_parsing():
    fields = parse_ravdess_name(Path("01-01-06-02-01-02-12.mp4"))
    assert fields == {
        "modality": "01",
        "channel": "01",
        "emotion": "06",
        "intensity": "02",
        "statement": "01",
        "repetition": "02",
        "actor": "12",
    }
    for bad, why in [
        ("01-01-06-02-01-02.mp4", "not a RAVDESS name"),
        ("01-01-09-01-01-01-01.mp4", "emotion 09"),
        ("01-01-01-02-01-01-01.mp4", "neutral has no strong intensity"),
        ("01-01-03-01-03-01-01.mp4", "statement 03"),
        ("01-01-03-01-01-01-25.mp4", "actor 25"),
        ("03-01-03-01-01-01-01.mp4", "modality and extension disagree"),
    ]:
        with pytest.raises(DataError, match=why):
            parse_ravdess_name(Path(bad))


def test_ravdess_index_and_pairs(tmp_path):
    actor = tmp_path / "Video_Speech" / "Actor_02"
    for emotion, intensity in (("01", "01"), ("05", "01"), ("05", "02"), ("07", "02")):
        for rep in ("01", "02"):
            touch(actor / f"01-01-{emotion}-{intensity}-01-{rep}-02.mp4")
            touch(actor / f"03-01-{emotion}-{intensity}-01-{rep}-02.wav")
    touch(actor / "01-02-05-01-01-01-02.mp4")  # song: skipped by default
    touch(actor / "01-01-05-01-01-01-03.mp4")  # actor field disagrees with the folder
    touch(actor / "readme.txt")
    clips, problems = index_ravdess(tmp_path)
    assert len(clips) == 8
    assert sorted(str(p).split("/")[-1] for p in problems) == [
        "01-01-05-01-01-01-03.mp4: actor field differs from folder Actor_02",
        "readme.txt: not a RAVDESS name (MM-VV-EE-II-SS-RR-AA.mp4 or .wav)",
    ]
    angry = next(
        c for c in clips if c.emotion == "angry" and c.intensity == 2 and c.sentence == "01-02"
    )
    assert angry.video.name == "01-01-05-02-01-02-02.mp4" and angry.audio.suffix == ".wav"
    pairs, pair_problems = pair_clips(clips, RAVDESS_RULE)
    assert sorted((p.emotion, p.key) for p in pairs) == [
        ("angry", "01-01_01-01"),
        ("angry", "01-02_01-02"),
        ("disgusted", "01-01_01-01"),
        ("disgusted", "01-02_01-02"),
    ]
    # calm, happy, ... are missing in this tree: reported per speaker and sentence
    assert all("no intensity-2 clip" in str(p) for p in pair_problems)


def test_clip_index_round_trip(tmp_path):
    make_mead(tmp_path / "MEAD")
    clips, _ = index_mead(tmp_path / "MEAD")
    path = write_clip_index(clips, tmp_path / "out" / "clips.csv")
    assert read_clip_index(path) == clips
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match=r"bad\.csv: not a clip index"):
        read_clip_index(bad)
    with pytest.raises(DataError, match="run `asccl data index` first"):
        read_clip_index(tmp_path / "none.csv")


def test_unreadable_folder_is_reported_and_skipped(tmp_path, monkeypatch):
    make_mead(tmp_path)
    locked = tmp_path / "M003/video/front/angry/level_3"
    real_iterdir = Path.iterdir

    def iterdir(self):
        if self == locked:
            raise PermissionError(13, "Permission denied")
        return real_iterdir(self)

    monkeypatch.setattr(Path, "iterdir", iterdir)  # root can read anything: simulate it
    clips, problems = index_mead(tmp_path)
    assert f"{locked}: unreadable folder (Permission denied)" in [str(p) for p in problems]
    assert any(c.clip_id == "W021/angry/level_3/001" and c.video for c in clips)
