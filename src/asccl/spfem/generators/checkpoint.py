"""A trained generator on disk: ``generator.safetensors`` holds the weights (generator and
discriminator) with the model's name and config in the header."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from asccl.io import (
    CheckpointError,
    load_state_dict_strict,
    read_safetensors_metadata,
    read_weights,
    save_safetensors,
)
from asccl.spfem.generators import ReferenceGenerator, build_generator

MODEL_FILE = "generator.safetensors"
FORMAT = "asccl-spfem-generator-1"


def save_generator(model: ReferenceGenerator, path: Path) -> Path:
    """Write ``model``'s weights with its name and config in the safetensors header,
    atomically; the same weights give the same bytes."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    metadata = {
        "model": model.name,
        "config": json.dumps(dataclasses.asdict(model.config)),
        "format": FORMAT,
    }
    return save_safetensors(tensors, path, metadata)


def load_generator(path: str | os.PathLike) -> ReferenceGenerator:
    """A trained generator, in eval mode on the CPU, from a ``generator.safetensors`` file, a
    checkpoint folder ``checkpoints/step_<N>/`` or a run folder (its final file, else its
    newest checkpoint).

    Raises:
        CheckpointError: nothing loadable at ``path``, not an SPFEM generator, or weights
            that do not fit its config (one line naming the file).
    """
    from asccl.training.checkpoints import checkpoint_dirs

    path = Path(path)
    if path.is_dir():
        candidates = [path / MODEL_FILE, *(d / MODEL_FILE for d in checkpoint_dirs(path)[::-1])]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            raise CheckpointError(path, f"no {MODEL_FILE} here nor in checkpoints/step_*")
        path = found
    metadata = read_safetensors_metadata(path)
    if metadata.get("format") != FORMAT:
        raise CheckpointError(path, "not an asccl SPFEM generator (no format in its header)")
    try:
        model = build_generator(metadata["model"], json.loads(metadata["config"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(path, f"its header's model config does not build ({exc})") from None
    load_state_dict_strict(model, read_weights(path), path, what=f"a {model.name} generator")
    return model.eval()
