"""The renderer: conventions, occlusion, culling, determinism, memory chunking, gradients."""

from __future__ import annotations

import pytest
import torch

from asccl.spfem.face3d import MeshRenderer, orthographic_project, synthetic_flame, to_pixels
from asccl.spfem.face3d.rasterize import MARGIN_SIGMAS, coverage, soft_rasterize

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
    # and 8 sit 0.5 px outside and inside the left edge (far from the diagonal): d = -+1 sigma,
    # the logistic edge rescaled to 0 at -5 sigma and 1 at +5 sigma (c = sigmoid(-5))
    row = render_world(quad(0.5)[None], QUAD, size=32).mask[0, 0, 12]
    c = torch.sigmoid(torch.tensor(-5.0))
    torch.testing.assert_close(row[7], (torch.sigmoid(torch.tensor(-1.0)) - c) / (1 - 2 * c))
    torch.testing.assert_close(row[8], (torch.sigmoid(torch.tensor(1.0)) - c) / (1 - 2 * c))
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


def near_over_far(dtype=torch.float64):
    """A near quad (half 0.3, pixels 11.2..20.8 at 32 px) over a far one (half 0.6, pixels
    6.4..25.6): ``(1, 8, 3)`` pixels and ``(4, 3)`` faces (float64)."""
    vertices = torch.cat([quad(0.3, 0.5, dtype), quad(0.6, 0.0, dtype)])[None]
    camera = torch.tensor([[1.0, 0.0, 0.0]], dtype=dtype)
    return to_pixels(orthographic_project(vertices, camera), 32, 32), torch.cat([QUAD, QUAD + 4])


@pytest.mark.parametrize("near_grey, far_grey", [(0.3, 0.8), (0.8, 0.3)])
def test_occlusion_edges_keep_full_alpha_and_blend_the_two_surfaces(near_grey, far_grey):
    pixels, faces = near_over_far()
    greys = torch.tensor([near_grey] * 4 + [far_grey] * 4, dtype=torch.float64)
    surface, alpha = soft_rasterize(pixels, faces, greys[None, :, None], 32, 32, sigma=0.5)
    # pixel centres more than 5 sigma = 2.5 px inside the far quad: columns/rows 9..22. There
    # every point lies on a surface: the far quad's coverages sum to 1 (to ~1e-15, see the
    # coverage test; its diagonal's two distances agree to ~1e-13 px in float64, coverage slope
    # <= 0.51 / px), so alpha = min(1, near + far) is 1 to 1e-12 along the near quad's edges too
    inner = alpha[0, 0, 9:23, 9:23]
    torch.testing.assert_close(inner, torch.ones_like(inner), rtol=0, atol=1e-12)
    image = alpha * surface  # over a black background
    region = image[0, 0, 9:23, 9:23]
    low, high = min(near_grey, far_grey), max(near_grey, far_grey)
    assert region.min() >= low - 1e-12 and region.max() <= high + 1e-12  # no dark outline
    # row 16, column 11 (centre 11.5) lies 0.3 px inside the near quad's left edge and >= 3 px
    # from both diagonals and from the far quad's boundary: the near quad covers D(0.3) of it
    # and the rest shows the far quad behind (antialiased, not darkened towards black)
    d = coverage(torch.tensor(0.3, dtype=torch.float64), 0.5)
    torch.testing.assert_close(image[0, 0, 16, 11], d * near_grey + (1 - d) * far_grey)


def test_an_occlusion_edge_passes_gradients_to_the_nearer_surface():
    torch.manual_seed(0)
    pixels, faces = near_over_far()
    pixels = pixels + 0.05 * torch.randn_like(pixels)  # off any inside or depth-test tie
    greys = torch.tensor([0.3] * 4 + [0.8] * 4, dtype=torch.float64)[None, :, None]
    near = pixels[:, :4].clone().requires_grad_(True)

    def render(near):  # a window around the near quad's left edge (column 11.2), inside the far
        surface, alpha = soft_rasterize(torch.cat([near, pixels[:, 4:]], 1), faces, greys, 32, 32)
        return (alpha * surface)[..., 13:19, 9:14], alpha[..., 13:19, 9:14]

    assert torch.autograd.gradcheck(render, (near,), eps=1e-6, atol=1e-5)
    image, _ = render(near)
    image[0, 0, 3, 2].backward()  # pixel (16, 11): the near quad covers ~0.65 of it
    assert near.grad[0, :, 0].abs().sum() > 0.1  # moving the edge changes the blend


def test_the_mask_of_a_sheet_without_overlap_does_not_depend_on_its_depths():
    # a tilted 8 x 8 grid: at 32 px a cell is ~3.7 px and the depth step per cell (~0.14) is far
    # over the tolerance (0.02 x 0.96), so the depth test excludes the neighbours whose margins
    # reach a pixel; they are beside it, not behind. Coverage depends only on the projected
    # (x, y), which an orthographic camera takes from x, y alone, and alpha sums every
    # front-facing triangle's: the same tensors summed in the same order, so exactly equal
    # (the old visible-only alpha differed by up to 0.21 here)
    n = 8
    g = torch.linspace(-0.8, 0.8, n, dtype=torch.float64)
    y, x = torch.meshgrid(g, g, indexing="ij")
    i = torch.arange(n * n).reshape(n, n)
    a, b, c, d = i[:-1, :-1], i[:-1, 1:], i[1:, :-1], i[1:, 1:]
    faces = torch.cat([torch.stack([a, c, b], -1), torch.stack([b, c, d], -1)]).reshape(-1, 3)
    camera = torch.tensor([[1.0, 0.03, -0.02]], dtype=torch.float64)
    generator = torch.Generator().manual_seed(0)
    colors = torch.rand(1, n * n, 3, dtype=torch.float64, generator=generator)
    masks = []
    for z in (0.6 * x, torch.zeros_like(x)):
        vertices = torch.stack([x, -y, z], -1).reshape(1, -1, 3)
        pixels = to_pixels(orthographic_project(vertices, camera), 32, 32)
        masks.append(soft_rasterize(pixels, faces, colors, 32, 32)[1])
    assert masks[0].amax() == 1 and torch.equal(masks[0], masks[1])


def test_a_single_triangle_matches_the_coverage_formula():
    # no occlusion anywhere: the renderer is the documented formula, per pixel, computed here
    # independently (float64). Outside, the renderer's distance is sqrt(d^2 + 1e-12), off by
    # at most sqrt(1e-12) = 1e-6 px; coverage slope <= 1 / (4 sigma (1 - 2c)) < 0.37 / px at
    # sigma 0.7: alpha within 3.7e-7. The interpolation only rounds (~1e-13): 1e-12.
    tri = torch.tensor([[[3.2, 2.7, 0.0], [4.1, 13.6, 0.2], [14.3, 9.8, 0.1]]], dtype=torch.float64)
    values = torch.tensor([[[0.2], [0.5], [0.9]]], dtype=torch.float64)
    surface, alpha = soft_rasterize(tri, torch.tensor([[0, 1, 2]]), values, 16, 18, sigma=0.7,
                                    cull_backfaces=False)  # fmt: skip
    rows, cols = torch.meshgrid(torch.arange(16.0), torch.arange(18.0), indexing="ij")
    p = torch.stack([cols + 0.5, rows + 0.5], -1).to(torch.float64)  # (H, W, 2) as (x, y)
    corners = tri[0, :, :2]
    perp, seg, bary = [], [], []
    for i in range(3):
        a, b = corners[(i + 1) % 3], corners[(i + 2) % 3]  # the edge opposite vertex i
        edge = b - a
        side_p = edge[0] * (p[..., 1] - a[1]) - edge[1] * (p[..., 0] - a[0])  # (H, W)
        side_v = edge[0] * (corners[i, 1] - a[1]) - edge[1] * (corners[i, 0] - a[0])
        bary.append(side_p / side_v)
        perp.append(bary[-1] * side_v.abs() / edge.norm())
        t = (((p - a) @ edge) / (edge @ edge)).clamp(0, 1)
        seg.append((p - a - t[..., None] * edge).norm(dim=-1))
    perp, seg, bary = torch.stack(perp, -1), torch.stack(seg, -1), torch.stack(bary, -1)
    inner = perp.amin(-1)
    dist = torch.where(inner >= 0, inner, -seg.amin(-1))
    expected_alpha = coverage(dist, 0.7)
    torch.testing.assert_close(alpha[0, 0], expected_alpha, rtol=0, atol=3.7e-7)
    weights = bary.clamp_min(0)
    expected = (weights / weights.sum(-1, keepdim=True)) @ values[0, :, 0]
    drawn = expected_alpha > 0
    torch.testing.assert_close(surface[0, 0][drawn], expected[drawn], rtol=0, atol=1e-12)
    assert (surface[0, 0][~drawn] == 0).all()


#: Off-centre cameras for the comparisons below. With the camera centred ([6, 0, 0]) the
#: symmetric synthetic head's middle edge lies on x = 20.0 px exactly, 2.5 px = the 5 sigma
#: coverage cut from the pixel centres 17.5 and 22.5: a tie that float rounding decides (it
#: moved a pixel by up to sigmoid(-5) = 6.7e-3 while coverage jumped there; it is continuous
#: now, but the inside and depth tests below remain thresholds). With these cameras, on the
#: float64 draws below (12x12 grid at 40 px, 10x10 at 24 px, 24x24 at 64 px), every
#: pixel-triangle pair is >= 3.1e-5 px from the cut, >= 7.0e-6 px from the inside test and
#: >= 2.8e-6 depth units from the depth test and >= 1.0e-5 from the occluded layer's (measured
#: in float64).
CAMERAS = [[6.1, 0.0123, -0.0061], [5.03, 0.0517, -0.0197]]

#: Tiling, chunking and batching change which triangles a tile lists (those beyond the cut
#: add exactly 0) and the rounding of the matmul that evaluates the affine edge functions
#: (3 terms of at most 3.5 W px: <= 10.5 u W = 7.5e-14 px in float64, W <= 64, u = 2^-53) and
#: of the per-pixel sums. No pair is within 1e8 times that of a threshold (see CAMERAS), so
#: only rounding remains: coverage has slope <= 1 / (4 sigma) = 0.5 per px, a pixel sums
#: a few dozen triangles at most, so |d image| <= ~1e-12 (measured: <= 1.3e-15).
ROUNDING_64 = 1e-12


def head_render_inputs(n: int, cameras: list[list[float]], dtype=torch.float64):
    """A seeded synthetic head (``n x n`` grid, jaw open) under ``cameras``."""
    torch.manual_seed(0)
    model = synthetic_flame(n, n).to(dtype)
    batch = len(cameras)
    vertices = model(
        expression=torch.randn(batch, model.n_exp, dtype=dtype),
        jaw_pose=torch.tensor([[0.2, 0, 0]] * batch, dtype=dtype),
    )
    return vertices, model.faces, orthographic_project(vertices, torch.tensor(cameras, dtype=dtype))


def test_renders_are_deterministic_and_chunking_changes_nothing():
    vertices, faces, screen = head_render_inputs(12, CAMERAS, torch.float32)
    first = MeshRenderer(40)(vertices, faces, screen)
    again = MeshRenderer(40)(vertices, faces, screen)  # same inputs, same code: bit-identical
    assert torch.equal(first.image, again.image) and torch.equal(first.mask, again.mask)
    assert first.mask[0].mean() > 0.2 and first.mask[0, 0, 0, 0] < 1e-6
    vertices, faces, screen = head_render_inputs(12, CAMERAS)
    first = MeshRenderer(40)(vertices, faces, screen)
    for other in (MeshRenderer(40, max_elements=64), MeshRenderer(40, tile=8)):
        out = other(vertices, faces, screen)
        assert (out.image - first.image).abs().max() < ROUNDING_64
        assert (out.mask - first.mask).abs().max() < ROUNDING_64


def test_the_batch_is_independent():
    vertices, faces, screen = head_render_inputs(10, [CAMERAS[0]] * 2)
    both = MeshRenderer(24)(vertices, faces, screen).image
    one = MeshRenderer(24)(vertices[1:], faces, screen[1:]).image
    assert (both[1:] - one).abs().max() < ROUNDING_64


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
    for grey in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match=r"background must be in \[0, 1\]"):
            MeshRenderer(16, background=grey)
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
    # float64 on both devices: the CUDA kernels round differently (cuBLAS blocking, exp to
    # an ulp or two), which ROUNDING_64 covers, and no pair is near a threshold (CAMERAS)
    vertices, faces, screen = head_render_inputs(24, CAMERAS)
    cpu = MeshRenderer(64)(vertices, faces, screen)
    cuda = MeshRenderer(64)(vertices.cuda(), faces.cuda(), screen.cuda())
    assert (cuda.image.cpu() - cpu.image).abs().max() < ROUNDING_64
    assert (cuda.mask.cpu() - cpu.mask).abs().max() < ROUNDING_64
    pytest.importorskip("nvdiffrast.torch")
    hard = MeshRenderer(64, backend="nvdiffrast")(
        vertices.float().cuda(), faces.cuda(), screen.float().cuda()
    )
    # two algorithms, not two roundings: nvdiffrast's hard edges against the soft coverage
    # (alpha > 1/2 exactly inside a triangle, fading over ~4 sigma = 2 px). These are
    # agreement levels between renderers, not derived bounds (no GPU measured them here).
    soft_mask, soft_image = cpu.mask.float(), cpu.image.float()
    inside = (hard.mask.cpu() > 0.5) & (soft_mask > 0.5)
    union = (hard.mask.cpu() > 0.5) | (soft_mask > 0.5)
    assert inside.sum() / union.sum() > 0.95  # same silhouette, up to antialiasing
    assert (hard.image.cpu() - soft_image)[inside.expand_as(soft_image)].abs().mean() < 0.05


def test_coverage_is_continuous_at_its_margin_and_complementary():
    sigma = 0.5
    d = torch.linspace(-4.0, 4.0, 8001, dtype=torch.float64)
    cover = coverage(d, sigma)
    assert (cover[d <= -MARGIN_SIGMAS * sigma] == 0).all()
    assert (cover[d >= MARGIN_SIGMAS * sigma] == 1).all()
    # continuous: slope <= 1 / (4 sigma (1 - 2c)) < 0.51 per px, so neighbours 1e-3 px apart
    # differ by < 5.1e-4 everywhere, the margin included (the old cut jumped by 6.7e-3)
    assert cover.diff().abs().max() < 0.51 * 1e-3
    torch.testing.assert_close(cover + coverage(-d, sigma), torch.ones_like(d), rtol=0,
                               atol=1e-15)  # fmt: skip
