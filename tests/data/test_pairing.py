"""MEAD's two disgusted numberings, resolved per speaker from disk, and ``--preset authors``
(the authors' clip-pair list), checked against a re-creation of the authors' script's rule."""

from __future__ import annotations

import json
import os
import re
import wave
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from asccl.cli import main
from asccl.config import ConfigError, load_config
from asccl.data.clip_index import write_clip_index
from asccl.data.mead import index_mead
from asccl.data.pairing import (
    AUTHORS_SPEAKERS,
    MEAD_RULE,
    PairingRule,
    numbering_notes,
    pair_clips,
    resolve_numbering,
)
from asccl.data.prepare import DataConfig

SIX = ("angry", "disgusted", "fear", "happy", "sad", "surprised")
IDS = [f"{n:03d}" for n in range(1, 31)]
#: speaker -> the sentence ids of its disgusted/level_3 folder. M035 and W025 (authors'
#: speakers) hold 028-030 (M035 001-030, as a full folder would); W021 and M007 (authors')
#: only 001-027 / 001-003; M003 is not one of the authors' 36.
DISGUSTED = {
    "M035": IDS,
    "W025": ["028", "029", "030"],
    "W021": IDS[:27],
    "M007": IDS[:3],
    "M003": ["028", "029", "030"],
}


def put(path: Path, content: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)


def wav_bytes(seconds: float, hz: float, rate: int = 16000) -> bytes:
    """A mono 16-bit WAV tone (PyAV reads it whatever the file's extension)."""
    import io

    t = np.arange(round(seconds * rate)) / rate
    samples = (3000 * np.sin(2 * np.pi * hz * t) * (1 + t)).astype(np.int16)
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes(samples.tobytes())
    return buffer.getvalue()


def make_tree(root: Path, speakers=tuple(DISGUSTED), audio: bytes = b"x") -> None:
    """MEAD's layout with empty videos: neutral level_1 001-004, six emotions and contempt
    at level_3 (disgusted numbered as :data:`DISGUSTED` says), angry also at level_1."""
    for speaker in speakers:
        folders = [("neutral", 1, IDS[:4]), ("angry", 1, IDS[:3]), ("contempt", 3, IDS[:3])]
        folders += [(e, 3, DISGUSTED[speaker] if e == "disgusted" else IDS[:3]) for e in SIX]
        for emotion, level, ids in folders:
            for sentence in ids:
                put(root / speaker / f"video/front/{emotion}/level_{level}/{sentence}.mp4", b"")
                put(root / speaker / f"audio/{emotion}/level_{level}/{sentence}.m4a", audio)


def authors_script_pairs(root: Path) -> set[tuple[str, str, str]]:
    """(speaker, emotion, key) as the authors' ``scmc/align_by_audios.py`` chooses them,
    re-created from its logic: for each of its 36 actors and each emotion, disgusted is
    numbered 028-030 when ``video/front/disgusted/level_3/030.mp4`` exists, any emotion
    001-003 when its ``001.mp4`` exists, else nothing; neutral is level_1, the others
    level_3; a pair needs the emotional video and both audio files."""
    found = set()
    for actor in AUTHORS_SPEAKERS:
        level = {e: 1 if e == "neutral" else 3 for e in ("neutral", *SIX)}
        chosen = {}
        for emotion, lvl in level.items():
            folder = root / actor / "video/front" / emotion / f"level_{lvl}"
            if emotion == "disgusted" and os.path.exists(folder / "030.mp4"):
                chosen[emotion] = ["028", "029", "030"]
            elif os.path.exists(folder / "001.mp4"):
                chosen[emotion] = ["001", "002", "003"]
            else:
                chosen[emotion] = []
        for emotion in SIX:
            for i, name2 in enumerate(chosen[emotion]):
                video = root / actor / "video/front" / emotion / f"level_3/{name2}.mp4"
                name1 = chosen["neutral"][i]
                audio1 = root / actor / "audio/neutral/level_1" / f"{name1}.m4a"
                audio2 = root / actor / "audio" / emotion / f"level_3/{name2}.m4a"
                if video.exists() and audio1.exists() and audio2.exists():
                    found.add((actor, emotion, f"{name1}_{name2}"))
    return found


def keys(pairs) -> set[tuple[str, str, str]]:
    return {(p.speaker, p.emotion, p.key) for p in pairs}


def test_each_speaker_is_paired_with_its_own_disgusted_numbering(tmp_path):
    make_tree(tmp_path)
    clips, problems = index_mead(tmp_path)
    assert problems == []
    pairs, missing = pair_clips(clips, MEAD_RULE)
    assert missing == []  # the old fixed map found no W021/M007 028-030: 6 partners missing
    disgusted = {(s, k) for s, e, k in keys(pairs) if e == "disgusted"}
    assert disgusted == {
        (s, k)
        for s, new in [("M035", 1), ("W025", 1), ("M003", 1), ("W021", 0), ("M007", 0)]
        for k in (("001_028", "002_029", "003_030") if new else ("001_001", "002_002", "003_003"))
    }
    assert len(pairs) == 5 * 6 * 3  # every speaker, six emotions, three sentences
    assert {p.emotional.intensity for p in pairs} == {3} and {
        p.neutral.intensity for p in pairs
    } == {1}


def test_the_numbering_choice_is_reported_per_speaker(tmp_path):
    make_tree(tmp_path)
    clips, _ = index_mead(tmp_path)
    choices = {n.speaker: n for n in resolve_numbering(clips, MEAD_RULE)}
    assert set(choices) == set(DISGUSTED) and {n.emotion for n in choices.values()} == {"disgusted"}
    assert choices["M035"].mapping == {"001": "028", "002": "029", "003": "030"}
    assert choices["M035"].mapped and choices["M035"].reason == "030 on disk"
    assert choices["W021"].mapping == {"001": "001", "002": "002", "003": "003"}
    assert not choices["W021"].mapped and choices["W021"].reason == "no 030 on disk"
    assert choices["W021"].describe() == (
        "W021/disgusted: 001->001, 002->002, 003->003 (no 030 on disk)"
    )
    assert numbering_notes(list(choices.values())) == [
        "disgusted: emotional sentences 001-003 (no 030 on disk) for 2 speakers: M007, W021",
        "disgusted: emotional sentences 028-030 (030 on disk) for 3 speakers: M003, M035, W025",
    ]
    # the old behaviour stays available: the rule's map for everyone
    fixed = replace(MEAD_RULE, numbering_on_disk=False)
    pairs, missing = pair_clips(clips, fixed)
    assert ("W021", "disgusted", "001_028") not in keys(pairs)
    assert len(missing) == 2 * 3  # W021 and M007 have no 028-030


def test_only_an_audio_030_does_not_count_as_the_new_numbering(tmp_path):
    """As the authors' script: the numbering is read from the videos."""
    make_tree(tmp_path, speakers=("W021",))
    put(tmp_path / "W021/audio/disgusted/level_3/030.m4a", b"x")
    clips, _ = index_mead(tmp_path)
    (choice,) = resolve_numbering(clips, MEAD_RULE)
    assert not choice.mapped
    assert ("W021", "disgusted", "001_001") in keys(pair_clips(clips, MEAD_RULE)[0])


def test_preset_authors_gives_the_authors_clip_pair_list(tmp_path):
    make_tree(tmp_path)
    config = load_config(DataConfig, None, ["--preset", "authors", "--root", str(tmp_path)])
    assert config.preset == "authors" and config.index_speakers() == list(AUTHORS_SPEAKERS)
    clips, _ = index_mead(tmp_path, speakers=config.index_speakers())
    pairs, _ = pair_clips(clips, config.rule())
    expected = authors_script_pairs(tmp_path)
    assert len(expected) == 4 * 6 * 3  # M003 is not one of their speakers
    assert keys(pairs) == expected
    assert len(pairs) == len(expected)  # no duplicates
    # the default rule pairs every speaker; the preset only theirs
    default = keys(pair_clips(clips + index_mead(tmp_path, speakers=["M003"])[0], MEAD_RULE)[0])
    assert default - expected == {k for k in default if k[0] == "M003"} != set()


def test_preset_authors_from_toml_and_its_checks(tmp_path):
    toml = tmp_path / "authors.toml"
    toml.write_text('dataset = "mead"\npreset = "authors"\nspeakers = ["W021", "M007"]\n')
    config = load_config(DataConfig, toml)
    assert config.rule().speakers == ("W021", "M007") and config.index_speakers() == [
        "W021",
        "M007",
    ]
    for overrides, message in [
        (["--preset", "theirs"], "preset must be one of ['authors'], got 'theirs'"),
        (["--preset", "authors", "--dataset", "ravdess"], "preset: 'authors' is for dataset"),
        (["--preset", "authors", "--speakers", '["M003"]'], "speakers: M003 not among preset"),
        (["--preset", "authors", "--pairing.sentences", '["001"]'], "pairing: preset 'authors'"),
    ]:
        with pytest.raises(ConfigError, match=re.escape(message)):
            load_config(DataConfig, None, overrides)
    assert DataConfig().rule() is MEAD_RULE and DataConfig().index_speakers() is None


def test_cli_pairs_preset_authors_writes_the_authors_pairs(tmp_path, capsys):
    """``asccl data pairs --preset authors`` end to end: real (tiny) audio, videos only as
    frame counts in clips.csv; the merged authors' JSON holds exactly their clip pairs."""
    root, out = tmp_path / "MEAD", tmp_path / "out"
    make_tree(root, speakers=("W025", "M007", "M003"), audio=wav_bytes(0.4, 300))
    clips, _ = index_mead(root)
    clips = [replace(c, fps=30.0, num_frames=12) for c in clips]
    write_clip_index(clips, out / "clips.csv")
    args = ["data", "pairs", "--preset", "authors", "--root", str(root), "--out", str(out),
            "--workers", "0"]  # fmt: skip
    assert main(args) == 0
    report = capsys.readouterr().out
    assert "disgusted: emotional sentences 001-003 (no 030 on disk) for 1 speaker: M007" in report
    assert "disgusted: emotional sentences 028-030 (030 on disk) for 1 speaker: W025" in report
    assert "34 of the rule's 36 speakers have no clips in clips.csv" in report
    tree = json.loads((out / "aligned_pairs.json").read_text())
    written = {(s, e, k) for s, emotions in tree.items() for e, ks in emotions.items() for k in ks}
    assert written == authors_script_pairs(root)
    assert len(written) == 2 * 6 * 3 and "M003" not in tree
    assert set(tree["M007"]["disgusted"]) == {"001_001", "002_002", "003_003"}
    assert set(tree["W025"]["disgusted"]) == {"001_028", "002_029", "003_030"}


def test_a_rule_without_a_map_is_unchanged(tmp_path):
    make_tree(tmp_path, speakers=("W021",))
    clips, _ = index_mead(tmp_path)
    rule = PairingRule(emotions=("angry",), sentence_map={})
    assert resolve_numbering(clips, rule) == []
    assert keys(pair_clips(clips, rule)[0]) == {("W021", "angry", f"{s}_{s}") for s in IDS[:3]}


def test_a_030_left_out_of_the_index_still_shows_the_numbering(tmp_path):
    """A video that failed its probe is not in clips.csv, but its folder is numbered so."""
    make_tree(tmp_path, speakers=("W025",))
    clips, _ = index_mead(tmp_path)
    kept = [c for c in clips if c.clip_id != "W025/disgusted/level_3/030"]
    (choice,) = resolve_numbering(kept, MEAD_RULE)
    assert choice.mapped and choice.reason == "030 on disk"
    (tmp_path / "W025/video/front/disgusted/level_3/030.mp4").unlink()
    (choice,) = resolve_numbering(kept, MEAD_RULE)
    assert not choice.mapped


def test_the_bundled_authors_config_is_the_preset():
    config = load_config(DataConfig, Path(__file__).parents[2] / "configs/data/authors.toml")
    assert (config.preset, config.features) == ("authors", "mfcc_psf")
    assert config.rule().speakers == AUTHORS_SPEAKERS and len(set(AUTHORS_SPEAKERS)) == 36
