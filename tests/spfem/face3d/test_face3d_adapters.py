"""Coefficient adapters: layouts, frames, cameras, the protocol, the name dict."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from asccl.spfem import SPFEMAdapter
from asccl.spfem.face3d import (
    BFM,
    DSMAdapter,
    MeshRenderer,
    NEDStage1Adapter,
    get_coefficient_adapter,
    synthetic_flame,
)
from asccl.spfem.face3d.synthetic import head_mesh

B, T, E = 2, 3, 4


@pytest.fixture(scope="module")
def flame():
    return synthetic_flame(10, 10, n_shape=2, n_exp=E, shape_total=2, exp_total=E, seed=0)


@pytest.fixture(scope="module")
def renderer():
    return MeshRenderer(24)


def deca_batch(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    jaw = torch.zeros(B, T, 3)
    jaw[..., 0] = 0.2 * torch.rand(B, T, generator=g)
    return {"exp": torch.randn(B, T, E, generator=g), "jaw_pose": jaw}


def test_adapters_satisfy_the_protocol(flame, renderer):
    for name in ("ned_stage1", "dsm"):
        adapter = get_coefficient_adapter(name, model=flame, renderer=renderer)
        assert isinstance(adapter, SPFEMAdapter)
        assert adapter.value_range == (0.0, 1.0) and adapter.channel_order == "rgb"


def test_ned_packed_layout_renders_like_the_deca_layout(flame, renderer):
    src, out = deca_batch(0), deca_batch(1)
    deca = NEDStage1Adapter(flame, renderer)
    pair = deca.pair(src, out)
    assert pair.generated.shape == (B * T, 3, 24, 24) and pair.reference is None
    assert pair.generated.max() <= 1 and pair.generated.min() >= 0
    pack = lambda d: torch.cat([d["jaw_pose"][..., :1], d["exp"]], -1)  # noqa: E731
    ned = NEDStage1Adapter(flame, renderer, layout="ned")
    packed = ned.pair({"x_real": pack(src)}, {"x_fake": pack(out)})
    torch.testing.assert_close(packed.generated, pair.generated)
    torch.testing.assert_close(packed.source, pair.source)
    as_tensor = ned.pair({"x_real": pack(src)}, pack(out))  # outputs may be the tensor itself
    torch.testing.assert_close(as_tensor.generated, pair.generated)


def test_last_frame_and_camera_from_the_batch(flame, renderer):
    src, out = deca_batch(0), deca_batch(1)
    every = NEDStage1Adapter(flame, renderer).pair(src, out).generated
    last = NEDStage1Adapter(flame, renderer, frames="last").pair(src, out).generated
    assert last.shape == (B, 3, 24, 24)
    torch.testing.assert_close(last, every.unflatten(0, (B, T))[:, -1])
    per_sequence = dict(src, cam=torch.tensor([[5.0, 0.02, 0.0], [8.0, 0.0, 0.01]]))
    per_frame = dict(src, cam=per_sequence["cam"][:, None].expand(B, T, 3))
    a = NEDStage1Adapter(flame, renderer).pair(per_sequence, out).generated
    b = NEDStage1Adapter(flame, renderer).pair(per_frame, out).generated
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, every)  # the camera is used (default is [6, 0, 0])


def test_errors_name_what_is_missing(flame, renderer):
    adapter = NEDStage1Adapter(flame, renderer)
    with pytest.raises(KeyError, match="has no 'jaw_pose'"):
        adapter.pair({"exp": torch.zeros(B, T, E)}, deca_batch())
    ned = NEDStage1Adapter(flame, renderer, layout="ned")
    with pytest.raises(ValueError, match="1 jaw opening"):
        ned.pair({"x_real": torch.zeros(B, T, E)}, {"x_fake": torch.zeros(B, T, E)})
    with pytest.raises(ValueError, match="valid names"):
        get_coefficient_adapter("ganimation", model=flame)
    with pytest.raises(ValueError, match="layout"):
        NEDStage1Adapter(flame, renderer, layout="emoca")
    coefficients = adapter.coefficients(deca_batch(), "batch")
    expects = r"render expects coefficients as a mapping .* batch as the loader's mapping"
    for args in ((coefficients, torch.zeros(B, T, E)), (torch.zeros(B, T, E), deca_batch())):
        with pytest.raises(TypeError, match=expects) as info:
            adapter.render(*args)
        assert "\n" not in str(info.value) and "Tensor" in str(info.value)
    with pytest.raises(TypeError, match=expects):  # a packed tensor passed as the batch
        ned.pair(torch.zeros(B, T, E + 1), torch.zeros(B, T, E + 1))


def test_dsm_with_flame_and_with_bfm(flame, renderer):
    g = torch.Generator().manual_seed(0)
    batch = {"expression": torch.randn(B, T, E, generator=g)}
    outputs = {"expression": batch["expression"] + 0.3 * torch.randn(B, T, E, generator=g)}
    pair = DSMAdapter(flame, renderer).pair(batch, outputs)
    assert pair.generated.shape == (B * T, 3, 24, 24)
    assert not torch.allclose(pair.generated, pair.source)

    verts, faces = head_mesh(8, 10)
    rng = np.random.default_rng(0)
    bfm = BFM(
        {
            "meanshape": verts.reshape(1, -1) * 10,  # decimetres, like BFM_model_front.mat
            "idBase": rng.normal(0, 0.01, (verts.size, 5)),
            "exBase": rng.normal(0, 0.01, (verts.size, E)),
            "tri": faces + 1,
        }
    )
    bfm_batch = dict(batch, angles=torch.zeros(B, 3), translation=torch.zeros(B, T, 3))
    pair = DSMAdapter(bfm, renderer).pair(bfm_batch, outputs)
    assert pair.generated.shape == (B * T, 3, 24, 24)
    assert pair.source.mean() > 0.05  # the perspective camera puts the face in view
