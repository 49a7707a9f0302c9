"""``TrainConfig``: names become tuples, and a run saved when they were lists resumes."""

from __future__ import annotations

import re

import pytest

from asccl.config import ConfigError
from asccl.training.checkpoints import latest_checkpoint, save_checkpoint
from asccl.training.config import TrainConfig
from asccl.training.progress import Progress
from asccl.training.resume import check_resume


def test_names_become_tuples_and_bad_names_are_refused():
    config = TrainConfig(val_speakers=["W903", "W021"], emotions="angry")
    assert config.val_speakers == ("W903", "W021") and config.emotions == ("angry",)
    assert TrainConfig().emotions is None and TrainConfig().val_speakers == ("W021",)
    for changes, message in [
        ({"val_speakers": []}, "val_speakers must name at least one, got []"),
        ({"emotions": ()}, "emotions must name at least one, got ()"),
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
