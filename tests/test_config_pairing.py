"""The pairing rule's intensities are levels counted from 1 (MEAD 1-3, RAVDESS 1-2): 0 or
a negative level, which no clip has, is refused naming the key."""

from __future__ import annotations

import pytest

from asccl.config import ConfigError, load_config
from asccl.data.config import DataConfig


@pytest.mark.parametrize("key", ["neutral_intensity", "emotional_intensity"])
@pytest.mark.parametrize("value", ["0", "-1"])
def test_a_pairing_intensity_below_1_is_refused_naming_the_key(key, value):
    with pytest.raises(ConfigError, match=rf"pairing: {key} must be an integer >= 1") as err:
        load_config(DataConfig, "configs/data/ravdess.toml", [f"--pairing.{key}", value])
    assert "\n" not in str(err.value)


def test_level_1_and_3_are_accepted():
    args = ["--pairing.neutral-intensity", "1", "--pairing.emotional-intensity", "3"]
    rule = load_config(DataConfig, None, args).rule()
    assert (rule.neutral_intensity, rule.emotional_intensity) == (1, 3)
