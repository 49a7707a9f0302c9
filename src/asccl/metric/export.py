"""``asccl metric export``: the loss as one Python file for old environments.

Upstream SPFEM code pins environments asccl cannot join (NED: Python 3.8, PyTorch 1.7.1;
GANmut: PyTorch 1.4). :func:`export_metric` writes, into a folder:

* ``asccl_loss_standalone.py``: the template
  :mod:`asccl.metric.standalone.asccl_loss_standalone` with the checkpoint's settings
  written into its constants (plain PyTorch >= 1.7 and numpy, Python >= 3.8, no
  asccl import), computing what :class:`asccl.ASCCLLoss` computes on that checkpoint;
* ``asccl_loss_weights.npz``: the metric's tensors as numpy arrays (read with
  ``numpy.load(allow_pickle=False)``: nothing is unpickled), named as the module's own
  ``state_dict`` (asccl's keys, ``heads.heads.N`` -> ``heads.N``, without the unused
  ``backbone.bn2``); the same checkpoint always gives the same bytes, and the module checks
  their SHA-256 before use;
* ``README.txt``: the three lines of a generator step.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import zipfile
from pathlib import Path

import numpy as np

from asccl._version import __version__
from asccl.data.errors import DataError
from asccl.io import write_bytes_atomic, write_text_atomic
from asccl.metric.checkpoint import load_metric
from asccl.metric.iresnet import IRESNET_LAYERS
from asccl.metric.model import ASCCLMetric

MODULE_FILE = "asccl_loss_standalone.py"
TEMPLATE = Path(__file__).parent / "standalone" / MODULE_FILE
WEIGHTS_FILE = "asccl_loss_weights.npz"
README_FILE = "README.txt"

#: The lines of the template's settings block, in order: each gets the exported value.
SETTINGS = (
    "SOURCE",
    "ASCCL_VERSION",
    "STAGE_DEPTHS",
    "IMAGE_SIZE",
    "CHANNEL_ORDER",
    "NUM_ANCHORS",
    "NEGATIVES",
    "NUM_RANDOM_NEGATIVES",
    "TEMPERATURE",
    "LOSS_SCALE",
    "ADAPTIVE",
    "ADAPTIVE_THRESHOLD",
    "PER_IMAGE_REGIONS",
    "AUTHORS_WINDOW",
    "HEAD_REDUCTION",
    "WEIGHTS_FILE",
    "WEIGHTS_SHA256",
)
_BLOCK = re.compile(r"^# --- settings: .*?^# --- end of settings ---\n", re.MULTILINE | re.DOTALL)

README = """\
ASCCL loss, standalone: {module} + {weights}
(from {source}, exported by asccl {version})

Needs Python >= 3.8, PyTorch >= 1.7 and numpy; not asccl. It computes the loss and
gradients of asccl.ASCCLLoss on that checkpoint, with its settings (written into the
module's constants). The weights are read with numpy, without pickle, SHA-256 checked.
Copy both files next to the upstream training script; then, in its generator step:

    from asccl_loss_standalone import ASCCLLoss
    asccl = ASCCLLoss(channel_order="rgb").to(device)  # once ("bgr": BGR frames)
    loss_G = loss_G + weight * asccl(fake, real)       # each generator step

fake (gets the gradients) and real (the frame it was made from) are (B, 3, H, W)
float tensors in [-1, 1] (in [0, 1]: ASCCLLoss(input_range=(0, 1), ...)). Regions
are drawn from the global RNG, or from generator=torch.Generator().manual_seed(s)
given to the call. The metric saw {size}x{size} {order} images; inputs of any size
are resized to it (bilinear, antialiased).
"""


def export_metric(checkpoint: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Write the standalone loss of ``checkpoint`` into the folder ``out`` (created if
    missing; the three files replaced atomically, nothing else in it touched).

    Returns:
        the path of the written module, ``out / "asccl_loss_standalone.py"``.

    Raises:
        CheckpointError: the checkpoint cannot be loaded (one line naming it).
        DataError: ``out`` exists and is not a folder.
    """
    checkpoint, out = Path(checkpoint), Path(out)
    if out.exists() and not out.is_dir():
        raise DataError(out, "exists and is not a folder (the export writes a folder)")
    metric = load_metric(checkpoint)
    weights = npz_bytes(standalone_state(metric))
    source = render_module(metric, checkpoint.name, hashlib.sha256(weights).hexdigest())
    config = metric.config
    readme = README.format(
        source=checkpoint.name,
        version=__version__,
        module=MODULE_FILE,
        weights=WEIGHTS_FILE,
        size=config.image_size,
        order=config.channel_order.upper(),
    )
    out.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(out / WEIGHTS_FILE, weights)
    write_text_atomic(out / README_FILE, readme)
    return write_text_atomic(out / MODULE_FILE, source)


def standalone_state(metric: ASCCLMetric) -> dict[str, np.ndarray]:
    """``metric``'s tensors under the standalone module's names, as numpy arrays."""
    state = {}
    for key, value in metric.state_dict().items():
        if key.startswith("backbone.bn2."):  # feeds only the identity head: unused
            continue
        name = "heads." + key.removeprefix("heads.heads.") if key.startswith("heads.") else key
        state[name] = value.detach().cpu().contiguous().numpy()
    return state


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """An ``.npz`` (what ``numpy.savez`` writes: a zip of ``.npy`` members) whose bytes
    depend on the arrays only: members in sorted order with a fixed time stamp."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name in sorted(arrays):
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            with archive.open(info, "w", force_zip64=True) as member:
                np.lib.format.write_array(member, arrays[name], allow_pickle=False)
    return buffer.getvalue()


def render_module(metric: ASCCLMetric, source: str, weights_sha256: str) -> str:
    """The template's source with ``metric``'s settings in its settings block."""
    config = metric.config
    values = {
        "SOURCE": source,
        "ASCCL_VERSION": __version__,
        "STAGE_DEPTHS": tuple(IRESNET_LAYERS[config.backbone]),
        "IMAGE_SIZE": config.image_size,
        "CHANNEL_ORDER": config.channel_order,
        "NUM_ANCHORS": tuple(config.num_anchors),
        "NEGATIVES": config.negatives,
        "NUM_RANDOM_NEGATIVES": config.num_random_negatives,
        "TEMPERATURE": float(config.temperature),
        "LOSS_SCALE": float(config.loss_scale),
        "ADAPTIVE": config.adaptive,
        "ADAPTIVE_THRESHOLD": float(config.adaptive_threshold),
        "PER_IMAGE_REGIONS": config.per_image_regions,
        "AUTHORS_WINDOW": config.authors_window,
        "HEAD_REDUCTION": config.head_reduction,
        "WEIGHTS_FILE": WEIGHTS_FILE,
        "WEIGHTS_SHA256": weights_sha256,
    }
    template = TEMPLATE.read_text(encoding="utf-8")
    (block,) = _BLOCK.findall(template)
    lines = block.splitlines(keepends=True)
    written = ["# --- settings: written by `asccl metric export` ---\n"]
    names = iter(SETTINGS)
    for line in lines[1:-1]:
        if line.startswith("#"):  # a comment line: kept
            written.append(line)
            continue
        # "NAME = value  # comment": the value replaced, the comment kept
        name = next(names, None)
        prefix, comment = f"{name} = ", "".join(line.rstrip("\n").partition("  #")[1:])
        if name is None or not line.startswith(prefix):
            raise RuntimeError(f"export template: expected {name} = ... in {line!r}")
        written.append(prefix + _literal(values[name]) + comment + "\n")
    if next(names, None) is not None:
        raise RuntimeError("export template: its settings block misses settings")
    written.append(lines[-1])
    return template.replace(block, "".join(written))


def _literal(value: object) -> str:
    """A Python literal for a setting (strings in double quotes, as JSON writes them)."""
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, bool | int | float | tuple):
        return repr(value)
    raise TypeError(f"no literal for {value!r}")
