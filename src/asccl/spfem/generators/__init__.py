"""Reference SPFEM generators, compact re-implementations trainable on the demo data.

``GENERATORS`` maps a model name to its class; :func:`build_generator` builds one from its
config (a ``Config`` instance, a dict of its fields, or ``None`` for the defaults).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from asccl.spfem.generators.base import ReferenceGenerator
from asccl.spfem.generators.ganmut import GANmut
from asccl.spfem.generators.icface import ICface

# A generator module that fails to import makes this package fail to import: a broken
# generator is an error to see, not a name silently missing from ``GENERATORS``.
GENERATORS: dict[str, type[ReferenceGenerator]] = {"ganmut": GANmut, "icface": ICface}


def build_generator(name: str, config: Any = None) -> ReferenceGenerator:
    """The generator ``name`` built from ``config`` (its ``Config``, a mapping of its
    fields, or ``None``: defaults).

    Raises:
        ValueError: an unknown name (valid ones listed) or unknown config fields.
    """
    if name not in GENERATORS:
        raise ValueError(f"unknown generator {name!r}; valid: {', '.join(sorted(GENERATORS))}")
    cls = GENERATORS[name]
    if config is None:
        config = cls.Config()
    elif isinstance(config, Mapping):
        fields = {f.name for f in dataclasses.fields(cls.Config)}
        unknown = sorted(set(config) - fields)
        if unknown:
            raise ValueError(f"{name}: unknown config field(s) {unknown}; valid: {sorted(fields)}")
        config = cls.Config(**config)
    elif not isinstance(config, cls.Config):
        raise TypeError(f"{name}: config must be a {cls.Config.__name__}, a dict or None, "
                        f"got {type(config).__name__}")  # fmt: skip
    return cls(config)


__all__ = ["GENERATORS", "ReferenceGenerator", "build_generator"]
