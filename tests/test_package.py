"""The package root: cheap to import, and imported by none of its modules."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import asccl

SRC = Path(asccl.__file__).parent


def test_import_asccl_loads_no_heavy_library():
    code = (
        "import sys, asccl, asccl.io\n"
        "heavy = {'torch', 'numpy', 'safetensors', 'matplotlib'} & set(sys.modules)\n"
        "print(sorted(heavy), asccl.__version__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["[]", asccl.__version__]


def test_no_module_imports_the_package_root():
    """``from asccl import x`` inside the package can cycle back through ``__init__``; the
    version lives in ``asccl._version`` for that reason."""
    offenders = []
    for file in sorted(SRC.rglob("*.py")):
        if file == SRC / "__init__.py":
            continue
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
            root_from = isinstance(node, ast.ImportFrom) and node.module == "asccl"
            root = isinstance(node, ast.Import) and any(a.name == "asccl" for a in node.names)
            if root or (root_from and node.level == 0):
                offenders.append(str(file.relative_to(SRC)))
    assert offenders == []
