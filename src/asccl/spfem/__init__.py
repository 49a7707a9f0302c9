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

Only the adapters and the supervision are imported here; the rest loads on import.
"""

from asccl.spfem.adapters import ADAPTERS, ImagePair, KeyedAdapter, SPFEMAdapter, get_adapter
from asccl.spfem.supervision import ASCCLSupervision, warmup_weight

__all__ = [
    "ADAPTERS",
    "ASCCLSupervision",
    "ImagePair",
    "KeyedAdapter",
    "SPFEMAdapter",
    "get_adapter",
    "warmup_weight",
]
