import pytest
import torch

from asccl.spfem import ADAPTERS, ImagePair, KeyedAdapter, SPFEMAdapter, get_adapter

B, H, W = 2, 16, 12


def images(channels=3, value=0.0):
    return torch.full((B, channels, H, W), value)


def test_every_adapter_is_an_spfem_adapter_and_declares_its_conventions():
    assert set(ADAPTERS) == {"image2image", "ned_renderer", "icface", "ganmut"}
    for name, adapter in ADAPTERS.items():
        assert isinstance(adapter, SPFEMAdapter)
        assert adapter.value_range == (-1.0, 1.0)
        # GANmut's loader reads with OpenCV and never swaps channels: BGR
        assert adapter.channel_order == ("bgr" if name == "ganmut" else "rgb")


@pytest.mark.parametrize(
    ("name", "generated_key", "source_key"),
    [
        ("image2image", "generated", "source"),
        ("icface", "generated", "source"),
        ("ganmut", "generated", "image"),
        ("ned_renderer", "fake_B", "real_B"),
    ],
)
def test_each_adapter_maps_a_fake_batch(name, generated_key, source_key):
    batch = {source_key: images(value=1.0), "other": torch.zeros(1)}
    outputs = {generated_key: images(value=-1.0)}
    pair = get_adapter(name).pair(batch, outputs)
    assert isinstance(pair, ImagePair)
    assert pair.generated.shape == pair.source.shape == (B, 3, H, W)
    assert torch.all(pair.generated == -1) and torch.all(pair.source == 1)
    assert pair.reference is None
    assert pair.value_range == (-1.0, 1.0)
    assert pair.channel_order == ("bgr" if name == "ganmut" else "rgb")


def test_image2image_carries_an_optional_reference_and_accepts_a_tensor_output():
    adapter = get_adapter("image2image")
    generated = images(value=0.5)
    pair = adapter.pair({"source": images(), "reference": images(value=0.25)}, generated)
    assert pair.generated is generated
    assert torch.all(pair.reference == 0.25)
    assert adapter.pair({"source": images()}, generated).reference is None


def test_frames_last_takes_the_last_frame_of_a_stacked_window():
    frames = torch.arange(3.0).view(1, 3, 1, 1, 1).expand(B, 3, 3, H, W)  # (B, T, 3, H, W)
    batch = {"real_B": frames.flatten(1, 2)}  # (B, T*3, H, W): frame t holds value t
    outputs = {"fake_B": frames}
    pair = get_adapter("ned_renderer", frames="last").pair(batch, outputs)
    assert pair.source.shape == pair.generated.shape == (B, 3, H, W)
    assert torch.all(pair.source == 2) and torch.all(pair.generated == 2)


def test_ned_renderer_folds_its_whole_window_into_the_batch_by_default():
    # NED's renderer generates every frame of its window in one step
    window = torch.arange(2.0).view(1, 2, 1, 1, 1).expand(B, 2, 3, H, W).flatten(1, 2)
    pair = get_adapter("ned_renderer").pair({"real_B": window}, {"fake_B": window})
    assert pair.source.shape == (B * 2, 3, H, W)
    assert pair.source[:, 0, 0, 0].tolist() == [0.0, 1.0, 0.0, 1.0]


def test_keys_range_and_order_are_configurable():
    adapter = get_adapter(
        "icface", generated_key="out", source_key="in", value_range=(0.0, 1.0), channel_order="bgr"
    )
    pair = adapter.pair({"in": images()}, {"out": images()})
    assert (pair.value_range, pair.channel_order) == ((0.0, 1.0), "bgr")
    assert ADAPTERS["icface"].value_range == (-1.0, 1.0)  # the registered one is unchanged


def test_a_value_range_list_becomes_a_float_tuple_and_bad_ones_are_named():
    adapter = get_adapter("image2image", value_range=[0, 1])  # as a YAML/JSON config gives it
    assert adapter.value_range == (0.0, 1.0) and type(adapter.value_range) is tuple
    assert all(type(v) is float for v in adapter.value_range)
    assert adapter.pair({"source": images()}, images()).value_range == (0.0, 1.0)
    for bad in ([1, 0], (0.0,), "ab", None, [0, float("nan")]):
        with pytest.raises(ValueError, match="value_range must be") as info:
            get_adapter("icface", value_range=bad)
        assert "\n" not in str(info.value)


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"ganmut.*icface.*image2image.*ned_renderer"):
        get_adapter("stargan")


def test_errors_name_the_missing_key_and_the_bad_shape():
    adapter = get_adapter("ganmut")
    with pytest.raises(KeyError, match=r"'image'.*'img'"):
        adapter.pair({"img": images()}, {"generated": images()})
    with pytest.raises(ValueError, match=r"\(2, 4, 16, 12\)"):
        adapter.pair({"image": images(channels=4)}, {"generated": images()})
    with pytest.raises(ValueError, match="same shape"):
        adapter.pair({"image": images()}, {"generated": images()[:, :, :8]})
    with pytest.raises(ValueError, match="channel_order"):
        KeyedAdapter("a", "b", channel_order="rbg")
