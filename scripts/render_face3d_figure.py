"""Render the figure of docs/recipes/ned_stage1.md: docs/images/face3d_renders.png.

    python scripts/render_face3d_figure.py [--out docs/images/face3d_renders.png]

The head is asccl's synthetic FLAME-format model (FLAME-sized, face-like, random blend shapes),
not FLAME itself, whose license forbids redistributing renders of its model here; the pipeline
(FLAME forward with the jaw joint, DECA's orthographic camera, soft rasteriser, both shading
modes) is the one the ``ned_stage1`` adapter runs on the real model.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from asccl.figures import pyplot, save_figure
from asccl.spfem.face3d import MeshRenderer, orthographic_project, synthetic_flame
from asccl.spfem.face3d.synthetic import FLAME_SIZED_GRID

OUT = Path(__file__).resolve().parents[1] / "docs" / "images" / "face3d_renders.png"


def main() -> Path:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--size", type=int, default=224)
    args = p.parse_args()
    torch.manual_seed(0)
    model = synthetic_flame(*FLAME_SIZED_GRID, n_shape=10, n_exp=10, seed=0)
    expression = torch.zeros(4, 10)
    expression[1] = 1.5 * torch.randn(10, generator=torch.Generator().manual_seed(3))
    jaw = torch.zeros(4, 3)
    jaw[2, 0] = 0.35  # open jaw
    head = torch.zeros(4, 3)
    head[3, 1] = 0.5  # turned head (global pose about y)
    titles = ["neutral", "expression", "jaw open (0.35 rad)", "head turned"]
    with torch.no_grad():
        vertices = model(expression=expression, jaw_pose=jaw, global_pose=head)
        screen = orthographic_project(vertices, torch.tensor([[7.0, 0.0, 0.0]]).expand(4, 3))
        rows = {
            mode: MeshRenderer(args.size, mode=mode)(vertices, model.faces, screen).image
            for mode in ("shaded", "normals")
        }
    plt = pyplot()
    fig, axes = plt.subplots(2, 4, figsize=(10, 5.4))
    for r, (mode, images) in enumerate(rows.items()):
        for c in range(4):
            ax = axes[r, c]
            ax.imshow(images[c].permute(1, 2, 0).clamp(0, 1).numpy())
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(titles[c], fontsize=10)
            if c == 0:
                ax.set_ylabel(f'mode="{mode}"', fontsize=10)
    fig.suptitle(
        "MeshRenderer on asccl's synthetic FLAME-format head (not FLAME): 5042 vertices, "
        "DECA camera [7, 0, 0], 224x224",
        fontsize=9,
    )
    fig.tight_layout()
    return save_figure(fig, args.out)


if __name__ == "__main__":
    print(main())
