"""``asccl.spfem.generators``: a generator module that fails to import is an error, not a
name silently missing from ``GENERATORS``."""

import subprocess
import sys
import textwrap

import pytest

from asccl.spfem.generators import GENERATORS, build_generator

# Run in a fresh interpreter: a finder placed before the normal ones makes one generator
# module raise ImportError while it executes (as a broken import inside it would).
BROKEN_IMPORT = textwrap.dedent(
    """
    import importlib.abc
    import importlib.machinery
    import sys

    BROKEN = {broken!r}

    class Loader(importlib.abc.Loader):
        def create_module(self, spec):
            return None

        def exec_module(self, module):
            raise ImportError("cannot import name 'missing_layer' (a broken generator)")

    class Finder(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name == BROKEN:
                return importlib.machinery.ModuleSpec(name, Loader())
            return None

    sys.meta_path.insert(0, Finder())
    try:
        import asccl.spfem.generators as generators
    except ImportError as error:
        print("raised:", error)
        sys.exit(3)
    print("imported:", sorted(generators.GENERATORS))
    """
)


def test_both_reference_generators_are_registered():
    assert sorted(GENERATORS) == ["ganmut", "icface"]
    for name, cls in GENERATORS.items():
        assert isinstance(build_generator(name), cls)


@pytest.mark.parametrize("module", ["ganmut", "icface"])
def test_a_generator_that_fails_to_import_makes_the_package_fail(module):
    script = BROKEN_IMPORT.format(broken=f"asccl.spfem.generators.{module}")
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 3, result.stdout + result.stderr
    assert "a broken generator" in result.stdout
