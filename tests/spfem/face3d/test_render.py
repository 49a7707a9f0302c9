"""The renderer: conventions, occlusion, culling, determinism, memory chunking, gradients."""

from __future__ import annotations

import pytest
import torch

from asccl.spfem.face3d import MeshRenderer, orthographic_project, synthetic_flame, to_pixels
from asccl.spfem.face3d.rasterize import soft_rasterize

QUAD = torch.tensor([[0, 1, 2], [0, 2, 3]])  # counter-clockwise seen from +z (the camera)


def quad(half: float, depth: float = 0.0, dtype=torch.float32) -> torch.Tensor:
    """A square facing the camera, in FLAME's frame (y up, camera on +z): (4, 3)."""
    h = half
    return torch.tensor(
        [[-h, -h, depth], [h, -h, depth], [h, h, depth], [-h, h, depth]], dtype=dtype
    )


def render_world(vertices, faces, size=16, **kwargs):
    camera = torch.tensor([[1.0, 0.0, 0.0]], dtype=vertices.dtype).expand(len(vertices), 3)
    renderer = MeshRenderer(size, **kwargs)
    return renderer(vertices, faces, orthographic_project(vertices, camera))


def test_a_facing_quad_is_drawn_where_the_camera_puts_it():
    out = render_world(quad(0.5)[None], QUAD, size=16)
    assert out.image.shape == (1, 3, 16, 16) and out.mask.shape == (1, 1, 16, 16)
    assert out.mask[0, 0, 8, 8] > 0.99  # the centre is covered
    assert out.mask[0, 0, 0, 0] < 1e-6 and out.mask[0, 0, 15, 15] < 1e-6  # corners are not
    # at 32 px the quad spans [-0.5, 0.5] -> pixels [8, 24]; pixel centres at +0.5: columns 7
    # and 8 sit 0.5 px outside and inside the left edge (far from the diagonal), sigmoid(-+1)
    row = render_world(quad(0.5)[None], QUAD, size=32).mask[0, 0, 12]
    torch.testing.assert_close(row[7], torch.sigmoid(torch.tensor(-1.0)))
    torch.testing.assert_close(row[8], torch.sigmoid(torch.tensor(1.0)))
    torch.testing.assert_close(row[23] + row[24], torch.tensor(1.0))
    assert (out.mask[0, 0, 6:10, 6:10] > 0.98).all()
    assert out.image.min() >= 0.0 and out.image.max() <= 1.0
    # facing the light (0, 0.4, 1) normalised: grey = 0.3 + 0.7 * 1 / sqrt(1.16)
    expected = 0.3 + 0.7 / (1.16**0.5)
    torch.testing.assert_close(out.image[0, :, 8, 8], torch.full((3,), expected))
    normals = render_world(quad(0.5)[None], QUAD, size=16, mode="normals")
    torch.testing.assert_close(normals.image[0, :, 8, 8], torch.tensor([0.5, 0.5, 1.0]))


def test_back_faces_are_culled_unless_asked():
    flipped = QUAD[:, [0, 2, 1]]  # clockwise: faces away from the camera
    culled = render_world(quad(0.5)[None], flipped)
    assert culled.mask.max() < 1e-6
    camera = torch.tensor([[1.0, 0.0, 0.0]])
    pixels = to_pixels(orthographic_project(quad(0.5)[None], camera), 16, 16)
    _, alpha = soft_rasterize(pixels, flipped, torch.ones(1, 4, 1), 16, 16, cull_backfaces=False)
    assert alpha[0, 0, 8, 8] > 0.99


@pytest.mark.parametrize("near_first", [True, False])
def test_the_nearer_surface_wins(near_first):
    near, far = quad(0.3, depth=0.5), quad(0.6, depth=0.0)  # larger z is nearer the camera
    vertices = torch.cat([near, far] if near_first else [far, near])[None]
    faces = torch.cat([QUAD, QUAD + 4])
    red, green = torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.0, 1.0, 0.0])
    colors = (
        torch.stack([red] * 4 + [green] * 4) if near_first else torch.stack([green] * 4 + [red] * 4)
    )
    pixels = to_pixels(orthographic_project(vertices, torch.tensor([[1.0, 0.0, 0.0]])), 32, 32)
    surface, alpha = soft_rasterize(pixels, faces, colors[None], 32, 32)
    torch.testing.assert_close(surface[0, :, 16, 16], red)  # inside both: the near one
    torch.testing.assert_close(surface[0, :, 16, 8], green)  # beyond the near one's margin
    assert alpha[0, 0, 16, 8] > 0.97


def test_renders_are_deterministic_and_chunking_changes_nothing():
    torch.manual_seed(0)  # the thresholds below were checked on this draw
    model = synthetic_flame(12, 12)
    vertices = model(
        expression=torch.randn(2, model.n_exp), jaw_pose=torch.tensor([[0.2, 0, 0]] * 2)
    )
    camera = torch.tensor([[6.0, 0.0, 0.0], [5.0, 0.05, -0.02]])
    screen = orthographic_project(vertices, camera)
    first = MeshRenderer(40)(vertices, model.faces, screen)
    again = MeshRenderer(40)(vertices, model.faces, screen)
    assert torch.equal(first.image, again.image) and torch.equal(first.mask, again.mask)
    small_chunks = MeshRenderer(40, max_elements=64)(vertices, model.faces, screen)
    torch.testing.assert_close(small_chunks.image, first.image)
    other_tiles = MeshRenderer(40, tile=8)(vertices, model.faces, screen)
    assert (other_tiles.image - first.image).abs().max() < 1e-2
    assert (other_tiles.image - first.image).abs().mean() < 1e-4
    assert first.mask[0].mean() > 0.2 and first.mask[0, 0, 0, 0] < 1e-6


def test_the_batch_is_independent():
    torch.manual_seed(0)  # the thresholds below were checked on this draw
    model = synthetic_flame(10, 10)
    vertices = model(expression=torch.randn(2, model.n_exp))
    camera = torch.tensor([[6.0, 0.0, 0.0]] * 2)
    screen = orthographic_project(vertices, camera)
    both = MeshRenderer(24)(vertices, model.faces, screen).image
    one = MeshRenderer(24)(vertices[1:], model.faces, screen[1:]).image
    torch.testing.assert_close(both[1:], one)


def test_gradcheck_on_a_tiny_mesh():
    torch.manual_seed(0)
    torch.manual_seed(0)
    base = quad(0.55, dtype=torch.float64) + 0.07 * torch.randn(4, 3, dtype=torch.float64)
    base[:, 2] = torch.tensor([0.0, 0.1, 0.05, -0.05], dtype=torch.float64)
    camera = torch.tensor([[1.0, 0.02, -0.03]], dtype=torch.float64)
    renderer = MeshRenderer(6, sigma=1.0)

    def image(vertices):
        out = renderer(vertices[None], QUAD, orthographic_project(vertices[None], camera))
        return out.image, out.mask

    vertices = base.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(image, (vertices,), eps=1e-6, atol=1e-5)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="unknown mode"):
        MeshRenderer(16, mode="wireframe")
    with pytest.raises(ValueError, match="backend"):
        MeshRenderer(16, backend="opengl")
    with pytest.raises(ValueError, match=r"\(B, V, 3\)"):
        MeshRenderer(16)(torch.zeros(1, 4, 3), QUAD, torch.zeros(1, 5, 3))


def test_a_flame_sized_batch_of_two_renders_and_backpropagates_at_224():
    from asccl.spfem.face3d.synthetic import FLAME_SIZED_GRID

    model = synthetic_flame(*FLAME_SIZED_GRID)
    assert model.v_template.shape[0] > 5000 and model.faces.shape[0] > 9900  # FLAME: 5023, 9976
    expression = torch.zeros(2, model.n_exp, requires_grad=True)
    vertices = model(expression=expression)
    camera = torch.tensor([[7.0, 0.0, 0.0]] * 2)
    out = MeshRenderer(224)(vertices, model.faces, orthographic_project(vertices, camera))
    assert out.image.shape == (2, 3, 224, 224)
    out.image.mean().backward()
    assert torch.isfinite(expression.grad).all() and expression.grad.abs().sum() > 0


@pytest.mark.cuda
def test_cuda_renders_match_cpu_and_nvdiffrast_roughly_agrees():
    torch.manual_seed(0)  # the thresholds below were checked on this draw
    model = synthetic_flame(24, 24)
    vertices = model(expression=torch.randn(2, model.n_exp))
    camera = torch.tensor([[6.0, 0.0, 0.0]] * 2)
    screen = orthographic_project(vertices, camera)
    cpu = MeshRenderer(64)(vertices, model.faces, screen)
    cuda = MeshRenderer(64)(vertices.cuda(), model.faces.cuda(), screen.cuda())
    torch.testing.assert_close(cuda.image.cpu(), cpu.image, atol=1e-4, rtol=1e-4)
    pytest.importorskip("nvdiffrast.torch")
    hard = MeshRenderer(64, backend="nvdiffrast")(
        vertices.cuda(), model.faces.cuda(), screen.cuda()
    )
    inside = (hard.mask.cpu() > 0.5) & (cpu.mask > 0.5)
    union = (hard.mask.cpu() > 0.5) | (cpu.mask > 0.5)
    assert inside.sum() / union.sum() > 0.95  # same silhouette, up to antialiasing
    assert (hard.image.cpu() - cpu.image)[inside.expand_as(cpu.image)].abs().mean() < 0.05
