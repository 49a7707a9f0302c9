import json

import pytest
import torch
from safetensors.torch import save_file
from tests.conftest import random_images

from asccl.metric import ASCCLMetric, CheckpointError, load_metric, read_metric_config, save_metric


@pytest.fixture(scope="module")
def metric():
    torch.manual_seed(1)
    return ASCCLMetric(backbone="iresnet18", negatives="random", channel_order="bgr").eval()


def same_loss(a, b, size=112):
    x, y = random_images(2, size, seed=1), random_images(2, size, seed=2)
    with torch.no_grad():
        regions = a.sample_regions(2, image_size=size, generator=torch.Generator().manual_seed(0))
        return torch.equal(a(x, y, regions=regions).loss, b(x, y, regions=regions).loss)


def test_round_trip_is_exact(metric, tmp_path):
    path = save_metric(metric, tmp_path / "metric.safetensors")
    loaded = load_metric(path).eval()
    assert loaded.config == metric.config
    for key, value in metric.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key
    assert same_loss(metric, loaded)
    assert read_metric_config(path) == metric.config
    assert [p.name for p in tmp_path.iterdir()] == ["metric.safetensors"]  # no temp files left


def test_overrides_at_load_time(metric, tmp_path):
    path = save_metric(metric, tmp_path / "m.safetensors")
    assert load_metric(path, num_anchors=(8, 8, 4, 4)).config.num_anchors == (8, 8, 4, 4)
    with pytest.raises(CheckpointError, match="backbone is fixed"):
        load_metric(path, backbone="iresnet50")


def authors_layout(metric):
    """The authors' key names: resnet50.* and one ModuleList mlp of Linear/ReLU/Linear x 4."""
    state = {"resnet50." + k: v for k, v in metric.backbone.state_dict().items()}
    for stage in range(4):
        for layer, index in ((0, 3 * stage), (2, 3 * stage + 2)):
            for param in ("weight", "bias"):
                state[f"mlp.{index}.{param}"] = getattr(metric.heads.heads[stage][layer], param)
    return state


def test_authors_checkpoint_loads_by_key_mapping(tmp_path):
    torch.manual_seed(2)
    source = ASCCLMetric().eval()  # their checkpoints are IResNet-50
    state = authors_layout(source)
    assert sorted({k.split(".")[1] for k in state if k.startswith("mlp.")}, key=int) == [
        "0",
        "2",
        "3",
        "5",
        "6",
        "8",
        "9",
        "11",
    ]
    path = tmp_path / "20-512_224.pth"
    torch.save(state, path)
    loaded = load_metric(path)
    assert loaded.config.channel_order == "bgr"  # they trained on OpenCV frames
    torch.testing.assert_close(loaded.heads.heads[1][2].weight, state["mlp.5.weight"])
    torch.testing.assert_close(
        loaded.backbone.layer3[13].conv2.weight, state["resnet50.layer3.13.conv2.weight"]
    )
    # DDP-wrapped copies of their file load too
    torch.save({"module." + k: v for k, v in state.items()}, tmp_path / "ddp.pth")
    load_metric(tmp_path / "ddp.pth")


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(CheckpointError, match=r"nope\.safetensors: no such checkpoint file"):
        load_metric(tmp_path / "nope.safetensors")
    (tmp_path / "empty.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty file"):
        load_metric(tmp_path / "empty.safetensors")


def test_corrupt_and_foreign_files(metric, tmp_path):
    bad = tmp_path / "garbage.safetensors"
    bad.write_bytes(b"\x00\x01not a checkpoint" * 10)
    with pytest.raises(CheckpointError, match=r"garbage\.safetensors: not a readable safetensors"):
        load_metric(bad)
    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, plain)
    with pytest.raises(CheckpointError, match="without an asccl metric header"):
        load_metric(plain)
    # header fine, tensors from another architecture
    wrong = tmp_path / "wrong.safetensors"
    header = {
        "format": "asccl-metric",
        "format_version": "1",
        "config": json.dumps(metric.config.to_dict()),
    }
    save_file({"w": torch.zeros(2)}, wrong, metadata=header)
    with pytest.raises(CheckpointError, match="keys do not match an ASCCL metric \\(iresnet18"):
        load_metric(wrong)
    truncated = tmp_path / "cut.safetensors"
    truncated.write_bytes(save_metric(metric, tmp_path / "ok.safetensors").read_bytes()[:5000])
    with pytest.raises(CheckpointError, match=r"cut\.safetensors"):
        load_metric(truncated)


def test_insightface_backbone_is_not_a_metric(tmp_path):
    from asccl.metric import build_iresnet

    path = tmp_path / "backbone.pth"
    torch.save(build_iresnet("iresnet18").state_dict(), path)
    with pytest.raises(CheckpointError, match=r"insightface backbone\.pth initialises a metric"):
        load_metric(path)


class Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_pickled_code_is_refused(tmp_path, capsys):
    path = tmp_path / "evil.pth"
    torch.save({"x": Payload()}, path)
    with pytest.raises(CheckpointError, match="weights_only=True"):
        load_metric(path)
    assert "this must never run" not in capsys.readouterr().out


def test_save_needs_safetensors_suffix(metric, tmp_path):
    with pytest.raises(CheckpointError, match=r"\.safetensors"):
        save_metric(metric, tmp_path / "m.pt")


# ------------------------------------------------------------ deterministic bytes, headers


def _header(path):
    """The safetensors header as an ordered list of (key, value) pairs."""
    data = path.read_bytes()
    length = int.from_bytes(data[:8], "little")
    return json.loads(data[8 : 8 + length], object_pairs_hook=list)


def test_the_same_metric_gives_the_same_bytes(metric, tmp_path):
    """safetensors' writer orders metadata by hash (per map, per process); asccl's is fixed."""
    paths = [save_metric(metric, tmp_path / f"m{i}.safetensors") for i in range(3)]
    first = paths[0].read_bytes()
    assert all(p.read_bytes() == first for p in paths[1:])
    header = _header(paths[0])
    assert header[0][0] == "__metadata__"
    assert [k for k, _ in header[0][1]] == ["asccl_version", "config", "format", "format_version"]
    assert len(first) == 8 + int.from_bytes(first[:8], "little") + sum(
        v.numel() * v.element_size() for v in metric.state_dict().values()
    )
    assert int.from_bytes(first[:8], "little") % 8 == 0  # tensor data 8-byte aligned
    # a reload saves back to the very same bytes
    again = save_metric(load_metric(paths[0]), tmp_path / "again.safetensors")
    assert again.read_bytes() == first


@pytest.mark.slow
def test_the_same_bytes_across_processes(metric, tmp_path):
    """A fresh interpreter (new hash seeds) writes the file this one writes."""
    import subprocess
    import sys

    here = save_metric(metric, tmp_path / "here.safetensors")
    code = (
        "import sys; from asccl.metric import load_metric, save_metric; "
        "save_metric(load_metric(sys.argv[1]), sys.argv[2])"
    )
    there = tmp_path / "there.safetensors"
    subprocess.run([sys.executable, "-c", code, here, there], check=True, timeout=300)
    assert there.read_bytes() == here.read_bytes()


@pytest.mark.parametrize(
    ("config", "problem"),
    [
        ('{"image_size": "224"}', 'image_size = "224" is not an integer'),
        ('{"temperature": "0.07"}', 'temperature = "0.07" is not a number'),
        ('{"temperature": NaN}', "temperature = NaN is not finite"),
        ('{"num_anchors": [8, "a", 4, 2]}', 'num_anchors = [8, "a", 4, 2] is not a list of'),
        ('{"per_image_regions": 1}', "per_image_regions = 1 is not true/false"),
        ('{"head_reduction": 0}', "head_reduction = 0 must be >= 1"),
        ('{"extra": []}', "extra = [] is not an object"),
        ('{"colour": "blue"}', "unknown keys ['colour']"),
        ("[1, 2]", "a JSON list, not an object"),
        ('{"image_size": 100}', "image_size must be a multiple of 16"),
        ('{"backbone": "iresnet9"}', "unknown backbone 'iresnet9'"),
    ],
)
def test_bad_config_in_the_header_is_one_line(tmp_path, config, problem):
    """Every bad value is named before it reaches the config's arithmetic (a string
    image_size used to be a TypeError from string formatting)."""
    path = tmp_path / "bad.safetensors"
    metadata = {"format": "asccl-metric", "format_version": "1", "config": config}
    save_file({"w": torch.zeros(2)}, path, metadata=metadata)
    for read in (read_metric_config, load_metric):
        with pytest.raises(CheckpointError) as info:
            read(path)
        message = str(info.value)
        assert "\n" not in message
        assert message.startswith(f"{path}: bad config in its header: ")
        assert problem in message


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_weights_are_refused_naming_the_key(metric, tmp_path, bad):
    from asccl.io import read_safetensors_metadata, read_weights, save_safetensors

    good = save_metric(metric, tmp_path / "good.safetensors")
    state = read_weights(good)
    state["heads.heads.2.0.weight"] = state["heads.heads.2.0.weight"].clone()
    state["heads.heads.2.0.weight"][3, 5] = bad
    path = save_safetensors(state, tmp_path / "bad.safetensors", read_safetensors_metadata(good))
    with pytest.raises(CheckpointError) as info:
        load_metric(path)
    kind = "NaN" if bad != bad else "Inf"
    assert str(info.value) == f"{path}: heads.heads.2.0.weight holds {kind} values: refused"


def test_a_failed_load_leaves_the_model_as_it_was(metric):
    from asccl.io import load_state_dict_strict

    target = ASCCLMetric(backbone="iresnet18")
    before = {k: v.clone() for k, v in target.state_dict().items()}
    state = {k: v.clone() for k, v in metric.state_dict().items()}
    state["heads.heads.3.2.bias"][0] = float("nan")  # the last key: all others pass first
    with pytest.raises(CheckpointError, match=r"x\.safetensors: heads\.heads\.3\.2\.bias holds"):
        load_state_dict_strict(target, state, "x.safetensors")
    after = target.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_truncated_files_say_so(metric, tmp_path):
    data = save_metric(metric, tmp_path / "ok.safetensors").read_bytes()
    length = int.from_bytes(data[:8], "little")
    for name, cut, words in [
        ("header.safetensors", 8 + length // 2, "its header needs"),
        ("data.safetensors", 8 + length + 1000, "its tensors need"),
        ("last.safetensors", len(data) - 1, "its tensors need"),
    ]:
        (tmp_path / name).write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match=rf"{name}: truncated safetensors file: {words}"):
            load_metric(tmp_path / name)


def test_convert_keeps_an_asccl_files_channel_order(tmp_path, capsys):
    """--channel-order defaults to bgr only for the authors' .pth layout."""
    from asccl.cli import main

    torch.manual_seed(4)
    speakers = {"train": ["W901"], "validation": ["W903"]}
    rgb = save_metric(
        ASCCLMetric(backbone="iresnet18"), tmp_path / "rgb.safetensors", speakers=speakers
    )
    assert main(["metric", "convert", str(rgb), str(tmp_path / "kept.safetensors")]) == 0
    assert read_metric_config(tmp_path / "kept.safetensors").channel_order == "rgb"
    # nothing else changes: the speakers record (experiment's leak check) included
    assert (tmp_path / "kept.safetensors").read_bytes() == rgb.read_bytes()
    out = tmp_path / "flipped.safetensors"
    assert main(["metric", "convert", str(rgb), str(out), "--channel-order", "bgr"]) == 0
    assert read_metric_config(out).channel_order == "bgr"
    authors = tmp_path / "authors.pth"
    torch.save(authors_layout(ASCCLMetric()), authors)
    assert main(["metric", "convert", str(authors), str(tmp_path / "a.safetensors")]) == 0
    assert read_metric_config(tmp_path / "a.safetensors").channel_order == "bgr"
    assert "channel order bgr, the authors' loss arithmetic" in capsys.readouterr().out


@pytest.fixture(scope="module")
def authors_pth(tmp_path_factory):
    """The authors' released layout (IResNet-50, resnet50.* / mlp.*), seeded weights."""
    torch.manual_seed(5)
    path = tmp_path_factory.mktemp("authors") / "20-512_224.pth"
    torch.save(authors_layout(ASCCLMetric()), path)
    return path


def test_converting_the_authors_file_stores_their_arithmetic(authors_pth, tmp_path):
    """Their .pth stores no settings: converted, the header holds theirs (BGR, window,
    adaptive arithmetic) unless --no-authors-compat, which keeps asccl's (still BGR)."""
    from asccl.cli import main
    from asccl.metric.checkpoint import authors_config
    from asccl.metric.config import AUTHORS_ARITHMETIC

    outs = {}
    for name, flags in [
        ("default", []),
        ("on", ["--authors-compat"]),
        ("off", ["--no-authors-compat"]),
    ]:
        outs[name] = tmp_path / f"{name}.safetensors"
        assert main(["metric", "convert", str(authors_pth), str(outs[name]), *flags]) == 0
    for name in ("default", "on"):
        config = read_metric_config(outs[name])
        assert config == authors_config()
        assert {k: getattr(config, k) for k in AUTHORS_ARITHMETIC} == AUTHORS_ARITHMETIC
        assert config.authors_window and config.adaptive == "authors"
        assert config.channel_order == "bgr"
    assert outs["default"].read_bytes() == outs["on"].read_bytes()
    off = read_metric_config(outs["off"])
    assert (off.adaptive, off.authors_window, off.channel_order) == ("pair", False, "bgr")


@pytest.mark.slow
def test_a_converted_authors_file_gives_their_loss_with_no_flags(authors_pth, tmp_path):
    """ASCCLLoss on the converted file (no flags) equals ASCCLLoss on their .pth with their
    settings passed explicitly, on the same regions (one seeded generator each call); the
    same weights and operations, so equal up to float32 rounding (a few ulps of ~13). With
    --no-authors-compat it differs by far more (asccl's window and per-pair weights)."""
    from asccl import ASCCLLoss
    from asccl.cli import main

    converted, plain = tmp_path / "c.safetensors", tmp_path / "p.safetensors"
    assert main(["metric", "convert", str(authors_pth), str(converted), "--authors-compat"]) == 0
    assert main(["metric", "convert", str(authors_pth), str(plain), "--no-authors-compat"]) == 0
    x, y = random_images(2, 224, seed=1), random_images(2, 224, seed=2)

    def loss(fn):
        with torch.no_grad():
            return fn(x, y, generator=torch.Generator().manual_seed(0))

    theirs = loss(
        ASCCLLoss(
            authors_pth,
            channel_order="rgb",
            negatives="patch",
            per_image_regions=False,
            authors_window=True,
            adaptive="authors",
        )
    )
    ours = loss(ASCCLLoss(converted))
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-6)
    assert (loss(ASCCLLoss(plain)) - theirs).abs() > 1e-4


def test_info_prints_every_setting(metric, tmp_path, capsys):
    """Format and versions, tensors, the input the metric expects, its loss arithmetic and
    the whole config."""
    from asccl import __version__
    from asccl.cli import main

    path = save_metric(metric, tmp_path / "m.safetensors")
    assert main(["metric", "info", str(path)]) == 0
    out = capsys.readouterr().out
    head, config = out.split("config: ", 1)
    lines = head.splitlines()
    assert lines[0] == (
        f"{path}: asccl metric checkpoint (format asccl-metric v1), written by asccl {__version__}"
    )
    assert lines[1].startswith(f"tensors: {len(metric.state_dict())} (")
    assert lines[2].startswith(
        "input: (B, 3, 224, 224) float, values in [-1, 1], channel order bgr"
    )
    assert lines[3] == (
        "loss arithmetic: asccl's, not the authors' "
        '(negatives = "random", authors_window = false, adaptive = "pair")'
    )
    assert json.loads(config) == metric.config.to_dict()
    authors = save_metric(
        ASCCLMetric(
            metric.config.replace(negatives="patch", adaptive="authors", authors_window=True)
        ),
        tmp_path / "a.safetensors",
    )
    assert main(["metric", "info", str(authors)]) == 0
    assert "loss arithmetic: the authors' (" in capsys.readouterr().out


def test_authors_compat_at_load_sets_only_the_arithmetic(metric, tmp_path):
    from asccl.metric.config import AUTHORS_ARITHMETIC

    path = save_metric(metric, tmp_path / "m.safetensors")
    compat = load_metric(path, authors_compat=True).config
    assert compat.authors_differences() == {}
    assert compat == metric.config.replace(**AUTHORS_ARITHMETIC)  # channel order kept: bgr
    assert load_metric(path, authors_compat=False).config == metric.config
    assert load_metric(path, authors_compat=True, adaptive="off").config.adaptive == "off"


def test_safetensors_bytes_under_another_suffix_are_read(metric, tmp_path):
    """The reader goes by content: a metric renamed to .pth is still safetensors."""
    from asccl.io import read_weights

    path = tmp_path / "renamed.pth"
    path.write_bytes(save_metric(metric, tmp_path / "m.safetensors").read_bytes())
    state = read_weights(path)
    assert all(torch.equal(state[k], v) for k, v in metric.state_dict().items())


def test_the_speakers_a_metric_trained_on_are_in_its_header(metric, tmp_path, capsys):
    """Recorded sorted, after the older keys, the same bytes every time; a file without the
    record (written before it existed) still loads, and says it records none."""
    from asccl.cli import main
    from asccl.metric.checkpoint import read_metric_speakers

    speakers = {"train": ["W902", "W901"], "validation": ["W903"]}
    paths = [save_metric(metric, tmp_path / f"s{i}.safetensors", speakers=speakers)
             for i in range(2)]  # fmt: skip
    assert paths[0].read_bytes() == paths[1].read_bytes()
    assert read_metric_speakers(paths[0]) == {"train": ("W901", "W902"), "validation": ("W903",)}
    keys = [k for k, _ in _header(paths[0])[0][1]]
    assert keys == ["asccl_version", "config", "format", "format_version", "speakers"]
    assert same_loss(load_metric(paths[0]).eval(), metric)
    assert main(["metric", "info", str(paths[0])]) == 0
    assert "speakers: trained on W901, W902; validated on W903" in capsys.readouterr().out
    old = save_metric(metric, tmp_path / "old.safetensors")
    assert read_metric_speakers(old) is None and same_loss(load_metric(old).eval(), metric)
    assert main(["metric", "info", str(old)]) == 0
    assert "speakers: not recorded" in capsys.readouterr().out


@pytest.mark.parametrize("record", ['["W901"]', '{"train": ["W901"]}', '{"train": [1], '
                                    '"validation": []}', "not json"])  # fmt: skip
def test_a_bad_speakers_record_is_one_line(metric, tmp_path, record):
    from asccl.io import read_safetensors_metadata, read_weights, save_safetensors
    from asccl.metric.checkpoint import read_metric_speakers

    good = save_metric(metric, tmp_path / "good.safetensors")
    metadata = {**read_safetensors_metadata(good), "speakers": record}
    bad = save_safetensors(read_weights(good), tmp_path / "bad.safetensors", metadata)
    with pytest.raises(CheckpointError, match="bad speakers record in its header") as err:
        read_metric_speakers(bad)
    assert "\n" not in str(err.value) and str(bad) in str(err.value)


def test_train_metric_records_its_training_and_validation_speakers(tmp_path):
    """One step on a tiny stage 1 (speakers A01, B02; B02 validates): the final file and
    every checkpoint's say so."""
    from tests.spfem.test_data import write_stage1

    from asccl.metric import MetricConfig
    from asccl.metric.checkpoint import read_metric_speakers
    from asccl.training.config import TrainConfig
    from asccl.training.train_metric import train_metric

    data = write_stage1(tmp_path / "data")
    config = TrainConfig(data=data, out=tmp_path / "run", init="random", val_speakers=["B02"],
                         batch_size=4, max_steps=1, checkpoint_every=1, val_every=0,
                         val_batches=1, log_every=1, workers=0, device="cpu",
                         metric=MetricConfig(backbone="iresnet18", image_size=64,
                                             num_anchors=(8, 4, 4, 2)))  # fmt: skip
    final = train_metric(config)
    written = [final, *sorted((tmp_path / "run" / "checkpoints").rglob("metric.safetensors"))]
    assert len(written) == 2
    for path in written:
        assert read_metric_speakers(path) == {"train": ("A01",), "validation": ("B02",)}
