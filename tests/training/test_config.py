"""``TrainConfig``: names become tuples, and a run saved when they were lists resumes."""

from __future__ import annotations

import re

import pytest

from asccl.config import ConfigError, load_config
from asccl.metric.config import MetricEvalConfig
from asccl.training.checkpoints import latest_checkpoint, save_checkpoint
from asccl.training.config import TrainConfig
from asccl.training.progress import Progress
from asccl.training.resume import check_resume


def test_names_become_tuples_and_bad_names_are_refused():
    config = TrainConfig(val_speakers=["W903", "W021"], emotions="angry")
    assert config.val_speakers == ("W903", "W021") and config.emotions == ("angry",)
    assert TrainConfig().emotions is None and TrainConfig().val_speakers == ("W021",)
    for changes, message in [
        ({"val_speakers": []}, "val_speakers is empty: name at least one held-out speaker, e.g."),
        ({"emotions": ()}, 'emotions is empty: name at least one emotion, e.g. ["angry"]'),
        ({"val_speakers": [""]}, "val_speakers must be a list of non-empty names"),
        ({"emotions": ["angry", 3]}, "emotions must be a list of non-empty names"),
        ({"val_speakers": None}, "val_speakers must be a list of non-empty names"),
    ]:
        with pytest.raises(ConfigError, match=re.escape(message)):
            TrainConfig(**changes)


def test_a_checkpoint_saved_with_list_names_resumes_with_tuple_names(tmp_path):
    """Before names were tuples, ``__post_init__`` kept the lists TOML gives: the settings
    saved then are the JSON text of lists, which is the text of today's tuples."""
    now = TrainConfig(data=tmp_path / "data", out=tmp_path, val_speakers=["W903"],
                      emotions=["angry", "sad"])  # fmt: skip
    earlier = TrainConfig(data=tmp_path / "data", out=tmp_path)
    for name, value in (("val_speakers", ["W903"]), ("emotions", ["angry", "sad"])):
        object.__setattr__(earlier, name, value)  # what the earlier check kept
    saved = earlier.run_settings()
    assert saved["val_speakers"] == '["W903"]' and saved["emotions"] == '["angry", "sad"]'
    save_checkpoint(tmp_path, Progress(step=3), models={}, optimizers={}, scalers={},
                    generators={}, settings=saved)  # fmt: skip
    checkpoint = latest_checkpoint(tmp_path)
    assert checkpoint is not None and checkpoint.settings == now.run_settings()
    check_resume(checkpoint.path, checkpoint.settings, now.run_settings(), 3, 10)  # no error
    with pytest.raises(ConfigError, match=r"val_speakers \["):  # a real change still refused
        other = TrainConfig(data=tmp_path / "data", out=tmp_path, val_speakers=["W021"],
                            emotions=["angry", "sad"])  # fmt: skip
        check_resume(checkpoint.path, checkpoint.settings, other.run_settings(), 3, 10)


@pytest.mark.parametrize("cls", [TrainConfig, MetricEvalConfig])
def test_an_empty_list_of_names_says_what_to_give_in_a_file_or_on_the_command_line(tmp_path, cls):
    """TOML's ``[]`` reaches the check as ``()``: the error says the list is empty and what
    to name, not ``got ()``; the same line from ``--val_speakers []``."""
    toml = tmp_path / "run.toml"
    for key in ("val_speakers", "emotions"):
        toml.write_text(f"{key} = []\n", encoding="utf-8")
        for path, overrides, where in ((toml, (), str(toml)),
                                       (None, (f"--{key}", "[]"), "command line")):  # fmt: skip
            with pytest.raises(ConfigError) as err:
                load_config(cls, path, overrides)
            message = str(err.value)
            assert message.startswith(f"{where}: {key} is empty: name at least one "), message
            assert "got" not in message and "\n" not in message, message
        assert getattr(load_config(cls, toml, [f"--{key}", "W903"]), key) == ("W903",)
