"""``study create`` when the two methods have different clips: what is left out is said and
recorded, never dropped silently (the audit's case: angry vanished, happy got 1 of 3)."""

from __future__ import annotations

from pathlib import Path

import pytest

from asccl.cli import main
from asccl.study.commands import create
from asccl.study.definition import read_study_toml

#: the audit's results: baseline has happy c0-c3, sad c0-c2, angry c0; asccl happy c0, sad c0-c2
UNEVEN = {
    "baseline": {"happy": ["c0", "c1", "c2", "c3"], "sad": ["c0", "c1", "c2"], "angry": ["c0"]},
    "asccl": {"happy": ["c0"], "sad": ["c0", "c1", "c2"]},
}


def make_results(root: Path, have: dict[str, dict[str, list[str]]]) -> Path:
    """Empty stand-in videos (scan_results and create read names only), each clip with a
    source and a reference so it can make an attention check."""
    for method, emotions in have.items():
        for emotion, names in emotions.items():
            for name in names:
                for folder in (f"{method}/inter_id", "sources", "references/inter_id"):
                    path = root / folder / emotion / f"{name}.mp4"
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(b"")
    return root


def test_uneven_clip_sets_are_printed_and_recorded(tmp_path, capsys):
    root = make_results(tmp_path / "results", UNEVEN)
    toml = create(root, tmp_path / "study.toml", methods=("baseline", "asccl"),
                  items_per_emotion=3, attention_checks=1)  # fmt: skip
    out = capsys.readouterr().out.splitlines()
    # items: happy 1 (the only shared clip), sad 3, angry 0; the checks come from shared clips
    assert "4 items + 1 attention checks" in out[0]
    assert out[1:] == [
        "  angry: baseline 1 clip, asccl 0: no clip that every method has: left out; "
        "not in asccl (1, left out): c0",
        "  happy: baseline 4 clips, asccl 1, shared 1, drawn 1 (fewer than the 3 asked: "
        "only 1 shared); not in asccl (3, left out): c1, c2, c3",
        "  sad: baseline 3 clips, asccl 3, shared 3, drawn 3",
    ]
    study = read_study_toml(toml)
    regular = [i.id for i in study.items if not i.is_check]
    assert regular == ["happy/c0", "sad/c0", "sad/c1", "sad/c2"]
    recorded = {s.emotion: (s.clips, s.shared, s.drawn, s.missing) for s in study.selection}
    assert recorded == {
        "angry": ((1, 0), 0, 0, ((), ("c0",))),
        "happy": ((4, 1), 1, 1, ((), ("c1", "c2", "c3"))),
        "sad": ((3, 3), 3, 3, ((), ())),
    }
    # the counts add up: each method's clips = shared + the ones the other lacks
    for s in study.selection:
        assert s.clips == (s.shared + len(s.missing[1]), s.shared + len(s.missing[0]))


def test_a_long_left_out_list_is_cut_and_points_to_the_definition(tmp_path, capsys):
    from asccl.study.definition import MAX_NAMES_SHOWN

    names = [f"c{i}" for i in range(MAX_NAMES_SHOWN + 3)]  # 3 beyond what a line shows
    have = {"baseline": {"happy": names}, "asccl": {"happy": names[:1]}}
    toml = create(make_results(tmp_path / "r", have), tmp_path / "study.toml",
                  methods=("baseline", "asccl"), items_per_emotion=1,
                  attention_checks=0)  # fmt: skip
    line = capsys.readouterr().out.splitlines()[1]
    left = len(names) - 1
    shown = ", ".join(names[1 : 1 + MAX_NAMES_SHOWN])
    assert line.endswith(
        f"not in asccl ({left}, left out): {shown} and {left - MAX_NAMES_SHOWN} more "
        f"(all in {toml} [[selection]])"
    )
    assert read_study_toml(toml).selection[0].missing == ((), tuple(names[1:]))


def test_no_emotion_with_a_shared_clip_is_a_one_line_error(tmp_path, capsys):
    have = {"baseline": {"happy": ["c0"], "sad": ["c1"]}, "asccl": {"happy": ["c9"]}}
    root = make_results(tmp_path / "r", have)
    study = tmp_path / "s" / "study.toml"
    argv = ["study", "create", "--results", str(root), "--study", str(study),
            "--methods", "baseline", "asccl", "--attention-checks", "0"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("asccl: error: ")
    assert "baseline and asccl share no clip in setting 'inter_id', in no emotion" in err[0]
    assert "happy: 1 and 1, sad: 1 and 0" in err[0]
    assert not study.parent.exists()  # nothing written


def test_a_study_file_without_selection_still_loads(tmp_path):
    from asccl.study.definition import build_study, describe_selection, write_study_toml

    study = build_study(make_results(tmp_path / "r", UNEVEN), items_per_emotion=2)
    text = write_study_toml(study, tmp_path / "study.toml").read_text()
    old = text[: text.index("\n[[selection]]")] + "\n"  # as written before it was recorded
    (tmp_path / "old.toml").write_text(old)
    loaded = read_study_toml(tmp_path / "old.toml")
    assert loaded.selection == () and loaded.items == study.items
    assert describe_selection(loaded) == []
    assert read_study_toml(tmp_path / "study.toml") == study  # and the new one round-trips


@pytest.mark.parametrize(
    "edit",
    [
        ("drawn = 1\n", "drawn = 2\n"),  # more drawn than shared
        ("clips = [4, 1]", "clips = [4, -1]"),
        ('missing = [[], ["c1", "c2", "c3"]]', 'missing = [[], ["c1"]]'),  # 3 not in asccl
        ("clips = [4, 1]", "clips = 4"),
    ],
)
def test_a_selection_that_does_not_add_up_is_refused(tmp_path, edit):
    from asccl.study.definition import build_study, write_study_toml

    study = build_study(make_results(tmp_path / "r", UNEVEN), items_per_emotion=3)
    path = write_study_toml(study, tmp_path / "study.toml")
    text = path.read_text()
    happy = text.index('emotion = "happy"\nclips')
    path.write_text(text[:happy] + text[happy:].replace(*edit, 1))
    with pytest.raises(ValueError, match=r"\[\[selection\]\]"):
        read_study_toml(path)
