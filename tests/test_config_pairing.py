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


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--pairing.neutral-intensity", "1"], "emotional_intensity 3 is not a RAVDESS"),
        (["--pairing.emotional-intensity", "2"], "sentences ['001', '002', '003']"),
        (["--pairing.emotions", '["contempt"]', "--pairing.emotional-intensity", "2",
          "--pairing.sentences", "[]", "--pairing.sentence-map", "{}"], "emotions ['contempt']"),
    ],
)  # fmt: skip
def test_a_ravdess_pairing_override_starting_from_meads_rule_is_refused(args, named):
    """``--pairing.*`` builds the rule from PairingRule's defaults, which are MEAD's: on
    RAVDESS one key alone used to pair with MEAD's intensity 3 and sentences 001-003
    (nothing found, or not what was meant). Refused, saying what to give."""
    with pytest.raises(ConfigError, match=r"pairing: ") as err:
        load_config(DataConfig, "configs/data/ravdess.toml", args)
    assert named in str(err.value) and "starts from MEAD's rule" in str(err.value)


def test_a_whole_ravdess_rule_is_accepted_and_the_default_is_untouched():
    args = ["--pairing.emotional-intensity", "2", "--pairing.sentences", '["01-01"]',
            "--pairing.sentence-map", "{}", "--pairing.emotions", '["calm", "fear"]']  # fmt: skip
    rule = load_config(DataConfig, "configs/data/ravdess.toml", args).rule()
    expected = (("calm", "fear"), ("01-01",), 2)
    assert (rule.emotions, rule.sentences, rule.emotional_intensity) == expected
    assert load_config(DataConfig, "configs/data/ravdess.toml", []).rule().sentence_map == {}
