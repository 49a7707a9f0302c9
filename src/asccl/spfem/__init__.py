"""Stage 3: ASCCL inside SPFEM generators (NED, ICface, GANmut, DSM).

- ``ADAPTERS`` / ``get_adapter``: where each generator keeps its generated and source images,
  and in which range and channel order; ``ASCCLSupervision`` turns one training step into a
  weighted, scheduled loss.
- :mod:`asccl.spfem.face3d`: the 3DMM route (FLAME/BFM, differentiable renderer, NED stage 1
  and DSM adapters via ``get_coefficient_adapter``).
- :mod:`asccl.spfem.generators`, :mod:`asccl.spfem.train`: the GANmut- and ICface-style
  reference generators and ``asccl spfem train``.
- :mod:`asccl.spfem.experiment`: ``asccl experiment`` (baseline vs +ASCCL, evaluated);
  its steps :mod:`asccl.spfem.results` (test-set results) and :mod:`asccl.spfem.comparison`.

Importing ``asccl.spfem`` is cheap: the adapters and the supervision (and torch) load on
first access to the names below, so ``--help`` and config checks never pay for torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from asccl._lazy import lazy_names

_LAZY = {
    "ADAPTERS": "asccl.spfem.adapters",
    "ASCCLSupervision": "asccl.spfem.supervision",
    "ImagePair": "asccl.spfem.adapters",
    "KeyedAdapter": "asccl.spfem.adapters",
    "SPFEMAdapter": "asccl.spfem.adapters",
    "get_adapter": "asccl.spfem.adapters",
    "warmup_weight": "asccl.spfem.supervision",
}

__all__ = [
    "ADAPTERS",
    "ASCCLSupervision",
    "ImagePair",
    "KeyedAdapter",
    "SPFEMAdapter",
    "get_adapter",
    "warmup_weight",
]

if TYPE_CHECKING:
    from asccl.spfem.adapters import ADAPTERS, ImagePair, KeyedAdapter, SPFEMAdapter, get_adapter
    from asccl.spfem.supervision import ASCCLSupervision, warmup_weight


__getattr__, __dir__ = lazy_names(__name__, _LAZY)
