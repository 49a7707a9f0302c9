import dataclasses
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from asccl.config import (
    ConfigError,
    is_device,
    is_int,
    is_number,
    load_config,
    names_field,
    path_field,
    require,
    save_config,
)


@dataclass
class Inner:
    lr: float = 1e-4
    anchors: tuple[int, ...] = (32, 16, 8, 4)


@dataclass
class Outer:
    name: str = "run"
    mode: Literal["mel", "mfcc"] = "mel"
    steps: int = 10
    out: Path = Path("runs")
    weights: Path | None = None
    optim: Inner = field(default_factory=Inner)


def test_file_then_overrides(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text('name = "paper"\nsteps = 50\n[optim]\nlr = 1\nanchors = [8, 4, 2, 1]\n')
    cfg = load_config(Outer, toml, ["--steps", "7", "--optim.lr=0.5", "--weights", "w.pth"])
    assert cfg.name == "paper" and cfg.steps == 7
    assert cfg.optim.lr == 0.5 and isinstance(cfg.optim.lr, float)
    assert cfg.optim.anchors == (8, 4, 2, 1)
    assert cfg.weights == Path("w.pth") and cfg.out == Path("runs")


def test_defaults_without_file():
    assert load_config(Outer) == Outer()


def test_unknown_keys_are_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['stepz'\].*valid"):
        load_config(Outer, None, ["--stepz", "3"])
    toml = tmp_path / "bad.toml"
    toml.write_text("[optim]\nmomentum = 0.9\n")
    with pytest.raises(ConfigError, match=r"bad\.toml: optim: unknown key"):
        load_config(Outer, toml)


def test_bad_values_and_files(tmp_path):
    with pytest.raises(ConfigError, match="steps must be int"):
        load_config(Outer, None, ["--steps", "many"])
    with pytest.raises(ConfigError, match=r"mode must be one of \['mel', 'mfcc'\], got 'mfc'"):
        load_config(Outer, None, ["--mode", "mfc"])
    with pytest.raises(ConfigError, match="needs a value"):
        load_config(Outer, None, ["--steps"])
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(Outer, tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("steps = = 3")
    with pytest.raises(ConfigError, match=r"broken\.toml: invalid TOML"):
        load_config(Outer, broken)


def test_save_config_writes_json(tmp_path):
    path = save_config(Outer(), tmp_path / "sub" / "config.json")
    assert '"steps": 10' in path.read_text()


@dataclass
class Lists:
    names: list[str] = field(default_factory=list)
    sizes: tuple[int, ...] = ()
    pair: tuple[float, float] = (0.5, 0.9)


@pytest.mark.parametrize("text", ["5", "1e3", "2024-01-01", "true", "0x10"])
def test_a_path_or_text_field_takes_the_text_as_typed(text):
    """TOML reads these as a number, date or bool; a path is the name as typed."""
    cfg = load_config(Outer, None, ["--out", text, "--weights", text, "--name", text])
    assert cfg.out == Path(text) and cfg.weights == Path(text) and cfg.name == text
    assert isinstance(cfg.out, Path) and isinstance(cfg.weights, Path)
    assert load_config(Outer, None, ["--out", '"quoted dir"']).out == Path("quoted dir")


def test_a_path_in_a_file_must_be_a_string_and_no_path_is_empty(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text("out = 5\n")
    with pytest.raises(ConfigError, match=r"c\.toml: out must be a path \(a string\), got 5$"):
        load_config(Outer, toml)
    for args in (["--out="], ["--out", ""], ["--weights", '""']):
        with pytest.raises(ConfigError, match=r"^command line: (out|weights) must be a path, got"):
            load_config(Outer, None, args)


def test_paths_that_are_not_utf8_are_refused_in_one_ascii_line():
    undecodable = os.fsdecode(b"runs/caf\xe9")  # Latin-1 bytes in argv: a lone surrogate
    for key in ("out", "weights"):
        with pytest.raises(ConfigError) as error:
            load_config(Outer, None, [f"--{key}", undecodable])
        message = str(error.value)
        assert message == (
            f"command line: {key}: the path 'runs/caf\\udce9' is not valid UTF-8; rename it "
            "or use another path"
        )
        message.encode("ascii")  # printable on any terminal


def test_a_config_file_that_is_not_utf8_is_one_error(tmp_path):
    toml = tmp_path / "latin1.toml"
    toml.write_bytes(b'name = "caf\xe9"\n')  # \xe9 at byte 11
    with pytest.raises(ConfigError, match=r"latin1\.toml: not UTF-8 text \(.* at byte 11\)"):
        load_config(Outer, toml)


def test_lists_are_lists_with_items_of_their_type():
    cfg = load_config(Lists, None, ["--names", '["a", "b"]', "--sizes", "[1, 2]", "--pair=[1, 2]"])
    assert cfg == Lists(names=["a", "b"], sizes=(1, 2), pair=(1.0, 2.0))
    assert all(isinstance(v, float) for v in cfg.pair)
    # one value is a one-item list (not the characters of a string), the text as typed
    assert load_config(Lists, None, ["--names", "W021", "--sizes", "3"]).names == ["W021"]
    assert load_config(Lists, None, ["--names", "7"]).names == ["7"]
    assert load_config(Lists, None, ["--sizes", "3"]).sizes == (3,)
    bad = [
        (["--names", "[1]"], r"names\[0\] must be str, got 1"),
        (["--pair", "5"], r"pair must have 2 items, got 5$"),
        (["--sizes", "[1, 2.5]"], r"sizes\[1\] must be int, got 2\.5"),
        (["--pair", "[1, 2, 3]"], r"pair must have 2 items, got \[1, 2, 3\]"),
    ]
    for args, message in bad:
        with pytest.raises(ConfigError, match=message):
            load_config(Lists, None, args)


def test_a_bool_is_not_an_int():
    with pytest.raises(ConfigError, match="steps must be int, got True"):
        load_config(Outer, None, ["--steps", "true"])


def _path_fields(cls, prefix=""):
    """Dotted names of every ``Path`` / ``Path | None`` field of ``cls``, nested ones too."""
    for f in dataclasses.fields(cls):
        hint = typing.get_type_hints(cls)[f.name]
        options = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
        if Path in options:
            yield prefix + f.name
        elif len(options) == 1 and dataclasses.is_dataclass(options[0]):
            yield from _path_fields(options[0], f"{prefix}{f.name}.")


def _config_classes():
    """The config of every config-driven command."""
    from asccl.data.prepare import DataConfig
    from asccl.data.synth.config import SynthConfig
    from asccl.demo import DemoConfig
    from asccl.evaluation.runner import EvalConfig
    from asccl.groundtruth import GroundTruthConfig
    from asccl.metric.health import MetricEvalConfig
    from asccl.spfem.config import SPFEMTrainConfig
    from asccl.spfem.experiment import ExperimentConfig
    from asccl.study.config import StudyConfig
    from asccl.training.config import TrainConfig

    return [DemoConfig, DataConfig, SynthConfig, TrainConfig, MetricEvalConfig, EvalConfig,
            SPFEMTrainConfig, ExperimentConfig, StudyConfig, GroundTruthConfig]  # fmt: skip


@pytest.mark.parametrize("cls", _config_classes(), ids=lambda c: c.__name__)
def test_every_path_field_of_every_config_is_a_path(cls):
    fields = list(_path_fields(cls))
    assert fields  # every command reads or writes files
    for value in ("5", "some/dir"):
        overrides = [arg for name in fields for arg in (f"--{name}", value)]
        cfg = load_config(cls, None, overrides)
        for name in fields:
            got = cfg
            for part in name.split("."):
                got = getattr(got, part)
            assert isinstance(got, Path) and got == Path(value), name


@pytest.mark.parametrize("cls", _config_classes(), ids=lambda c: c.__name__)
def test_every_config_is_frozen(cls):
    params = getattr(cls, "__dataclass_params__")  # noqa: B009
    assert params.frozen, cls.__name__


def _lists(config, prefix=""):
    """Dotted names of the fields of ``config`` (nested ones too) that hold a list."""
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            yield from _lists(value, f"{prefix}{f.name}.")
        elif isinstance(value, list):
            yield prefix + f.name


@pytest.mark.parametrize("cls", _config_classes(), ids=lambda c: c.__name__)
def test_every_config_builds_its_defaults_holds_no_lists_and_rebuilds_unchanged(cls):
    """Names are tuples (``names_field``), as a frozen config's values should be; running
    ``__post_init__`` again on converted values changes nothing."""
    config = cls()
    assert list(_lists(config)) == []
    assert dataclasses.replace(config) == config


# --- nested configs from their own files ------------------------------------------------


def test_a_nested_config_from_a_file_a_table_or_the_command_line(tmp_path):
    (tmp_path / "optim.toml").write_text("lr = 0.5\nanchors = [4, 2]\n")
    (tmp_path / "other.toml").write_text("lr = 0.25\n")
    toml = tmp_path / "c.toml"
    toml.write_text(f'steps = 3\noptim = "{tmp_path / "optim.toml"}"\n')
    assert load_config(Outer, toml).optim == Inner(lr=0.5, anchors=(4, 2))
    # the file first, the dotted keys on top, whatever their order
    cfg = load_config(Outer, toml, ["--optim.lr", "2", "--optim", str(tmp_path / "other.toml")])
    assert cfg.optim == Inner(lr=2.0) and cfg.steps == 3
    toml.write_text(f'[optim]\ninclude = "{tmp_path / "optim.toml"}"\nlr = 1\n')
    assert load_config(Outer, toml).optim == Inner(lr=1.0, anchors=(4, 2))
    assert load_config(Outer, None, ["--optim", str(tmp_path / "optim.toml")]).optim.lr == 0.5


def test_nested_config_files_that_are_missing_bad_or_circular_name_the_file(tmp_path):
    (tmp_path / "bad.toml").write_text("lr = 1\nmomentum = 0.9\n")
    with pytest.raises(ConfigError, match=r"optim \(from .*bad\.toml\): unknown key"):
        load_config(Outer, None, ["--optim", str(tmp_path / "bad.toml")])
    with pytest.raises(ConfigError, match=r"none\.toml: no such config file"):
        load_config(Outer, None, ["--optim", str(tmp_path / "none.toml")])
    loop = tmp_path / "loop.toml"
    loop.write_text(f'[optim]\ninclude = "{loop}"\n')
    with pytest.raises(ConfigError, match=r"optim\.include: .*loop\.toml includes itself"):
        load_config(Outer, loop)
    loop.write_text("optim = 5\n")
    with pytest.raises(ConfigError, match="optim: expected a table for Inner, got 5"):
        load_config(Outer, loop)
    with pytest.raises(ConfigError, match=r"--steps is not a table"):
        load_config(Outer, None, ["--steps.x", "1"])


@dataclass
class Middle:
    steps: int = 1
    optim: Inner = field(default_factory=Inner)


@dataclass
class Nested:
    middle: Middle = field(default_factory=Middle)


def test_nested_command_line_files_apply_shallower_first_whatever_their_order(tmp_path):
    """``--middle FILE`` replaces the whole [middle] table, so a deeper ``--middle.optim
    FILE2`` must come after it: typed before or after, it is kept."""
    (tmp_path / "middle.toml").write_text("steps = 5\n[optim]\nlr = 0.5\n")
    (tmp_path / "optim.toml").write_text("lr = 0.25\nanchors = [2]\n")
    middle = ["--middle", str(tmp_path / "middle.toml")]
    optim = ["--middle.optim", str(tmp_path / "optim.toml")]
    expected = Nested(Middle(steps=5, optim=Inner(lr=0.25, anchors=(2,))))
    assert load_config(Nested, None, [*middle, *optim]) == expected
    assert load_config(Nested, None, [*optim, *middle]) == expected
    # dotted keys still go on top of both files, in any position
    cfg = load_config(Nested, None, ["--middle.optim.lr", "3", *optim, *middle])
    assert cfg.middle.optim == Inner(lr=3.0, anchors=(2,)) and cfg.middle.steps == 5


def test_a_command_line_file_replaces_the_whole_table_of_the_config_file(tmp_path):
    (tmp_path / "c.toml").write_text("steps = 4\n[optim]\nanchors = [1]\n")
    (tmp_path / "optim.toml").write_text("lr = 0.5\n")
    cfg = load_config(Outer, tmp_path / "c.toml", ["--optim", str(tmp_path / "optim.toml")])
    assert cfg.optim == Inner(lr=0.5) and cfg.steps == 4  # anchors = [1] is dropped


def test_a_config_path_that_is_a_folder_or_unreadable_is_one_error(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match=r"is a folder, not a config file$"):
        load_config(Outer, tmp_path)
    with pytest.raises(ConfigError, match=rf"^{tmp_path}: is a folder"):
        load_config(Outer, None, ["--optim", str(tmp_path)])
    # root reads any file whatever its mode, so the refusal to read is simulated
    toml = tmp_path / "c.toml"
    toml.write_text("steps = 2\n")

    def denied(self):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", denied)
    with pytest.raises(ConfigError, match=r"c\.toml: cannot read it \(Permission denied\)$"):
        load_config(Outer, toml)


# --- the checks every config's __post_init__ uses ----------------------------------------


@dataclass(frozen=True)
class Checked:
    out: Path = Path("runs")
    weights: Path | None = None
    names: tuple[str, ...] = ()

    def __post_init__(self):
        path_field(self, "out")
        path_field(self, "weights", optional=True, name="--weights")
        names_field(self, "names")


def test_path_and_names_fields_convert_frozen_configs():
    cfg = Checked(out="a/b", weights=Path("w.pth"), names="W903")
    assert cfg.out == Path("a/b") and isinstance(cfg.out, Path) and cfg.names == ("W903",)
    assert Checked(names=["a", "b"]).names == ("a", "b") and Checked().weights is None
    bad = [({"out": 5}, "out must be a path, got 5"), ({"out": ""}, "out must be a path, got an "
           "empty string"), ({"weights": 1.5}, "--weights must be a path, got 1.5"),
           ({"out": None}, "out must be a path, got None"),
           ({"names": ["a", ""]}, "names must be a list of names")]  # fmt: skip
    for changes, message in bad:
        with pytest.raises(ConfigError) as err:
            Checked(**changes)
        assert str(err.value).startswith(message), str(err.value)


@dataclass(frozen=True)
class NamedSplit:
    speakers: tuple[str, ...] = ("W021",)
    exclude: tuple[str, ...] = ()

    def __post_init__(self):
        names_field(self, "speakers", name="--speakers", empty="name at least one speaker")
        names_field(self, "exclude")


def test_an_empty_names_field_is_refused_only_where_it_says_what_to_give():
    """``empty``: an empty list (a tuple once loaded) is one error naming the flag and what
    to give, checked after the type (a bad item says so first); without it, ``()``."""
    assert NamedSplit(exclude=[]).exclude == () and NamedSplit(speakers="S1").speakers == ("S1",)
    for value in ([], ()):
        with pytest.raises(ConfigError) as err:
            NamedSplit(speakers=value)
        assert str(err.value) == "--speakers is empty: name at least one speaker"
    with pytest.raises(ConfigError, match=r"^--speakers must be a list of names.*got \[''\]$"):
        NamedSplit(speakers=[""])


def test_number_and_device_checks():
    assert is_int(3) and is_int(3, 3, 3) and not is_int(True) and not is_int(3.0)
    assert not is_int(2, 3) and not is_int(4, None, 3)
    assert is_number(1) and is_number(1e-4) and not is_number(float("nan"))
    assert not is_number(float("inf")) and not is_number(False) and not is_number("1")
    assert is_device("cuda:1") and is_device("cpu") and not is_device("auto")
    assert is_device("auto", auto=True) and not is_device("gpu", auto=True)
    with pytest.raises(ConfigError, match=r"^out must exist, got PosixPath\('runs'\)$"):
        require(False, Checked(), "out", "must exist")


@dataclass
class WithDefaults:
    optim: Inner = field(default_factory=lambda: Inner(lr=0.5))
    other: Inner | None = None


def test_a_table_changes_its_fields_default_not_the_class_defaults():
    """``--optim.anchors`` keeps the field's own default ``lr = 0.5`` (as
    ``--experiment.icface.steps`` keeps ``model = "icface"``); no default: the class's."""
    cfg = load_config(WithDefaults, None, ["--optim.anchors", "[1]", "--other.anchors", "[2]"])
    assert cfg.optim == Inner(lr=0.5, anchors=(1,)) and cfg.other == Inner(anchors=(2,))


@dataclass
class Documented:
    """A config whose fields are described every supported way.

    Attributes:
        width: from the docstring. Its second sentence is left out.
        height: the docstring's, under the comment's.
    """

    #: above the field, on two lines
    #: (joined as one)
    steps: int = 3
    lr: float = 1e-4  #: at the end of the line
    name: str = "x"  # a plain trailing comment counts too
    mode: str = field(default="a", metadata={"help": "from metadata, over the comment"})  #: no
    bare: tuple[int, int] = (1, 2)  # fmt: skip
    width: int = 8
    height: int = 9  #: the comment's. Not this, e.g. this.
    # -----------------------------------------------------------
    # plain comment lines above count (a rule above them does not)
    plain: int = 0
    inner: Inner = field(default_factory=lambda: Inner(lr=0.5))


def test_field_descriptions_come_from_metadata_comments_and_the_docstring():
    from asccl.config_keys import field_docs

    assert field_docs(Documented) == {
        "steps": "above the field, on two lines (joined as one)",
        "lr": "at the end of the line",
        "name": "a plain trailing comment counts too",
        "mode": "from metadata, over the comment",
        "width": "from the docstring.",
        "height": "the comment's.",
        "plain": "plain comment lines above count (a rule above them does not)",
    }  # `bare`: a tool directive is no description


def test_describe_keys_lists_nested_keys_with_their_parents_defaults():
    from asccl.config_keys import describe_keys

    text = describe_keys(Documented)
    assert "  steps: int = 3\n      above the field, on two lines (joined as one)\n" in text
    assert "  bare: [int, int] = [1, 2]\n  width: int = 8\n" in text
    # the nested table's defaults are the parent's default instance's (lr 0.5, not 1e-4)
    assert "  inner: table (a [inner] table, or a TOML file's name)\n" in text
    assert "  inner.lr: float = 0.5\n  inner.anchors: list[int] = [32, 16, 8, 4]" in text
    text = describe_keys(Outer)
    assert '  mode: "mel" | "mfcc" = "mel"\n' in text
    assert "  weights: path (unset by default)\n" in text and '  out: path = "runs"\n' in text


def test_an_unknown_override_suggests_the_closest_key_in_the_flags_spelling():
    cases = [
        (["--stepz", "3"], "--stepz: unknown key(s) ['stepz'] for Outer; did you mean --steps?"),
        (["--optim.lrr", "1"], "--optim.lrr: unknown key(s) ['lrr'] for Inner; did you mean "
         "--optim.lr?"),
        (["--lr", "1"], "--lr: unknown key(s) ['lr'] for Outer; did you mean --optim.lr?"),
        (["--optim.an_chors", "1"], "--optim.an_chors: unknown key(s) ['an_chors'] for Inner; "
         "did you mean --optim.anchors?"),
        (["--colour", "1"], "--colour: unknown key(s) ['colour'] for Outer; valid: ["),
    ]  # fmt: skip
    for args, message in cases:
        with pytest.raises(ConfigError) as error:
            load_config(Outer, None, args)
        assert str(error.value).startswith(message), str(error.value)


def test_a_renamed_key_names_its_new_name_at_any_depth(tmp_path):
    """``lse_jpeg_roundtrip`` became ``lse_codecs``: an old file or flag says so (in its own
    spelling, under the table it was in), not only "unknown key"."""
    from asccl.evaluation.config import EvalConfig
    from asccl.spfem.experiment import ExperimentConfig

    with pytest.raises(ConfigError, match=r"'lse_jpeg_roundtrip' is now --lse-codecs, which"):
        load_config(EvalConfig, None, ["--lse-jpeg-roundtrip", "false"])
    with pytest.raises(ConfigError, match=r"'eval.lse_jpeg_roundtrip' is now --eval.lse_codecs"):
        load_config(ExperimentConfig, None, ["--eval.lse_jpeg_roundtrip", "false"])
    old = tmp_path / "old.toml"
    old.write_text("lse_jpeg_roundtrip = true\n")
    with pytest.raises(ConfigError, match=r"old.toml: .*'lse_jpeg_roundtrip' is now 'lse_codecs'"):
        load_config(EvalConfig, old, [])


#: (config class path, key, the error's text after "<key> is empty: ") of each names list
#: whose empty value means nothing (no "all" or "none")
EMPTY_MEANS_NOTHING = [
    ("asccl.spfem.experiment:ExperimentConfig", "models",
     "name one or more of ['ganmut', 'icface'], e.g. [\"ganmut\"]"),
    ("asccl.spfem.experiment:ExperimentConfig", "test_speakers",
     'name at least one held-out speaker (results are generated for them), e.g. ["W903"]'),
    ("asccl.evaluation.config:EvalConfig", "metrics",
     "name at least one of ['distribution', 'fid', 'fad', 'csim', 'lse', 'kid', "
     "'ground_truth'], e.g. [\"distribution\", \"csim\", \"lse\"]"),
    ("asccl.demo:DemoConfig", "variants",
     "name at least one of ['identical', 'brighter', 'shifted', 'mouth_open', 'unrelated'], "
     'e.g. ["identical", "unrelated"], or leave it out for all'),
    ("asccl.spfem.config:SPFEMTrainConfig", "speakers",
     'name at least one speaker, e.g. ["W021"], or leave it out for all'),
    ("asccl.spfem.config:SPFEMTrainConfig", "emotions",
     'name at least one emotion, e.g. ["angry"], or leave it out for all'),
]  # fmt: skip


def _class(path: str) -> type:
    import importlib

    module, name = path.split(":")
    return getattr(importlib.import_module(module), name)


@pytest.mark.parametrize(("cls", "key", "what"), EMPTY_MEANS_NOTHING,
                         ids=[f"{c.split(':')[1]}.{k}"
                              for c, k, _ in EMPTY_MEANS_NOTHING])  # fmt: skip
def test_an_empty_list_that_means_nothing_says_what_to_give(tmp_path, cls, key, what):
    """``key = []`` in a config file is one line: the key and what to give (not ``got ()``)."""
    file = tmp_path / "config.toml"
    file.write_text(f"{key} = []\n")
    with pytest.raises(ConfigError) as err:
        load_config(_class(cls), file)
    assert str(err.value) == f"{file}: {key} is empty: {what}"


@pytest.mark.parametrize(("cls", "key"), [
    ("asccl.spfem.experiment:ExperimentConfig", "cross_speakers"),  # any other speaker
    ("asccl.evaluation.config:EvalConfig", "methods"),  # every method
    ("asccl.spfem.config:SPFEMTrainConfig", "exclude_speakers"),  # none held out
])  # fmt: skip
def test_an_empty_list_that_means_all_or_none_is_kept(tmp_path, cls, key):
    file = tmp_path / "config.toml"
    file.write_text(f"{key} = []\n")
    assert getattr(load_config(_class(cls), file), key) == ()


def test_an_empty_list_on_the_command_line_is_one_error_line(capsys):
    """Through ``asccl evaluate``: exit 2, one stderr line, nothing run."""
    from asccl.cli import main

    assert main(["evaluate", "--metrics", "[]"]) == 2
    err = capsys.readouterr().err
    assert err == f"asccl: error: command line: metrics is empty: {EMPTY_MEANS_NOTHING[2][2]}\n"
