"""The chain carries signal: coefficients are recovered through the renderer, and the ASCCL
term's gradient reaches the generator's coefficients."""

from __future__ import annotations

import torch

from asccl.spfem import ASCCLSupervision
from asccl.spfem.face3d import (
    MeshRenderer,
    get_coefficient_adapter,
    orthographic_project,
    synthetic_flame,
)


def test_expression_is_recovered_by_gradient_descent_through_the_renderer():
    model = synthetic_flame(16, 16, n_shape=2, n_exp=3, shape_total=2, exp_total=3, seed=1)
    renderer = MeshRenderer(48, mode="normals", sigma=0.7)
    camera = torch.tensor([[7.0, 0.0, 0.0]])
    target = torch.tensor([[1.5, -1.0, 0.8]])

    def render(expression):
        vertices = model(expression=expression)
        return renderer(vertices, model.faces, orthographic_project(vertices, camera)).image

    with torch.no_grad():
        goal = render(target)
    expression = torch.zeros(1, 3, requires_grad=True)
    optimiser = torch.optim.Adam([expression], lr=0.1)
    first = None
    for _ in range(70):
        loss = (render(expression) - goal).pow(2).mean()
        first = first if first is not None else loss.item()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    assert loss.item() < first * 1e-2
    assert (expression.detach() - target).abs().max() < 0.1


def test_the_asccl_gradient_reaches_the_coefficients(small_metric):
    model = synthetic_flame(12, 12, n_shape=2, n_exp=4, shape_total=2, exp_total=4, seed=2)
    adapter = get_coefficient_adapter(
        "ned_stage1", model=model, renderer=MeshRenderer(56), layout="ned", frames="last"
    )
    asccl = ASCCLSupervision(metric=small_metric, adapter=adapter)
    g = torch.Generator().manual_seed(0)
    x_real = torch.randn(2, 3, 5, generator=g)  # (B, T, 1 jaw opening + 4 expression)
    x_real[..., 0] = 0.1 * x_real[..., 0].abs()
    x_fake = (x_real + 0.5 * torch.randn(2, 3, 5, generator=g)).requires_grad_(True)
    batch = {"x_real": x_real, "cam": torch.tensor([[6.0, 0.0, 0.0], [7.0, 0.01, 0.02]])}
    loss, logs = asccl(
        batch, {"x_fake": x_fake}, step=0, generator=torch.Generator().manual_seed(1)
    )
    loss.backward()
    assert torch.isfinite(loss) and logs["asccl_weight"] == 1.0
    grad = x_fake.grad
    assert torch.isfinite(grad).all()
    assert grad[:, -1, 1:].abs().sum() > 0  # expression of the rendered (last) frame
    assert grad[:, -1, 0].abs().sum() > 0  # its jaw opening
    assert grad[:, :-1].abs().sum() == 0  # frames="last": earlier frames are not rendered
