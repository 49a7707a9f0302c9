"""to_metric_input: the one image contract (range to [-1, 1], channel order, size)."""

import pytest
import torch
import torch.nn.functional as F

from asccl.metric.preprocess import to_metric_input


def uint8_images(batch=2, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, 3, size, size), generator=g, dtype=torch.uint8)


def test_uint8_is_x_over_127_5_minus_1_exactly():
    every = torch.arange(256, dtype=torch.uint8).reshape(1, 1, 16, 16).expand(1, 3, 16, 16)
    x = to_metric_input(every)
    assert x.dtype == torch.float32
    assert torch.equal(x, every.float() / 127.5 - 1)
    assert x.min() == -1 and x.max() == 1  # the ends are exact


def test_uint8_resize_then_scale_stays_in_range():
    """Antialiased bilinear weights are normalised in float32, so a resize of 0..255 can
    land a few 1e-5 above 255: decoded frames are clamped, as they cannot exceed it."""
    frames = uint8_images(2, 128, seed=1)
    frames[0] = 255  # a white frame: 128 -> 56 gives 255 + 6e-5 in float32
    x = to_metric_input(frames, size=56)
    reference = F.interpolate(frames.float(), size=(56, 56), mode="bilinear",
                              antialias=True, align_corners=False) / 127.5 - 1  # fmt: skip
    assert reference.max() > 1  # the overshoot this guards against
    assert torch.equal(x, reference.clamp(-1, 1))


def test_float_ranges_channel_order_and_size():
    x = uint8_images(2, 16, seed=2).float() / 127.5 - 1
    torch.testing.assert_close(to_metric_input((x + 1) / 2, input_range=(0, 1)), x)
    torch.testing.assert_close(to_metric_input(x * 127.5 + 127.5, input_range=(0, 255)), x)
    assert torch.equal(to_metric_input(x, flip_channels=True), x.flip(1))
    assert torch.equal(to_metric_input(x), x)  # already the convention: untouched
    small = to_metric_input(x, size=8)
    expected = F.interpolate(x, size=(8, 8), mode="bilinear", antialias=True, align_corners=False)
    assert torch.equal(small, expected)


def test_float_inputs_are_not_clamped_and_keep_gradients():
    x = torch.full((1, 3, 4, 4), 1.5, requires_grad=True)  # a generator overshooting
    y = to_metric_input(x)
    assert y.max() == 1.5
    y.sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\), got \(3, 4, 4\)"):
        to_metric_input(torch.zeros(3, 4, 4))
    with pytest.raises(ValueError, match=r"uint8 images hold 0\.\.255, but input_range is \(-1"):
        to_metric_input(uint8_images(), input_range=(-1, 1))
    with pytest.raises(TypeError, match="floating-point or uint8"):
        to_metric_input(torch.zeros(1, 3, 4, 4, dtype=torch.int32))
    with pytest.raises(ValueError, match="low < high"):
        to_metric_input(torch.zeros(1, 3, 4, 4), input_range=(1, 0))
