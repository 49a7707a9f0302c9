"""SPFEMTrainConfig's model tables: loss weights, widths and depths checked naming the key;
a table's own image_size, never used, refused when it differs from the run's."""

from __future__ import annotations

import pytest

from asccl.config import ConfigError, load_config
from asccl.spfem.config import SPFEMTrainConfig


@pytest.mark.parametrize(
    ("key", "value", "problem"),
    [("ganmut.lambda_gp", "nan", "a finite number >= 0"),
     ("ganmut.lambda_cycle", "-10", "a finite number >= 0"),
     ("ganmut.lambda_cls", "inf", "a finite number >= 0"),
     ("ganmut.lambda_paired", "-inf", "a finite number >= 0"),
     ("ganmut.point_noise", "-1", "a finite number >= 0"),
     ("ganmut.point_noise", "nan", "a finite number >= 0"),
     ("ganmut.translate_rho", "nan", r"a number in \[0, 1\]"),
     ("ganmut.translate_rho", "1.5", r"a number in \[0, 1\]"),
     ("ganmut.g_channels", "0", "an integer >= 1"),
     ("ganmut.d_channels", "-8", "an integer >= 1"),
     ("ganmut.g_res_blocks", "-1", "an integer >= 0"),
     ("ganmut.g_downsamples", "-1", "an integer >= 0"),
     ("icface.lambda_rec", "inf", "a finite number >= 0"),
     ("icface.lambda_adv", "nan", "a finite number >= 0"),
     ("icface.lambda_d_param", "-1", "a finite number >= 0"),
     ("icface.res_blocks", "-2", "an integer >= 0")],
)  # fmt: skip
def test_model_tables_refuse_nonsense_naming_the_key(key, value, problem):
    table, leaf = key.split(".")
    with pytest.raises(ConfigError, match=rf"{table}: {leaf} must be {problem}, got") as err:
        load_config(SPFEMTrainConfig, None, ["--model", table, f"--{key}", value])
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "args",
    [["--ganmut.lambda-gp", "0", "--ganmut.lambda-paired", "0", "--ganmut.point-noise", "0"],
     ["--ganmut.g-res-blocks", "0", "--ganmut.translate-rho", "0"],
     ["--model", "icface", "--icface.lambda-paired", "0", "--icface.res-blocks", "0"]],
)  # fmt: skip
def test_zero_weights_and_no_residual_blocks_are_accepted(args):
    """A weight of 0 switches its term off; no bottleneck blocks is a (small) network."""
    config = load_config(SPFEMTrainConfig, None, args)
    assert config.model_config() is not None


@pytest.mark.parametrize(
    ("args", "table", "size"),
    [(["--ganmut.image-size", "128"], "ganmut", 128),
     (["--icface.image-size", "256"], "icface", 256),
     (["--model", "icface", "--icface.image-size", "128"], "icface", 128)],
)  # fmt: skip
def test_a_table_image_size_other_than_the_run_s_is_refused(args, table, size):
    message = rf"{table}\.image_size = {size} is not used .* set the top-level image_size"
    with pytest.raises(ConfigError, match=message):
        load_config(SPFEMTrainConfig, "configs/spfem/ganmut_demo.toml", args)


def test_a_table_image_size_equal_to_the_run_s_or_its_default_is_accepted():
    config = load_config(SPFEMTrainConfig, None, ["--image-size", "128",
                                                  "--ganmut.image-size", "128"])  # fmt: skip
    assert config.model_config().image_size == 128
    config = load_config(SPFEMTrainConfig, None, ["--image-size", "128",
                                                  "--ganmut.image-size", "64"])  # fmt: skip
    assert config.model_config().image_size == 128  # 64 is the table's default: unset
