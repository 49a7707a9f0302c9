"""``asccl metric export``: the standalone loss file equals ``ASCCLLoss`` and is old-Python code.

Tolerance of the equality tests: both sides run the same float32 operations in the same
order on the same inputs (the standalone resize reproduces ``F.interpolate``'s arithmetic
bit for bit on CPU for the sizes used here, and both draw the same regions from the same
generator state), so loss and input gradient agree to float rounding. Measured: the loss
exactly, the gradient to 3e-8 (its backward sums in another order). The bound, 1e-5, is
about 10 float32 ulps of a loss near 8 and 1e-4 of the gradients' largest entries (~0.1-0.3);
a wrong setting, region or resize moves either by 1e-3 or more.
"""

from __future__ import annotations

import ast
import glob
import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from tests.conftest import random_images

import asccl
from asccl import ASCCLLoss
from asccl.cli import main
from asccl.metric import ASCCLMetric, load_metric, save_metric
from asccl.metric.export import MODULE_FILE, README_FILE, WEIGHTS_FILE, export_metric

SIZE = 64
SRC = Path(asccl.__file__).resolve().parents[1]
TOL = 1e-5
#: metric settings exercised: asccl's defaults, random negatives with per-image regions,
#: and the authors' arithmetic on a BGR metric (their window, global adaptive scale).
CONFIGS = {
    "default": {},
    "random_per_image": {"negatives": "random", "per_image_regions": True, "adaptive": "off"},
    "authors_bgr": {
        "channel_order": "bgr",
        "authors_window": True,
        "adaptive": "authors",
        "per_image_regions": False,
    },
}


def tiny_metric(seed: int, **changes) -> ASCCLMetric:
    """A random IResNet-18 metric at 64x64 with BatchNorm statistics that are not 0/1 (so
    eval-mode BatchNorm is exercised)."""
    torch.manual_seed(seed)
    metric = ASCCLMetric(backbone="iresnet18", image_size=SIZE, num_anchors=(8, 4, 4, 2), **changes)
    for module in metric.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    return metric.eval()


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    """``name -> (checkpoint, export folder)`` for each of :data:`CONFIGS`."""
    root = tmp_path_factory.mktemp("export")
    out = {}
    for index, (name, changes) in enumerate(CONFIGS.items()):
        checkpoint = save_metric(tiny_metric(index, **changes), root / f"{name}.safetensors")
        out[name] = (checkpoint, root / name)
        export_metric(checkpoint, root / name)
    return out


@pytest.fixture(scope="module")
def metrics(exported) -> dict[str, ASCCLMetric]:
    """``name -> metric`` loaded from its checkpoint, as ``ASCCLLoss(checkpoint=...)`` does."""
    return {name: load_metric(checkpoint) for name, (checkpoint, _) in exported.items()}


def load_module(folder: Path, name: str = "standalone"):
    spec = importlib.util.spec_from_file_location(f"asccl_export_{name}", folder / MODULE_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def reference(metric, x, y, seed, regions=None, **options):
    """ASCCLLoss's per-sample losses and input gradient, regions given or from ``seed``."""
    loss_fn = ASCCLLoss(metric=metric, reduction="none", **options)
    x = x.clone().requires_grad_()
    loss = loss_fn(x, y, regions=regions, generator=torch.Generator().manual_seed(seed))
    loss.sum().backward()
    return loss.detach(), x.grad


# The standalone side, run in a process where asccl cannot be imported.
ISOLATED = textwrap.dedent(
    """
    import importlib.util, json, sys
    src = sys.argv[1]
    sys.path[:] = [p for p in sys.path if not p.startswith(src)]
    assert importlib.util.find_spec("asccl") is None, "asccl is importable"
    import numpy as np
    import torch
    modules = {}
    for case in json.loads(sys.argv[2]):
        if case["module"] not in modules:
            spec = importlib.util.spec_from_file_location("standalone", case["module"])
            modules[case["module"]] = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(modules[case["module"]])
        module = modules[case["module"]]
        loss_fn = module.ASCCLLoss(**case["options"], reduction="none")
        arrays = np.load(case["inputs"])
        x = torch.from_numpy(arrays["x"]).requires_grad_()
        y = torch.from_numpy(arrays["y"])
        if "anchor0" in arrays.files:  # regions given: the same whatever torch draws
            regions = [
                tuple(
                    torch.from_numpy(arrays[k + str(s)]) if k + str(s) in arrays.files
                    else None for k in ("anchor", "neighbour", "negative")
                )
                for s in range(4)
            ]
            loss = loss_fn(x, y, regions=regions)
        else:
            loss = loss_fn(x, y, generator=torch.Generator().manual_seed(case["seed"]))
        loss.sum().backward()
        np.savez(case["output"], loss=loss.detach().numpy(), grad=x.grad.numpy())
    leaked = sorted(m for m in sys.modules if m.split(".")[0] == "asccl")
    print(json.dumps({"leaked": leaked, "torch": torch.__version__}))
    """
)

# (name, input side, options): a downscale (80 -> 64, 3 taps) with inputs in [0, 1], an
# upscale (48 -> 64), RGB inputs into the BGR metric (a flip), and no resize.
CASES = [
    ("default", 80, {"input_range": (0.0, 1.0)}),
    ("random_per_image", 48, {}),
    ("authors_bgr", 80, {"channel_order": "rgb"}),
    ("authors_bgr", SIZE, {"channel_order": "bgr"}),
]


def case_images(side: int, options: dict, x_seed: int, y_seed: int):
    """``x, y``: two ``(2, 3, side, side)`` random image batches for a row of CASES, in its
    input range ([-1, 1], or [0, 1] where the options say so)."""
    x, y = random_images(2, side, x_seed), random_images(2, side, y_seed)
    if options.get("input_range") == (0.0, 1.0):
        x, y = (x + 1) / 2, (y + 1) / 2
    return x, y


def test_the_exported_file_gives_asccl_loss_and_gradient_without_asccl(exported, metrics, tmp_path):
    cases, expected = [], []
    for index, (name, side, options) in enumerate(CASES):
        _, folder = exported[name]
        x, y = case_images(side, options, 10 + index, 20 + index)
        inputs = tmp_path / f"inputs{index}.npz"
        np.savez(inputs, x=x.numpy(), y=y.numpy())
        seed = 100 + index
        expected.append(reference(metrics[name], x, y, seed, **options))
        cases.append(
            {
                "module": str(folder / MODULE_FILE),
                "options": options,
                "inputs": str(inputs),
                "seed": seed,
                "output": str(tmp_path / f"out{index}.npz"),
            }
        )
    run = subprocess.run(
        [sys.executable, "-c", ISOLATED, str(SRC), json.dumps(cases)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout.splitlines()[-1])["leaked"] == []
    for case, (loss, grad) in zip(cases, expected, strict=True):
        got = np.load(case["output"])
        assert got["loss"].shape == (2,) and np.isfinite(got["loss"]).all()
        np.testing.assert_allclose(got["loss"], loss.numpy(), rtol=0, atol=TOL)
        np.testing.assert_allclose(got["grad"], grad.numpy(), rtol=0, atol=TOL)
        assert np.abs(grad.numpy()).max() > 1e-3  # the gradient compared is not ~0


def test_reductions_per_stage_and_uint8_match(exported, metrics):
    module = load_module(exported["default"][1])
    ours, theirs = module.ASCCLLoss(), ASCCLLoss(metric=metrics["default"])
    x, y = random_images(2, 96, 1), random_images(2, 96, 2)
    for reduction, per_stage in (("mean", False), ("sum", True), ("none", False)):
        ours.reduction = theirs.reduction = reduction
        a = ours(x, y, generator=torch.Generator().manual_seed(3), per_stage=per_stage)
        b = theirs(x, y, generator=torch.Generator().manual_seed(3), per_stage=per_stage)
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=0, atol=TOL)
    frames = ((x + 1) * 127.5).round().to(torch.uint8)
    ours = module.ASCCLLoss(input_range=(0, 255), reduction="none")
    theirs = ASCCLLoss(metric=metrics["default"], input_range=(0, 255), reduction="none")
    a = ours(frames, frames.flip(0), generator=torch.Generator().manual_seed(4))
    b = theirs(frames, frames.flip(0), generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(a, b, rtol=0, atol=TOL)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_regions_are_drawn_alike(exported, metrics, name):
    module = load_module(exported[name][1], name)
    # what ASCCLLoss.forward draws: metric.sample_regions(batch, generator=...)
    theirs = metrics[name].sample_regions(2, generator=torch.Generator().manual_seed(7))
    ours = module.sample_regions(2, torch.Generator().manual_seed(7))
    for a, (anchor, neighbour, negative) in zip(theirs, ours, strict=True):
        assert torch.equal(a.anchor_index, anchor) and torch.equal(a.neighbour_index, neighbour)
        assert (a.negative_index is None) == (negative is None)
        if negative is not None:
            assert torch.equal(a.negative_index, negative)
    # and the exported regions given back give the same value as a fresh draw
    x, y = random_images(2, SIZE, 5), random_images(2, SIZE, 6)
    loss_fn = module.ASCCLLoss()
    torch.testing.assert_close(
        loss_fn(x, y, regions=ours),
        loss_fn(x, y, generator=torch.Generator().manual_seed(7)),
        rtol=0,
        atol=0,
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("side", [17, 48, 100, 128, 256, 300, 441, 1024])
def test_the_resize_is_pytorchs_antialiased_bilinear(exported, side, dtype):
    module = load_module(exported["default"][1])
    x = torch.rand(2, 3, side, side + 7, generator=torch.Generator().manual_seed(side), dtype=dtype)
    expected = F.interpolate(x, size=(224, 224), mode="bilinear", antialias=True)
    wide = np.float64 if dtype == torch.float64 else np.float32
    index, weight = (torch.from_numpy(a) for a in module.resize_taps(side + 7, 224, wide))
    got = module.resize_last_axis(x, index, weight)
    index, weight = (torch.from_numpy(a) for a in module.resize_taps(side, 224, wide))
    got = module.resize_last_axis(got.transpose(2, 3), index, weight).transpose(2, 3)
    taps = max(module.resize_taps(n, 224)[0].shape[1] for n in (side, side + 7))
    if dtype == torch.float32 and taps <= 4:  # PyTorch's own arithmetic, bit for bit
        assert torch.equal(got, expected)
    else:  # float64, or more taps (PyTorch sums them in another order): rounding only
        torch.testing.assert_close(got, expected, rtol=0, atol=4 * torch.finfo(dtype).eps)


def exported_source(exported) -> tuple[Path, str]:
    path = exported["authors_bgr"][1] / MODULE_FILE
    return path, path.read_text(encoding="utf-8")


def test_the_exported_file_is_python_38_code_ruff_clean(exported):
    path, source = exported_source(exported)
    tree = ast.parse(source, feature_version=(3, 8))
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert {name.split(".")[0] for name in imported} <= {"__future__", "contextlib", "hashlib",
                                                          "os", "numpy", "torch",
                                                          "warnings"}  # fmt: skip
    assert "noqa" not in source  # nothing switched off for the check below
    ruff = shutil.which("ruff", path=os.path.dirname(sys.executable)) or shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (pip install ruff)")
    command = [ruff, "check", "--isolated", "--no-cache", "--target-version", "py38"]
    run = subprocess.run(
        [*command, "--select", "E,F,UP,B", str(path)], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stdout + run.stderr


def python38() -> str | None:
    found = shutil.which("python3.8")
    candidates = [found] if found else []
    candidates += sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.8*/bin/python3.8")))
    for candidate in candidates:
        run = subprocess.run([candidate, "-c", "import sys; print(sys.version_info[:2])"],
                             capture_output=True, text=True)  # fmt: skip
        if run.returncode == 0 and run.stdout.strip() == "(3, 8)":
            return candidate
    return None


def test_a_real_python_38_compiles_it(exported):
    interpreter = python38()
    if interpreter is None:
        pytest.skip("no Python 3.8 interpreter on this machine")
    path, _ = exported_source(exported)
    code = "import sys; compile(open(sys.argv[1]).read(), sys.argv[1], 'exec')"
    run = subprocess.run([interpreter, "-c", code, str(path)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


#: Every ``torch.X`` / ``nn.X`` / ``np.X`` the exported file may name: all exist in
#: PyTorch 1.7.1 and numpy 1.17 (checked against their documentation), except
#: ``torch.autocast``, ``bfloat16``-autocast and ``get_autocast_gpu_dtype`` (1.10),
#: ``is_autocast_cpu_enabled``/``get_autocast_cpu_dtype`` (1.10) and ``get_autocast_dtype``
#: (2.4), which the file only uses behind ``hasattr(torch, ...)`` checks of those names.
ALLOWED = {
    "torch": {"Generator", "Tensor", "arange", "autocast", "bfloat16", "bmm", "cat", "cuda",
              "float16", "float64", "from_numpy", "get_autocast_cpu_dtype",
              "get_autocast_dtype", "get_autocast_gpu_dtype", "is_autocast_cpu_enabled",
              "is_autocast_enabled", "logsumexp", "long", "matmul", "no_grad", "ones_like",
              "rand", "randint", "randperm", "sigmoid", "stack", "tensor", "uint8", "where"},
    "nn": {"BatchNorm2d", "Conv2d", "Linear", "Module", "ModuleList", "PReLU", "ReLU",
           "Sequential"},
    "np": {"arange", "array", "float32", "float64", "int64", "load", "ndarray", "zeros"},
}  # fmt: skip


def test_the_exported_file_names_only_old_apis(exported):
    _, source = exported_source(exported)
    used: dict[str, set[str]] = {name: set() for name in ALLOWED}
    for node in ast.walk(ast.parse(source)):
        owner = getattr(node, "value", None)
        if isinstance(node, ast.Attribute) and isinstance(owner, ast.Name) and owner.id in used:
            used[owner.id].add(node.attr)
    for name, names in used.items():
        assert names <= ALLOWED[name], f"{name}.{sorted(names - ALLOWED[name])} not vetted"
    assert 'hasattr(torch, "autocast")' in source
    for newer in ("get_autocast_dtype", "get_autocast_gpu_dtype", "is_autocast_cpu_enabled"):
        assert f'hasattr(torch, "{newer}")' in source
    # newer keywords and methods on any object (tensors included) are absent from the code
    tree = ast.parse(source)
    keywords = {k.arg for n in ast.walk(tree) if isinstance(n, ast.Call) for k in n.keywords}
    attributes = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    assert not keywords & {
        "antialias",
        "weights_only",
        "rounding_mode",
        "strict",
    }  # zip(strict=): 3.10
    assert not attributes & {"scaled_dot_product_attention", "inference_mode", "compile",
                             "movedim", "removeprefix", "func"}  # fmt: skip


def test_settings_are_baked_in_and_weights_are_byte_stable(exported, tmp_path):
    checkpoint, folder = exported["authors_bgr"]
    source = (folder / MODULE_FILE).read_text()
    for line in (
        'CHANNEL_ORDER = "bgr"',
        'ADAPTIVE = "authors"',
        "AUTHORS_WINDOW = True",
        "STAGE_DEPTHS = (2, 2, 2, 2)",
        f"IMAGE_SIZE = {SIZE}",
        "NUM_ANCHORS = (8, 4, 4, 2)",
        f'SOURCE = "{checkpoint.name}"',
    ):
        assert re.search(rf"^{re.escape(line)}(  #|$)", source, re.MULTILINE), line
    digest = hashlib.sha256((folder / WEIGHTS_FILE).read_bytes()).hexdigest()
    assert f'WEIGHTS_SHA256 = "{digest}"' in source
    again = export_metric(checkpoint, tmp_path / "again").parent
    for name in (MODULE_FILE, WEIGHTS_FILE, README_FILE):
        assert (again / name).read_bytes() == (folder / name).read_bytes(), name
    with np.load(folder / WEIGHTS_FILE, allow_pickle=False) as arrays:
        assert all(arrays[key].dtype != object for key in arrays.files)


@pytest.mark.slow
def test_the_authors_pth_exports_with_their_settings(tmp_path):
    """Their .pth stores no settings: the export bakes in what asccl loads it with (BGR,
    their arithmetic), so the standalone file gives their loss with no flag."""
    from tests.metric.test_checkpoint import authors_layout

    torch.manual_seed(5)
    pth = tmp_path / "20-512_224.pth"
    torch.save(authors_layout(ASCCLMetric()), pth)
    source = export_metric(pth, tmp_path / "out").read_text()
    for line in ('CHANNEL_ORDER = "bgr"', 'ADAPTIVE = "authors"', "AUTHORS_WINDOW = True",
                 "PER_IMAGE_REGIONS = False", 'NEGATIVES = "patch"', "IMAGE_SIZE = 224",
                 "STAGE_DEPTHS = (3, 4, 14, 3)", 'SOURCE = "20-512_224.pth"'):  # fmt: skip
        assert re.search(rf"^{re.escape(line)}(  #|$)", source, re.MULTILINE), line


def test_other_weights_are_refused(exported, tmp_path):
    module = load_module(exported["default"][1])
    other = exported["authors_bgr"][1] / WEIGHTS_FILE
    with pytest.raises(ValueError, match="not the weights this file was exported with"):
        module.ASCCLLoss(weights=str(other))
    with pytest.raises(FileNotFoundError, match="ASCCL weights not found"):
        module.ASCCLLoss(weights=str(tmp_path / "missing.npz"))


def test_frozen_and_always_in_eval_mode(exported):
    module = load_module(exported["default"][1])
    loss_fn = module.ASCCLLoss()
    loss_fn.train()
    assert not loss_fn.training and not any(m.training for m in loss_fn.modules())
    assert not any(m.training for m in loss_fn.metric.modules())
    assert not any(p.requires_grad for p in loss_fn.metric.parameters())
    source = random_images(2, SIZE, 1).requires_grad_()
    generated = random_images(2, SIZE, 2).requires_grad_()
    loss_fn(generated, source).backward()
    assert generated.grad is not None and source.grad is None


def test_a_generator_holding_the_exported_loss_cannot_train_or_save_it(exported, metrics):
    """As asccl's loss: the metric is outside the module tree (G.requires_grad_(True) and
    Adam(G.parameters()) reached its weights, G.state_dict() carried them); checkpoints of
    the earlier layout (backbone.*/heads.* under the loss's prefix) load with a warning."""
    module = load_module(exported["default"][1])
    g = torch.nn.Module()
    g.conv, g.asccl = torch.nn.Conv2d(3, 3, 1), module.ASCCLLoss()
    g.requires_grad_(True)
    assert {n for n, _ in g.named_parameters()} == set(g.state_dict()) == {"conv.weight",
                                                                          "conv.bias"}  # fmt: skip
    earlier = ("asccl.backbone.conv1.weight", "asccl.heads.0.0.bias")  # the old layout's keys
    old = {**g.state_dict(), **{k: torch.zeros(1) for k in earlier}}
    with pytest.warns(UserWarning, match=r"asccl\.\*: 2 stored metric tensors ignored"):
        g.load_state_dict(old)
    assert g.asccl.metric.backbone.conv1.weight.abs().sum() > 0  # its own weights kept
    with pytest.warns(UserWarning, match="keeps its metric in float32"):
        g.half()
    assert g.asccl.metric_dtype() == torch.float32 and g.conv.weight.dtype == torch.float16
    assert g.double().asccl.metric_dtype() == torch.float64  # .to() reaches it
    assert "metric from" in repr(g.asccl)


def test_the_exported_loss_under_float16_autocast_and_other_dtypes(exported, metrics):
    """fp16 autocast runs the metric under bf16 autocast (bit-equal to a bf16 run); inputs
    of another dtype are cast to the metric's. The tiny metric's features stay small, so
    this checks the switch, not the overflow (tests/losses/test_loss_in_a_model.py does)."""
    module = load_module(exported["default"][1])
    loss_fn = module.ASCCLLoss()
    x, y = random_images(2, SIZE, 1), random_images(2, SIZE, 2)
    seed = torch.Generator().manual_seed
    with torch.no_grad():
        with torch.autocast("cpu", dtype=torch.float16):
            half = loss_fn(x, y, generator=seed(0))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16 = loss_fn(x, y, generator=seed(0))
        full = loss_fn(x, y, generator=seed(0))
        as_double = loss_fn(x.double(), y.double(), generator=seed(0))
    assert torch.equal(half, bf16) and torch.equal(as_double, full)  # fp32->fp64->fp32: exact
    generated = x.half().requires_grad_()
    loss_fn(generated, y, generator=seed(0)).backward()
    assert generated.grad.dtype == torch.float16


# ------------------------------------------------------------------------------ the CLI


def test_cli_exports_a_folder(exported, tmp_path, capsys):
    checkpoint, folder = exported["default"]
    out = tmp_path / "new" / "export"
    assert main(["metric", "export", str(checkpoint), str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted([MODULE_FILE, WEIGHTS_FILE, README_FILE])
    assert (out / WEIGHTS_FILE).read_bytes() == (folder / WEIGHTS_FILE).read_bytes()
    assert str(out / MODULE_FILE) in capsys.readouterr().out
    readme = (out / README_FILE).read_text()
    assert "from asccl_loss_standalone import ASCCLLoss" in readme and "Python >= 3.8" in readme


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("asccl: error: ") and len(err.splitlines()) == 1, err
    return err


def test_cli_errors_are_one_line(exported, tmp_path, capsys):
    checkpoint, _ = exported["default"]
    missing = tmp_path / "missing.safetensors"
    assert main(["metric", "export", str(missing), str(tmp_path / "a")]) == 2
    assert str(missing) in one_error_line(capsys)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a checkpoint at all")
    assert main(["metric", "export", str(bad), str(tmp_path / "b")]) == 2
    assert str(bad) in one_error_line(capsys)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    a_file = tmp_path / "out.txt"
    a_file.write_text("keep me")
    assert main(["metric", "export", str(checkpoint), str(a_file)]) == 2
    assert "not a folder" in one_error_line(capsys)
    assert a_file.read_text() == "keep me"


# ------------------------------------------------------------------- under an old torch

OLD_TORCH_ENV = "ASCCL_OLD_TORCH_PYTHON"
NOT_INSTALLABLE = (
    "set ASCCL_OLD_TORCH_PYTHON to a Python (3.8+) with an old torch and numpy, without "
    "asccl. Not built by the test: PyPI's old torch wheels are CUDA builds (torch 1.7.1 "
    "cp38: 776.8 MB). Build it once with: python3.8 -m venv /tmp/oldtorch && "
    "/tmp/oldtorch/bin/pip install torch==1.7.1 numpy==1.19.5"
)


@pytest.mark.slow
def test_the_exported_file_runs_under_an_old_torch(exported, metrics, tmp_path):
    interpreter = os.environ.get(OLD_TORCH_ENV)
    if not interpreter:
        pytest.skip(NOT_INSTALLABLE)
    probe = subprocess.run([interpreter, "-c", "import torch, numpy; print(torch.__version__)"],
                           capture_output=True, text=True)  # fmt: skip
    if probe.returncode != 0:
        pytest.fail(f"{OLD_TORCH_ENV}={interpreter} cannot import torch and numpy: {probe.stderr}")
    cases, expected = [], []
    for index, (name, side, options) in enumerate(CASES):
        _, folder = exported[name]
        x, y = case_images(side, options, 30 + index, 40 + index)
        # asccl's regions, given to both sides: another torch may draw others from a seed
        regions = metrics[name].sample_regions(2)
        arrays = {"x": x.numpy(), "y": y.numpy()}
        for stage, r in enumerate(regions):
            arrays[f"anchor{stage}"] = r.anchor_index.numpy()
            arrays[f"neighbour{stage}"] = r.neighbour_index.numpy()
            if r.negative_index is not None:
                arrays[f"negative{stage}"] = r.negative_index.numpy()
        inputs = tmp_path / f"inputs{index}.npz"
        np.savez(inputs, **arrays)
        expected.append(reference(metrics[name], x, y, 0, regions=regions, **options))
        out = str(tmp_path / f"out{index}.npz")
        cases.append({"module": str(folder / MODULE_FILE), "options": options,
                      "inputs": str(inputs), "seed": 0, "output": out})  # fmt: skip
    run = subprocess.run([interpreter, "-c", ISOLATED, str(SRC), json.dumps(cases)],
                         capture_output=True, text=True, cwd=tmp_path, timeout=600)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout.splitlines()[-1])["leaked"] == []
    for case, (loss, grad) in zip(cases, expected, strict=True):
        got = np.load(case["output"])
        # Another torch runs other convolution kernels (float32 rounding in every layer)
        # and the gradient jumps at ReLU kinks, so: the loss to 1e-4 relative, the
        # gradient as a whole to 1e-3 (relative L2). Measured under torch 1.7.1 / numpy
        # 1.19.5 / Python 3.8.18 (2026-12-06): loss within 2.0e-7 relative, gradient
        # within 9.2e-7 relative L2 in all four cases.
        np.testing.assert_allclose(got["loss"], loss.numpy(), rtol=1e-4)
        error = np.linalg.norm(got["grad"] - grad.numpy()) / np.linalg.norm(grad.numpy())
        assert error < 1e-3, error
