"""Optional packages (asccl.optional): one error type whose one line names the pip
requirement pyproject.toml pins and the extras that bring it; the CLI prints it as one
``asccl: error:`` line, without a traceback, when a command needs a package that is missing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from asccl.config import read_toml
from asccl.optional import OPTIONAL, MissingDependencyError, missing_dependency, require

ROOT = Path(__file__).resolve().parents[1]
EXTRAS = ("data", "eval", "study", "demo")
#: in an extra but never imported by asccl: librosa's audio backend; starlette's TestClient
NOT_IMPORTED = {"soundfile>=0.12", "httpx>=0.27"}


def _extras(expand: bool) -> dict[str, list[str]]:
    """pyproject's extras; ``expand``: a self-reference (``asccl[data,eval]``) replaced by
    the extras it names."""
    table = read_toml(ROOT / "pyproject.toml")["project"]
    raw = table["optional-dependencies"]
    out = {}
    for extra in EXTRAS:
        out[extra] = []
        for req in raw[extra]:
            if req.startswith("asccl[") and expand:
                out[extra] += [r for name in req[6:-1].split(",") for r in raw[name]]
            elif not req.startswith("asccl["):
                out[extra].append(req)
    return out


def test_the_table_is_pyprojects_extras():
    """Each listed requirement is pinned as pyproject.toml pins it, in exactly the extras the
    table names (the demo extra brings data and eval by reference); every package an extra
    brings is listed, so a missing one gets the one-line error."""
    extras = _extras(expand=False)
    for module, package in OPTIONAL.items():
        found = {e for e in EXTRAS if package.requirement in extras[e]}
        assert found == set(package.extras), (module, package, found)
    listed = {p.requirement for p in OPTIONAL.values()}
    for extra, items in _extras(expand=True).items():
        missing = set(items) - listed - NOT_IMPORTED
        assert not missing, f"{extra}: {missing} not in asccl.optional.OPTIONAL"


def test_the_message_is_one_line_naming_what_to_install():
    absent = ModuleNotFoundError("No module named 'cv2'", name="cv2")
    err = MissingDependencyError("cv2", "framing needs OpenCV", absent)
    assert str(err) == ("framing needs OpenCV: pip install 'opencv-python-headless>=4.8,<5' "
                        "(or pip install 'asccl[data]' or 'asccl[eval]')")  # fmt: skip
    assert isinstance(err, ImportError) and err.name == "cv2"
    # a broken install keeps its reason (folded onto one line); no extra: no asccl[...]
    broken = ImportError("libGL.so.1: cannot open\nshared object file")
    err = MissingDependencyError("h5py.x", "reading .h5 needs h5py", broken, hint="or use .mat")
    assert str(err) == ("reading .h5 needs h5py (libGL.so.1: cannot open shared object file): "
                        "pip install h5py; or use .mat")  # fmt: skip


def test_require_imports_or_raises_the_one_error(monkeypatch):
    assert require("json", "x needs json") is sys.modules["json"]
    monkeypatch.setitem(sys.modules, "soxr", None)  # import fails, as when not installed
    with pytest.raises(MissingDependencyError) as err:
        require("soxr", "resampling audio needs soxr")
    assert str(err.value) == ("resampling audio needs soxr: pip install 'soxr>=0.3' "
                              "(or pip install 'asccl[data]' or 'asccl[eval]')")  # fmt: skip


def test_a_plain_module_not_found_is_converted_only_for_listed_modules():
    err = missing_dependency(ModuleNotFoundError("x", name="torchmetrics.utilities.data"))
    assert str(err) == ("this command needs torchmetrics: pip install 'torchmetrics>=1.4' "
                        "(or pip install 'asccl[eval]')")  # fmt: skip
    assert missing_dependency(ModuleNotFoundError("x", name="asccl.nope")) is None  # a bug
    assert missing_dependency(ImportError("cannot import name 'f'", name="torch")) is None
    same = MissingDependencyError("av", "decoding needs PyAV")
    assert missing_dependency(same) is same


def test_the_error_survives_pickling_from_a_pool_worker():
    import pickle

    err = MissingDependencyError("av", "decoding needs PyAV", hint="then retry")
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is MissingDependencyError
    assert (str(back), back.name, back.module) == (str(err), "av", "av")


#: ``python -m asccl ARGS`` with MODULE blocked (``None`` in sys.modules makes its import
#: raise ModuleNotFoundError, as when it is not installed)
BLOCKED = """
import runpy, sys
sys.modules[sys.argv[1]] = None
sys.argv = ["asccl", *sys.argv[2:]]
runpy.run_module("asccl", run_name="__main__", alter_sys=True)
"""


@pytest.mark.parametrize(
    ("module", "argv", "needs", "extra"),
    [
        # evaluate imports the framing, which imports OpenCV, before it reads anything
        ("cv2", ["evaluate", "--results", "{tmp}/results"],
         "need OpenCV: pip install 'opencv-python-headless>=4.8,<5'", "asccl[eval]"),
        # data index decodes each clip with PyAV: the run stops at the first item (in
        # this process, or in a pool worker whose error is pickled to the parent)
        ("av", ["data", "index", "--root", str(ROOT / "demo_data" / "MEAD"), "--out",
                "{tmp}/out", "--workers", "0", "--speakers", "W901"],
         "needs PyAV: pip install 'av>=12'", "asccl[data]"),
        ("av", ["data", "index", "--root", str(ROOT / "demo_data" / "MEAD"), "--out",
                "{tmp}/out", "--workers", "2", "--speakers", "W901"],
         "needs PyAV: pip install 'av>=12'", "asccl[data]"),
    ],
    ids=["evaluate-without-opencv", "data-index-without-pyav", "data-index-pool-without-pyav"],
)  # fmt: skip
def test_a_command_without_its_package_prints_one_error_line(tmp_path, module, argv, needs,
                                                              extra):  # fmt: skip
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    done = subprocess.run([sys.executable, "-c", BLOCKED, module, *argv], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr  # the CLI's error exit
    assert "Traceback" not in done.stderr, done.stderr
    lines = [line for line in done.stderr.replace("\r", "\n").splitlines() if "error" in line]
    assert len(lines) == 1 and lines[0].startswith("asccl: error: "), done.stderr
    assert needs in lines[0] and extra in lines[0], lines[0]
    assert "failed" not in lines[0], lines[0]  # said once, not as every item's failure
