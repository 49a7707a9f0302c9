"""``asccl weights check``: is each pretrained file asccl would read the right one?

For every file asccl reads (:data:`CHECKED_FILES`), the path comes from a flag, else a key
of a TOML config (any table: ``[eval]``'s ``arcface_weights`` counts), else its environment
variable: the loaders' order (:func:`asccl.weights.require_weights_file` reads the variable
only when the config gives no path), so the file checked is the file a run would read.
Each found file is read and checked the way asccl loads it (keys, shapes, finite values;
models built on the ``meta`` device, so nothing is allocated) and its SHA-256 is computed
and compared where the published one is known.
Nothing is downloaded. ``docs/weights.md`` says where each file comes from.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from asccl.weights import (
    ARCFACE_WEIGHTS,
    ASCCL_METRIC_WEIGHTS,
    DLIB_PREDICTOR_WEIGHTS,
    FAN_WEIGHTS,
    WeightsSpec,
)

Status = str  # "ok", "wrong", "missing" or "not set"


class WrongFile(ValueError):
    """A file that is there but is not the file asccl needs (one line: why)."""


@dataclass(frozen=True)
class CheckedFile:
    """One pretrained file the check knows: its spec, how to verify it, where its path is set.

    ``verify(path)`` returns a short description of what it found, or raises (any
    ``ValueError``, ``OSError`` or ``ImportError``: the file is wrong, or cannot be checked).
    """

    name: str  #: flag stem and table key, e.g. "arcface"
    spec: WeightsSpec
    verify: Callable[[Path], str]
    config_keys: tuple[str, ...]  #: TOML keys that hold its path
    folder: bool = False  #: a folder of files instead of one file


@dataclass(frozen=True)
class CheckResult:
    """What ``asccl weights check`` found for one file."""

    file: CheckedFile
    status: Status
    path: Path | None = None
    origin: str = ""  #: where the path came from: a flag, an environment variable, a key
    detail: str = ""  #: what was found, or what is wrong
    sha256: str | None = None

    def line(self) -> str:
        """One report line (two when there is a digest or a fix to give)."""
        spec = self.file.spec
        head = f"{self.file.name:<10} {self.status.upper():<8} {spec.what}"
        if self.status == "not set":
            how = f"{spec.flag}" + (f" or {spec.env_var}" if spec.env_var else "")
            return (
                f"{head}: not given (--{self.file.name} here; elsewhere {how}); "
                f"get {spec.filename} from {spec.source}"
            )
        text = f"{head}: {self.path} (from {self.origin}): {self.detail}"
        if self.status in ("wrong", "missing"):
            text += f"\n{'':<20}get {spec.filename} from {spec.source}"
        if self.sha256:
            text += f"\n{'':<20}sha256 {self.sha256}"
        return text


# --- how each file is verified ---------------------------------------------------------------


def _meta_check(build: Callable[[], Any], path: Path, spec: WeightsSpec, filter_fn, what: str):
    import torch

    from asccl.weights import load_pretrained

    with torch.device("meta"):
        load_pretrained(build, path, spec, filter_fn, what=what, check_only=True)


def _verify_arcface(path: Path) -> str:
    """The first insightface IResNet depth the file loads into (head keys may be unused)."""
    from asccl.metric.iresnet import IRESNET_LAYERS, check_arcface_weights

    names = sorted(IRESNET_LAYERS, key=lambda n: (n != "iresnet50", n))  # the default first
    first_error: Exception | None = None
    for name in names:
        try:
            check_arcface_weights(path, name)
        except ValueError as exc:
            first_error = first_error or exc
            continue
        return f"insightface {name} layout, finite values"
    raise WrongFile(str(first_error))


def _verify_syncnet(path: Path) -> str:
    from asccl.evaluation.syncnet import SYNCNET_WEIGHTS, SyncNet, syncnet_filter

    _meta_check(SyncNet, path, SYNCNET_WEIGHTS, syncnet_filter, "syncnet_python's SyncNet (S)")
    return "syncnet_python's SyncNet layout, finite values"


def _verify_inception(path: Path) -> str:
    from asccl.evaluation.inception import INCEPTION_WEIGHTS, FIDInceptionV3
    from asccl.io import fill_batchnorm_counters

    what = "pytorch-fid's FID Inception-v3"
    _meta_check(FIDInceptionV3, path, INCEPTION_WEIGHTS, fill_batchnorm_counters, what)
    return "pytorch-fid's FID Inception-v3 layout, finite values"


def _verify_metric(path: Path) -> str:
    from asccl.metric.checkpoint import describe_metric

    lines = describe_metric(path).splitlines()  # loads it: every check runs
    kind = lines[0].split(": ", 1)[-1]
    return f"{kind}; {lines[3]}"


def _verify_dlib(path: Path) -> str:
    try:
        import dlib
    except ImportError:
        return "present (not read: dlib is not installed)"
    try:
        predictor = dlib.shape_predictor(str(path))
    except RuntimeError as exc:
        raise WrongFile(f"dlib cannot read it as a shape predictor ({exc})") from None
    import numpy as np

    parts = predictor(np.zeros((32, 32), np.uint8), dlib.rectangle(0, 0, 31, 31)).num_parts
    if parts != 68:
        raise WrongFile(f"a {parts}-point predictor, not the 68-point one")
    return "dlib reads it: 68 points"


def _verify_fan(folder: Path) -> str:
    if not folder.is_dir():
        raise WrongFile("not a folder (the FAN weights are a folder holding two files)")
    try:  # the exact 2DFAN-4 file name this face_alignment version loads
        import face_alignment.api as fa_api

        from asccl.data.landmarks import fan_weight_files

        fan, detector = fan_weight_files(fa_api)
        has_fan = (folder / fan).is_file()
    except ImportError:  # without face_alignment: any 2DFAN-4 archive
        fan, detector = "2DFAN4-*.zip", "s3fd-619a316812.pth"
        has_fan = any(folder.glob(fan))
    absent = [name for name, there in ((fan, has_fan), (detector, None)) if there is False]
    if not (folder / detector).is_file():
        absent.append(detector)
    if absent:
        raise WrongFile(f"lacks {' and '.join(absent)}")
    return f"holds {fan} and {detector}"


def _verify_flame(path: Path) -> str:
    from asccl.spfem.face3d import load_flame
    from asccl.spfem.face3d.convert import flame_shape_problem, read_flame_pickle

    if path.suffix == ".npz":
        flame = load_flame(path)
        return f"asccl FLAME .npz, {flame.v_template.shape[0]} vertices"
    arrays = read_flame_pickle(path)
    problem = flame_shape_problem(arrays)
    if problem:
        raise WrongFile(problem)
    return f"FLAME pickle, {arrays['v_template'].shape[0]} vertices (asccl face3d convert-flame)"


def _verify_bfm(path: Path) -> str:
    from asccl.spfem.face3d import load_bfm

    bfm = load_bfm(path)
    return f"BFM, {bfm.mean_shape.numel() // 3} vertices"


def _flame_spec() -> WeightsSpec:
    from asccl.spfem.face3d.errors import FLAME_SOURCE

    return WeightsSpec("FLAME 3DMM", "generic_model.pkl", FLAME_SOURCE, "", "load_flame(path)")


def _bfm_spec() -> WeightsSpec:
    from asccl.spfem.face3d.errors import BFM_SOURCE

    return WeightsSpec("Basel Face Model", "BFM_model_front.mat", BFM_SOURCE, "", "load_bfm(path)")


def checked_files() -> list[CheckedFile]:
    """Every pretrained file ``asccl weights check`` knows, in report order."""
    from asccl.evaluation.inception import INCEPTION_WEIGHTS
    from asccl.evaluation.syncnet import SYNCNET_WEIGHTS

    # pytorch-fid's file name ends in the first 8 hex digits of its SHA-256 (torch.hub's
    # convention); pytorch-fid publishes neither the full digest nor the size.
    inception = replace(INCEPTION_WEIGHTS, sha256_prefix="6726825d")
    return [
        CheckedFile("arcface", ARCFACE_WEIGHTS, _verify_arcface, ("arcface_weights",)),
        CheckedFile("syncnet", SYNCNET_WEIGHTS, _verify_syncnet, ("syncnet_weights",)),
        CheckedFile("inception", inception, _verify_inception, ("inception_weights",)),
        CheckedFile("metric", ASCCL_METRIC_WEIGHTS, _verify_metric, ("asccl_checkpoint", "metric")),
        CheckedFile("dlib", DLIB_PREDICTOR_WEIGHTS, _verify_dlib, ("dlib_predictor",)),
        CheckedFile("fan", FAN_WEIGHTS, _verify_fan, ("fan_weights",), folder=True),
        CheckedFile("flame", _flame_spec(), _verify_flame, ("flame",)),
        CheckedFile("bfm", _bfm_spec(), _verify_bfm, ("bfm",)),
    ]


# --- where the paths come from ---------------------------------------------------------------


def _config_paths(config: Path) -> Iterator[tuple[str, str, Any, Path]]:
    """``(dotted key, last key, value, file)`` of every string value in a TOML config and in
    the files it includes, as :func:`~asccl.config.load_config` reads them: a table's
    ``include = "FILE"`` (the keys beside it first: they override it) and a table given as a
    file name (``eval = "configs/eval/demo.toml"``); ``file`` is where the value is written."""
    from asccl.config import INCLUDE, ConfigError, read_toml

    def walk(table: Mapping[str, Any], prefix: str, file: Path, seen: tuple[Path, ...]):
        for key, value in table.items():
            if isinstance(value, Mapping):
                yield from walk(value, f"{prefix}{key}.", file, seen)
            elif isinstance(value, str) and key != INCLUDE and not _names_config(value):
                yield f"{prefix}{key}", key, value, file
        for key, value in table.items():  # included tables last: the keys above win
            if isinstance(value, str) and (key == INCLUDE or _names_config(value)):
                inner = prefix if key == INCLUDE else f"{prefix}{key}."
                yield from read(Path(value).expanduser(), inner, seen)

    def read(file: Path, prefix: str, seen: tuple[Path, ...]):
        if file.resolve() in seen:
            raise ConfigError(f"{file} includes itself")
        yield from walk(read_toml(file), prefix, file, (*seen, file.resolve()))

    yield from read(config, "", ())


def _names_config(value: str) -> bool:
    """A string value that names a TOML file: a table given as a file to include."""
    return value.endswith(".toml")


def find_paths(
    given: Mapping[str, str | os.PathLike | None], config: str | os.PathLike | None = None
) -> dict[str, tuple[Path, str]]:
    """The path of each known file and where it came from: ``given[name]`` (a flag) wins,
    then the first of its keys in ``config``, then the file's environment variable (as the
    loaders: a config's path wins over the variable)."""
    found: dict[str, tuple[Path, str]] = {}
    files = checked_files()
    if config is not None:
        for dotted, key, value, source in _config_paths(Path(config)):
            for file in files:
                if key in file.config_keys and file.name not in found:
                    found[file.name] = (Path(value).expanduser(), f"{source}: {dotted}")
    for file in files:
        env = file.spec.env_var
        if env and os.environ.get(env) and file.name not in found:
            found[file.name] = (Path(os.environ[env]).expanduser(), f"${env}")
        if given.get(file.name):
            found[file.name] = (Path(given[file.name]).expanduser(), f"--{file.name}")
    if "dlib" not in found:  # what DlibLandmarks uses when given no path
        from asccl.data.landmarks import default_dlib_predictor

        default = default_dlib_predictor()
        if default is not None:
            found["dlib"] = (default, "the face-recognition-models wheel")
    return found


# --- the check -------------------------------------------------------------------------------


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _checksum_problem(spec: WeightsSpec, path: Path, sha256: str) -> str | None:
    if spec.size is not None and path.stat().st_size != spec.size:
        return f"{path.stat().st_size} bytes, the published file has {spec.size}"
    if spec.sha256 is not None and sha256 != spec.sha256:
        return f"SHA-256 {sha256} differs from the published {spec.sha256}"
    if spec.sha256_prefix is not None and not sha256.startswith(spec.sha256_prefix):
        return (
            f"SHA-256 starts {sha256[:8]}, the published file's name says "
            f"{spec.sha256_prefix} (another file, or re-saved)"
        )
    return None


def check_file(file: CheckedFile, path: Path | None, origin: str = "") -> CheckResult:
    """Classify one file: ``ok``, ``wrong`` (checksum or layout), ``missing`` (a path was
    given, nothing is there) or ``not set`` (no path from any source)."""
    if path is None:
        return CheckResult(file, "not set")
    if not path.exists():
        return CheckResult(file, "missing", path, origin, "no such file or folder")
    if not file.folder and not path.is_file():
        return CheckResult(file, "wrong", path, origin, "a folder, not a file")
    sha256 = None if file.folder else file_sha256(path)
    try:
        detail = file.verify(path)
    except (ValueError, OSError, KeyError, TypeError) as exc:  # the loaders' one-line errors
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return CheckResult(file, "wrong", path, origin, f"layout: {text}", sha256)
    problem = sha256 and _checksum_problem(file.spec, path, sha256)
    if problem:
        return CheckResult(file, "wrong", path, origin, f"checksum: {problem}", sha256)
    if sha256 and file.spec.sha256_prefix:
        detail += f"; SHA-256 starts with {file.spec.sha256_prefix}, as its name says"
    return CheckResult(file, "ok", path, origin, detail, sha256)


def check_weights(
    given: Mapping[str, str | os.PathLike | None], config: str | os.PathLike | None = None
) -> list[CheckResult]:
    """Check every known file whose path a flag (``given``), ``config`` or environment
    variable gives (in that order); the others are reported as ``not set``."""
    found = find_paths(given, config)
    return [check_file(f, *found.get(f.name, (None, ""))) for f in checked_files()]


def report(results: list[CheckResult]) -> str:
    """The report ``asccl weights check`` prints: one entry per file, then a summary line."""
    counts = {s: sum(r.status == s for r in results) for s in ("ok", "wrong", "missing")}
    lines = [r.line() for r in results]
    lines.append(
        f"{counts['ok']} ok, {counts['wrong']} wrong, {counts['missing']} missing, "
        f"{len(results) - sum(counts.values())} not set (docs/weights.md: what each file is)"
    )
    return "\n".join(lines)
