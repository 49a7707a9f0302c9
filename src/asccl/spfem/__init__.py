"""ASCCL supervision for SPFEM generators (NED, ICface, GANmut, ...): adapters + schedule.

``ADAPTERS`` says where each generator keeps its generated and source images and in which
range and channel order; ``ASCCLSupervision`` turns one training step into a weighted loss.
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
