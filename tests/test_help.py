"""``--help`` that answers: every config key with its type, default and description; typos
answered with the closest key, naming the flag; ``asccl --help`` without torch."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import typing
from pathlib import Path

import pytest

from asccl.cli import main
from asccl.config import ConfigError, load_config
from asccl.config_keys import config_keys, field_docs
from asccl.data.config import DataConfig
from asccl.demo import DemoConfig
from asccl.evaluation.config import EvalConfig
from asccl.groundtruth import GroundTruthConfig
from asccl.spfem.config import SPFEMTrainConfig
from asccl.spfem.experiment import ExperimentConfig
from asccl.training.config import TrainConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

#: every config-driven command and the config class its --help lists
COMMANDS = [
    (["demo"], DemoConfig),
    (["data", "index"], DataConfig),
    (["data", "pairs"], DataConfig),
    (["data", "crops"], DataConfig),
    (["data", "prepare"], DataConfig),
    (["train-metric"], TrainConfig),
    (["evaluate"], EvalConfig),
    (["spfem", "train"], SPFEMTrainConfig),
    (["experiment"], ExperimentConfig),
    (["groundtruth"], GroundTruthConfig),
]


def help_text(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as done:
        main([*argv, "--help"])
    assert done.value.code == 0
    return capsys.readouterr().out


def leaf_fields(cls: type, base=None, prefix: str = ""):
    """``(dotted key, default)`` of every setting of ``cls``, nested configs walked, read
    straight from ``dataclasses.fields`` (a nested config's defaults from its parent's
    default instance, as the loader fills them)."""
    hints = typing.get_type_hints(cls)
    for spec in dataclasses.fields(cls):
        if spec.default_factory is not dataclasses.MISSING:
            value = spec.default_factory()
        else:
            value = None if spec.default is dataclasses.MISSING else spec.default
        if base is not None:
            value = getattr(base, spec.name)
        hint = hints[spec.name]
        options = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
        if dataclasses.is_dataclass(options[0]):
            yield from leaf_fields(options[0], value, f"{prefix}{spec.name}.")
        else:
            yield f"{prefix}{spec.name}", value


def plain(value):
    """A default as TOML reads it back: tuples are arrays, paths strings."""
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return str(value) if isinstance(value, Path) else value


def shown_defaults(text: str) -> dict[str, str | None]:
    """``key -> default text`` (None: unset) of the key lines of a --help."""
    shown = {}
    for line in text.split("\nconfig keys: ", 1)[1].splitlines():
        if line.startswith("  ") and not line.startswith("   "):
            key, rest = line[2:].split(": ", 1)
            shown[key] = rest.split(" = ", 1)[1] if " = " in rest else None
    return shown


def test_train_metric_help_shows_every_key_with_its_default(capsys):
    """Each setting of TrainConfig (MetricConfig's as metric.*) is listed, and the default
    it shows is a TOML literal that reads back as the dataclass's own default."""
    shown = shown_defaults(help_text(["train-metric"], capsys))
    expected = dict(leaf_fields(TrainConfig))
    assert {"lr", "batch_size", "metric.backbone", "metric.num_anchors"} <= set(expected)
    for key, default in expected.items():
        assert key in shown, key
        if default is None:
            assert shown[key] is None, key
        else:
            assert tomllib.loads(f"v = {shown[key]}")["v"] == plain(default), key
    assert set(shown) == set(expected) | {"metric"}  # and nothing else: the table itself


@pytest.mark.parametrize(("argv", "cls"), COMMANDS, ids=[" ".join(a) for a, _ in COMMANDS])
def test_every_config_command_lists_its_keys_and_describes_them(argv, cls, capsys):
    text = help_text(argv, capsys)
    shown = shown_defaults(text)
    assert set(dict(leaf_fields(cls))) <= set(shown)
    # the description of a key sits under it: here, the first described key's
    key, doc = next((k, d) for k, d in field_docs(cls).items() if d)
    block = text.split(f"\n  {key}: ", 1)[1].split("\n  ", 2)
    assert " ".join(block[1].split()) in " ".join(doc.split())


def test_every_key_of_every_command_is_described():
    """No key left without a description: a field that has no doc-comment (or metadata,
    or docstring entry) fails here, naming it."""
    undescribed = []
    for _, cls in COMMANDS:
        for line_key, help_text_ in ((k.key, k.help) for k in config_keys(cls)):
            if not help_text_:
                undescribed.append(f"{cls.__name__}: {line_key}")
    assert sorted(set(undescribed)) == []


def test_the_keys_are_listed_without_their_source(monkeypatch, capsys):
    """An install without .py files: descriptions are gone, keys and defaults stay."""
    import inspect

    from asccl.config_keys import describe_keys

    field_docs.cache_clear()

    def no_source(obj):
        raise OSError("could not get source code")

    monkeypatch.setattr(inspect, "getsource", no_source)
    try:
        text = describe_keys(TrainConfig)
    finally:
        field_docs.cache_clear()
    assert "  lr: float = 0.0001\n  epochs: int = 50\n" in text
    assert "passes over the training pairs" not in text


def test_asccl_help_does_not_import_torch():
    """Parsing comes first; the command's modules (and torch) load only when it runs."""
    code = (
        "import sys\n"
        "from asccl.cli import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit as done:\n"
        "    assert done.code == 0\n"
        "print(sorted({'torch', 'numpy', 'matplotlib'} & set(sys.modules)))\n"
        "print(sorted(m for m in sys.modules if m.startswith('asccl')\n"
        "             and not m.startswith('asccl.cli.')))\n"  # the CLI's own modules may load
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    heavy, ours = out.stdout.splitlines()[-2:]
    assert heavy == "[]"
    # nothing else is needed (the package root's lazy names need asccl._lazy, stdlib only)
    assert ours == str(["asccl", "asccl._lazy", "asccl._version", "asccl.cli"])
    done = subprocess.run([sys.executable, "-m", "asccl", "--help"], capture_output=True,
                          text=True, check=True)  # fmt: skip
    assert "train-metric" in done.stdout and done.stderr == ""


@pytest.mark.parametrize(
    ("argv", "flag", "suggestion"),
    [
        (["train-metric", "--lrr", "1e-3"], "--lrr", "--lr"),
        (["train-metric", "--batchsize", "8"], "--batchsize", "--batch-size"),
        (["train-metric", "--metric.backbon", "iresnet18"], "--metric.backbon",
         "--metric.backbone"),
        (["demo", "--lr", "1e-3"], "--lr", "--train.lr"),
        (["demo", "--train.max_step", "2"], "--train.max_step", "--train.max_steps"),
    ],
)  # fmt: skip
def test_a_typo_names_the_flag_and_suggests_the_key(argv, flag, suggestion, tmp_path, capsys):
    """The flag as typed, not the config file beside it, and the closest valid key in the
    typed spelling (dashes, or underscores when it used them)."""
    toml = tmp_path / "given.toml"
    toml.write_text("")
    assert main([argv[0], "--config", str(toml), *argv[1:]]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"asccl: error: {flag}: unknown key(s) ")
    assert f"did you mean {suggestion}? valid: [" in line and str(toml) not in line


def test_an_unknown_key_in_a_file_names_the_file_and_suggests_the_key(tmp_path):
    toml = tmp_path / "train.toml"
    toml.write_text("batchsize = 8\n[metric]\nimage_size = 64\n")
    with pytest.raises(ConfigError) as error:
        load_config(TrainConfig, toml)
    assert str(error.value).startswith(
        f"{toml}: unknown key(s) ['batchsize'] for TrainConfig; did you mean 'batch_size'? "
    )


def test_a_bad_override_value_is_blamed_on_the_command_line_not_the_file(tmp_path):
    toml = tmp_path / "train.toml"
    toml.write_text('init = "random"\n[metric]\nimage_size = 64\n')
    for args, message in (
        (["--lr", "-1"], "command line: lr must be a finite number > 0, got -1.0"),
        (["--lr", "fast"], "command line: lr must be float, got 'fast'"),
        (["--metric.image-size", "100"], "command line: metric: image_size must be a multiple"),
    ):
        with pytest.raises(ConfigError) as error:
            load_config(TrainConfig, toml, args)
        assert str(error.value).startswith(message), str(error.value)
    toml.write_text("lr = -1\n")  # and a bad value in the file is the file's
    with pytest.raises(ConfigError, match=rf"^{toml}: lr must be a finite number > 0"):
        load_config(TrainConfig, toml, ["--epochs", "2"])


def test_one_value_for_a_list_option_is_one_item():
    """`--methods ganmut` is the method "ganmut", not g, a, n, m, u, t."""
    config = load_config(EvalConfig, None, ["--methods", "ganmut"])
    assert config.methods == ("ganmut",)
    config = load_config(EvalConfig, None, ["--methods", '["ganmut", "icface"]'])
    assert config.methods == ("ganmut", "icface")
    config = load_config(ExperimentConfig, None, ["--models", "icface"])
    assert config.models == ("icface",)
    assert load_config(TrainConfig, None, ["--val-speakers", "W903"]).val_speakers == ("W903",)
