"""One loading path for every weights and checkpoint file, and one way to write files.

Every pretrained or own checkpoint asccl loads (a metric checkpoint, the authors' metric
``.pth``, insightface's ``backbone.pth``, syncnet_python's ``syncnet_v2.model``,
pytorch-fid's ``pt_inception-*.pth``) goes through :func:`read_weights` and
:func:`load_state_dict_strict`, so each failure is a :class:`CheckpointError` whose text is
one line naming the file: missing, empty, truncated, malformed, pickled objects, another
network's keys, wrong shapes, NaN/Inf values.

Every file or folder asccl writes for others to read goes through :func:`atomic_write`
(temporary sibling, ``fsync``, rename; :func:`write_text_atomic`, :func:`write_bytes_atomic`
for whole contents), so a crash or an error never leaves a half-written output.
:func:`save_safetensors` writes a safetensors file with its metadata in a fixed (sorted)
order, so identical inputs give byte-identical files.

Modules: :mod:`~asccl.io.atomic` (the one atomic write), :mod:`~asccl.io.errors`
(:class:`CheckpointError` and its wording), :mod:`~asccl.io.loading` (reading and strict
loading), :mod:`~asccl.io.safetensors_files` (the header checks and the fixed-order writer).
Import the names from ``asccl.io``.

Nothing here imports torch at module level: ``asccl.cli`` imports the error class cheaply.
"""

from __future__ import annotations

from .atomic import atomic_write, write_bytes_atomic, write_text_atomic
from .errors import CheckpointError, few
from .loading import (
    StateFilter,
    check_state_dict,
    fill_batchnorm_counters,
    load_state_dict_strict,
    load_weights,
    read_safetensors_metadata,
    read_weights,
    unwrap_state_dict,
)
from .safetensors_files import safetensors_bytes, save_safetensors

__all__ = [
    "CheckpointError",
    "StateFilter",
    "atomic_write",
    "check_state_dict",
    "few",
    "fill_batchnorm_counters",
    "load_state_dict_strict",
    "load_weights",
    "read_safetensors_metadata",
    "read_weights",
    "safetensors_bytes",
    "save_safetensors",
    "unwrap_state_dict",
    "write_bytes_atomic",
    "write_text_atomic",
]
