"""Study definition: item selection from a results folder, TOML round trip."""

from pathlib import Path

import pytest

from asccl.study.definition import (
    DEFAULT_QUESTIONS,
    Question,
    build_study,
    read_study_toml,
    write_study_toml,
)

EMOTIONS = ("neutral", "angry", "happy")


def make_results(root: Path, clips: int = 5, references: bool = True) -> Path:
    """Empty stand-in videos in the results layout (scan_results only reads names)."""
    for emotion in EMOTIONS:
        for i in range(clips):
            name = f"W901_{i:03d}.mp4"
            folders = ["baseline/inter_id", "asccl/inter_id", "sources"]
            folders += ["references/inter_id"] if references else []
            for folder in folders:
                path = root / folder / emotion / name
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(b"")
    return root


def test_build_study_selects_per_emotion_with_seed(tmp_path):
    root = make_results(tmp_path / "results")
    study = build_study(root, items_per_emotion=3, seed=1, attention_checks=2)
    regular = [i for i in study.items if not i.is_check]
    assert [i.emotion for i in regular].count("happy") == 3
    assert {i.emotion for i in regular} == set(EMOTIONS)
    assert all(i.methods == ("baseline", "asccl") for i in regular)
    item = regular[0]
    assert item.videos == (
        f"baseline/inter_id/{item.emotion}/{item.clip}.mp4",
        f"asccl/inter_id/{item.emotion}/{item.clip}.mp4",
    )
    assert (root / item.videos[0]).is_file() and item.reference is not None
    checks = study.attention_checks
    assert len(checks) == 2
    assert all(q == "emotion" and m == "references" for q, m in checks.values())
    assert all(not k.startswith("check/neutral") for k in checks)
    assert study.question_ids == ["realism", "emotion", "mouth"]
    # same seed, same items; another seed draws others
    assert build_study(root, items_per_emotion=3, seed=1).items == study.items
    others = {build_study(root, items_per_emotion=3, seed=s).items for s in range(2, 8)}
    assert any(o != study.items for o in others)


def test_build_study_takes_all_when_fewer(tmp_path):
    root = make_results(tmp_path / "r", clips=2)
    study = build_study(root, items_per_emotion=10, attention_checks=0)
    assert len(study.items) == 2 * len(EMOTIONS)


def test_build_study_errors(tmp_path):
    root = make_results(tmp_path / "r", clips=2, references=False)
    with pytest.raises(ValueError, match="no results for method 'dsm'"):
        build_study(root, methods=("dsm", "asccl"))
    with pytest.raises(ValueError, match="attention checks"):
        build_study(root, attention_checks=1)
    with pytest.raises(ValueError, match="two different"):
        build_study(root, methods=("asccl", "asccl"))


def test_toml_round_trip(tmp_path):
    root = make_results(tmp_path / "r")
    questions = (*DEFAULT_QUESTIONS[:2], Question("mouth", 'Lips "in sync"?\nPick one'))
    study = build_study(root, items_per_emotion=2, seed=3, questions=questions)
    path = write_study_toml(study, tmp_path / "study.toml")
    assert read_study_toml(path) == study


def test_toml_unknown_keys_are_errors(tmp_path):
    study = build_study(make_results(tmp_path / "r"), items_per_emotion=1)
    path = write_study_toml(study, tmp_path / "study.toml")
    text = path.read_text()
    path.write_text("colour = 'red'\n" + text)
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['colour'\]"):
        read_study_toml(path)
    path.write_text(text.replace("[[items]]\n", "[[items]]\nweight = 2\n", 1))
    with pytest.raises(ValueError, match=r"\['weight'\] in \[\[items\]\]"):
        read_study_toml(path)
    path.write_text(text.replace('check_question = "emotion"', 'check_question = "fun"'))
    with pytest.raises(ValueError, match="check_question"):
        read_study_toml(path)


def test_default_questions_are_the_seeds_three():
    # realism; emotion like the reference's; mouth shapes like the source's (speech kept)
    prompts = {q.id: q.prompt for q in DEFAULT_QUESTIONS}
    assert list(prompts) == ["realism", "emotion", "mouth"]
    assert "reference" in prompts["emotion"] and "source" in prompts["mouth"]
