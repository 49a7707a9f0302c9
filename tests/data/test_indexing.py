import os
from dataclasses import replace
from pathlib import Path

import pytest
from tests.data.builders import write_grey_video, write_wav

from asccl.data.clip_index import (
    FPS_RANGE,
    MIN_DURATION_S,
    duration_tolerance,
    probe_clip,
    read_clip_index,
    write_clip_index,
)
from asccl.data.clips import Clip
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


def test_a_clip_index_saved_with_a_byte_order_mark_reads_the_same(tmp_path):
    """Excel's UTF-8 CSV starts with a byte order mark, which used to glue onto the first
    column's name ("not a clip index")."""
    make_mead(tmp_path / "MEAD")
    clips, _ = index_mead(tmp_path / "MEAD")
    path = write_clip_index(clips, tmp_path / "clips.csv")
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert read_clip_index(path) == clips


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


# ----------------------------------------------------------------------------- media checks


def write_clip(folder: Path, frames: int, fps: float, audio_s: float | None) -> Clip:
    """A 32x32 clip of ``frames`` frames at ``fps`` and (unless None) ``audio_s`` of sound."""
    video = write_grey_video(folder / "clip.mp4", frames, fps)
    audio = None if audio_s is None else write_wav(folder / "clip.wav", audio_s)
    return Clip("mead", "M003", "angry", 3, "001", "M003/angry/level_3/001", video, audio)


def test_a_clip_whose_video_matches_its_audio_is_indexed_with_its_rate_and_count(tmp_path):
    clip = probe_clip(write_clip(tmp_path, 30, 30, 1.0))
    assert (clip.fps, clip.num_frames) == (30.0, 30)
    ntsc = probe_clip(write_clip(tmp_path / "ntsc", 30, 30000 / 1001, 30 * 1001 / 30000))
    assert ntsc.fps == pytest.approx(29.97, abs=0.01)  # RAVDESS's rate
    no_audio = probe_clip(write_clip(tmp_path / "mute", 30, 30, None))
    assert no_audio.num_frames == 30  # video checks only; the indexer reports the missing file


def test_duration_tolerance_is_two_frames_and_the_aac_slack():
    assert duration_tolerance(30) == pytest.approx(2 / 30 + 0.07)
    assert (2112 + 1024) / 48000 <= 0.07  # AAC delay + last-frame padding at 48 kHz
    assert duration_tolerance(30) < 5 / 30  # a couple of frames, not a different take


@pytest.mark.parametrize("sign", [1, -1])
def test_lengths_are_compared_to_the_tolerance(tmp_path, sign):
    """1 s of video; audio 10 ms inside the tolerance passes, 10 ms outside fails."""
    tolerance = duration_tolerance(30)
    inside = write_clip(tmp_path / "in", 30, 30, 1.0 + sign * (tolerance - 0.01))
    assert probe_clip(inside).num_frames == 30
    outside = write_clip(tmp_path / "out", 30, 30, 1.0 + sign * (tolerance + 0.01))
    with pytest.raises(DataError, match="shorter than its audio" if sign > 0 else "longer than"):
        probe_clip(outside)


@pytest.mark.parametrize(
    ("frames", "fps", "audio_s", "fault", "problem"),
    [
        (13, 12.5, 1.04, "video", r"frame rate 12\.5 fps outside 20-60 fps"),
        (600, 1000, 0.6, "video", r"frame rate 1000 fps outside 20-60 fps"),
        (1, 30, 1 / 30, "video", r"video too short: 1 frame\(s\) at 30 fps = 0\.033 s"),
        (1, 30, 3.0, "video", r"video too short: 1 frame"),
        (30, 30, 2.0, "video", r"video 1\.000 s \(30 frames at 30 fps\) is shorter than its "
                               r"audio .*clip\.wav \(2\.000 s\) by 1\.000 s, more than the "
                               r"0\.137 s allowed"),
        (60, 30, 1.0, "video", r"video 2\.000 s .* is longer than its audio .* by 1\.000 s"),
        (30, 30, 0.0, "audio", r"audio track is empty \(0 s of sound\)"),
    ],
)  # fmt: skip
def test_bad_clips_are_refused_naming_the_file(tmp_path, frames, fps, audio_s, fault, problem):
    clip = write_clip(tmp_path, frames, fps, audio_s)
    with pytest.raises(DataError, match=problem) as info:
        probe_clip(clip)
    assert info.value.path == str(getattr(clip, fault))
    assert "\n" not in str(info.value)


def test_the_rules_hold_the_datasets_rates():
    low, high = FPS_RANGE
    assert low <= 30000 / 1001 <= 30 <= high  # RAVDESS, MEAD
    assert not low <= 12.5 <= high and not low <= 1000 <= high
    assert MIN_DURATION_S * 30 == 15  # frames of the shortest clip at MEAD's rate


def test_unreadable_audio_is_refused_naming_it(tmp_path):
    clip = write_clip(tmp_path, 30, 30, 1.0)
    clip.audio.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(DataError, match="cannot open as an audio") as info:
        probe_clip(clip)
    assert info.value.path == str(clip.audio)


# ----------------------------------------------------------------------------- non-UTF-8 names


def bad(path: Path, name: bytes) -> Path:
    """``path / name`` where ``name`` holds bytes that are not UTF-8."""
    return path / os.fsdecode(name)


def test_mead_names_that_are_not_utf8_are_reported_with_escapes(tmp_path):
    make_mead(tmp_path)
    touch(bad(tmp_path / "M003/video/front/angry/level_3", b"\xff01.mp4"))
    touch(bad(tmp_path, b"W\xff21") / "video/front/angry/level_3/001.mp4")
    touch(bad(tmp_path / "M003/audio", b"ang\xe9ry") / "level_3/001.m4a")  # Latin-1 é
    touch(bad(tmp_path / "M003/audio/angry", b"level_\xff") / "001.m4a")
    clips, problems = index_mead(tmp_path)
    assert len(clips) == 2 * 9  # the good clips, all of them
    messages = sorted(str(p) for p in problems)
    assert len(messages) == 4
    assert all("name is not valid UTF-8" in m for m in messages)
    assert f"{tmp_path}/M003/video/front/angry/level_3/\\xff01.mp4: name" in " ".join(messages)
    assert any("M003/audio/ang\\xe9ry: name" in m for m in messages)
    for message in messages:
        message.encode("utf-8")  # printable, and writable to a UTF-8 log
    path = write_clip_index(clips, tmp_path / "out" / "clips.csv")
    assert read_clip_index(path) == clips


def test_a_root_that_is_not_utf8_is_refused_in_one_line(tmp_path):
    root = bad(tmp_path, b"caf\xe9")
    make_mead(root)
    with pytest.raises(DataError, match=r"caf\\xe9: MEAD root is not valid UTF-8") as info:
        index_mead(root)
    assert "\n" not in str(info.value)
    (root / "Actor_01").mkdir()
    with pytest.raises(DataError, match=r"caf\\xe9: RAVDESS root is not valid UTF-8"):
        index_ravdess(root)


def test_ravdess_folders_and_files_that_are_not_utf8_are_reported(tmp_path):
    good = tmp_path / "Actor_02"
    touch(good / "01-01-01-01-01-01-02.mp4")
    touch(bad(good, b"01-01-01-01-01-02-02\xff.mp4"))
    touch(bad(tmp_path, b"Video\xff") / "Actor_03" / "01-01-01-01-01-01-03.mp4")
    clips, problems = index_ravdess(tmp_path)
    assert [c.speaker for c in clips] == ["Actor_02"]
    messages = sorted(str(p) for p in problems)
    assert messages == [
        f"{tmp_path}/Actor_02/01-01-01-01-01-02-02\\xff.mp4: name is not valid UTF-8 (bytes "
        "shown as \\xNN): rename it, or reach it through a symlink with a UTF-8 name",
        f"{tmp_path}/Video\\xff/Actor_03: folder path is not valid UTF-8 (bytes shown as "
        "\\xNN): rename it, or reach it through a symlink with a UTF-8 name",
    ]


def test_clip_index_refuses_paths_it_cannot_write_as_utf8(tmp_path):
    clip = Clip("mead", "M003", "angry", 3, "001", "M003/angry/level_3/001",
                video=bad(tmp_path, b"\xff.mp4"))  # fmt: skip
    target = tmp_path / "out" / "clips.csv"
    with pytest.raises(DataError, match=r"\\xff\.mp4: path is not valid UTF-8"):
        write_clip_index([clip], target)
    assert not target.parent.exists()  # refused before anything is written
    target.parent.mkdir()
    target.write_bytes(b"dataset,speaker\n\xff\xfe\n")
    with pytest.raises(DataError, match="not UTF-8 text"):
        read_clip_index(target)
    good = replace(clip, video=tmp_path / "caf\u00e9.mp4")  # UTF-8 names go through
    assert read_clip_index(write_clip_index([good], target)) == [good]


MEAD_LAYOUT = "expected <root>/<speaker>/video/front/<emotion>/level_<n>/<NNN>.mp4"


def test_data_prepare_on_an_empty_root_is_one_line_with_the_layout(tmp_path, capsys):
    """Not "0 clips of 0 speakers" and exit 0: what was expected, where, with an example."""
    from asccl.cli import main

    root, out = tmp_path / "empty", tmp_path / "out"
    root.mkdir()
    assert main(["data", "prepare", "--root", str(root), "--out", str(out)]) == 2
    captured = capsys.readouterr()
    [line] = captured.err.splitlines()
    assert line.startswith(f"asccl: error: {root}: no MEAD clips: the folder is empty; ")
    assert MEAD_LAYOUT in line and f"e.g. {root}/M003/video/front/angry/level_1/001.mp4" in line
    assert not out.exists()  # nothing written
    args = ["data", "index", "--dataset", "ravdess", "--root", str(root), "--out", str(out)]
    assert main(args) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert "no RAVDESS recordings: the folder is empty; expected <root>/Actor_NN/" in line
    assert f"e.g. {root}/Actor_01/01-01-03-01-01-01-01.mp4" in line


def test_a_mead_root_a_level_too_high_or_too_low_is_named(tmp_path):
    make_mead(tmp_path / "data" / "MEAD")
    high, right = tmp_path / "data", tmp_path / "data" / "MEAD"
    with pytest.raises(DataError) as error:
        index_mead(high)
    message = str(error.value)
    assert f"the speaker folders are one level down, in {right}: give that as the root" in message
    assert MEAD_LAYOUT in message and f"e.g. {right}/M003/video/front/" in message
    with pytest.raises(DataError, match="the speaker folders are 2 levels down"):
        index_mead(tmp_path)
    for low, what in ((right / "M003", "is one speaker's folder"),
                      (right / "W021/video/front/angry", "is inside W021")):  # fmt: skip
        with pytest.raises(DataError) as error:
            index_mead(low)
        assert f"{low} {what} (the root is too low): give the folder holding the speaker " \
               f"folders, {right}" in str(error.value)  # fmt: skip
    with pytest.raises(DataError, match=r"none of the speakers asked for \(M999\) is here "
                                        r"\(found: M003, W021\)"):  # fmt: skip
        index_mead(right, speakers=["M999"])
    assert len(index_mead(right)[0]) == 2 * 9  # the right root: every clip


def test_speaker_folders_without_clips_name_the_first_problem(tmp_path):
    touch(tmp_path / "M003/video/front/angri/level_1/001.mp4")
    with pytest.raises(DataError) as error:
        index_mead(tmp_path)
    message = str(error.value)
    assert "speaker folders found, but no clip in them (first problem: " in message
    assert "angri: unknown MEAD emotion" in message and "\n" not in message


def test_a_ravdess_root_that_is_one_actors_folder_is_named(tmp_path):
    actor = tmp_path / "Actor_01"
    touch(actor / "01-01-03-01-01-01-01.mp4")
    with pytest.raises(DataError) as error:
        index_ravdess(actor)
    assert f"{actor} holds recordings itself (the root is too low): give the folder holding " \
           f"the Actor_NN folders, {tmp_path}" in str(error.value)  # fmt: skip
    assert [c.speaker for c in index_ravdess(tmp_path)[0]] == ["Actor_01"]
    touch(tmp_path / "notes" / "readme.txt")
    with pytest.raises(DataError, match="no Actor_NN folder at the top level or below"):
        index_ravdess(tmp_path / "notes")


def test_a_ravdess_speakers_filter_keeps_its_actors_and_names_a_miss(tmp_path):
    for actor in ("01", "02"):
        touch(tmp_path / f"Actor_{actor}" / f"01-01-03-01-01-01-{actor}.mp4")
    clips, _ = index_ravdess(tmp_path, speakers=["Actor_02"])
    assert [c.speaker for c in clips] == ["Actor_02"]
    with pytest.raises(DataError) as error:
        index_ravdess(tmp_path, speakers=["Actor_24", "Actor_99"])
    assert str(error.value) == (
        f"{tmp_path}: none of the speakers asked for (Actor_24, Actor_99) has recordings "
        "here (found: Actor_01, Actor_02)"
    )
