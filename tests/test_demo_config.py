"""``asccl demo``'s backbone/image_size build only the random-weights metric: with stage 2
(``train``) or a checkpoint they are unused, so a value that would be ignored is refused
naming the key to set."""

from __future__ import annotations

import pytest

from asccl.config import ConfigError, load_config
from asccl.demo import DemoConfig

DEMO = "configs/demo.toml"  # sets train = configs/metric/demo.toml (iresnet18, 112)


@pytest.mark.parametrize(
    ("args", "key"),
    [(["--backbone", "iresnet50"], "backbone"), (["--image-size", "224"], "image_size")],
)
def test_a_metric_key_stage_2_ignores_is_refused_naming_train_metric(args, key):
    flag = "--train.metric." + key.replace("_", "-")
    with pytest.raises(ConfigError, match=rf"{key} = .* is not used: .* set {flag}") as err:
        load_config(DemoConfig, DEMO, args)
    assert "\n" not in str(err.value)


def test_a_metric_key_is_refused_with_a_checkpoint():
    args = ["--checkpoint", "metric.safetensors", "--backbone", "iresnet50"]
    with pytest.raises(ConfigError, match="the checkpoint holds its metric's backbone"):
        load_config(DemoConfig, DEMO, args)


def test_the_metric_keys_are_accepted_where_they_are_used_or_agree():
    # train.metric's own key: the demo's top-level value stays the (unused) default
    config = load_config(DemoConfig, DEMO, ["--train.metric.backbone", "iresnet50"])
    assert config.train.metric.backbone == "iresnet50"
    both = ["--backbone", "iresnet50", "--train.metric.backbone", "iresnet50"]
    assert load_config(DemoConfig, DEMO, both).backbone == "iresnet50"
    # no train, no checkpoint: the random-weights metric is built with them
    config = load_config(DemoConfig, None, ["--backbone", "iresnet50", "--image-size", "224"])
    assert config.train is None and (config.backbone, config.image_size) == ("iresnet50", 224)
