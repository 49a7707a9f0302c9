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
    with pytest.raises(CheckpointError, match=r"nope\.safetensors: no such file"):
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
