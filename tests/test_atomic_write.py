"""asccl.io.atomic_write: the one way files and folders are replaced."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from asccl.io import atomic, atomic_write, write_bytes_atomic, write_text_atomic


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_text_and_bytes_written_exactly(tmp_path):
    text = "a,b\n1,é\r\n"  # newlines and UTF-8 as given, on every platform
    path = write_text_atomic(tmp_path / "sub" / "t.csv", text)
    assert path == tmp_path / "sub" / "t.csv"  # the missing folder is made
    assert path.read_bytes() == text.encode("utf-8")
    data = bytes(range(256))
    assert write_bytes_atomic(tmp_path / "b.bin", data).read_bytes() == data
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.bin", "sub"]


def test_permissions_new_kept_and_forced(tmp_path):
    old_umask = os.umask(0o077)  # a new file's bits do not depend on the umask
    try:
        new = write_text_atomic(tmp_path / "new.txt", "x")
        assert mode_of(new) == 0o644
        os.chmod(new, 0o640)
        assert mode_of(write_text_atomic(new, "y")) == 0o640  # a replaced file's bits kept
        os.umask(0o000)
        secret = write_text_atomic(tmp_path / "secret.json", "{}", mode=0o600)
        assert mode_of(secret) == 0o600
    finally:
        os.umask(old_umask)


def test_temporary_is_a_hidden_sibling_with_the_suffix(tmp_path):
    target = tmp_path / "plot.png"
    with atomic_write(target) as tmp:
        assert tmp.parent == tmp_path and tmp.is_file() and tmp.stat().st_size == 0
        assert tmp.name.startswith(".plot.png.") and tmp.name.endswith(".tmp.png")
        assert mode_of(tmp) == 0o600  # private while it is written
        tmp.write_bytes(b"new")
        assert not target.exists()  # nothing visible before the block ends
    assert target.read_bytes() == b"new"


@pytest.mark.parametrize("error", [OSError("disk full"), KeyboardInterrupt()])
def test_failure_keeps_the_old_file_and_leaves_nothing(tmp_path, error):
    target = write_text_atomic(tmp_path / "t.txt", "old")
    with pytest.raises(type(error)), atomic_write(target) as tmp:
        tmp.write_text("half")
        raise error
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["t.txt"]


def test_data_is_synced_before_the_rename(tmp_path, monkeypatch):
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src, dst) -> None:
        events.append(("replace", str(src)))
        real_replace(src, dst)

    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc to name a file descriptor")
    monkeypatch.setattr(atomic.os, "fsync", fsync)
    monkeypatch.setattr(atomic.os, "replace", replace)
    with atomic_write(tmp_path / "t.txt") as tmp:
        tmp.write_text("data")
    assert events == [("fsync", str(tmp)), ("replace", str(tmp)), ("fsync", str(tmp_path))]


def fill(folder: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)


def contents(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def test_folder_new_replaced_and_failed(tmp_path):
    target = tmp_path / "step_00000010"
    with atomic_write(target, folder=True) as tmp:
        assert tmp.is_dir() and not any(tmp.iterdir()) and tmp.parent == tmp_path
        assert tmp.name.startswith(".step_00000010.") and tmp.name.endswith(".tmp")
        fill(tmp, {"a.bin": b"1", "sub/b.bin": b"2"})
    assert contents(target) == {"a.bin": b"1", "sub/b.bin": b"2"}
    assert mode_of(target) == 0o755  # not mkdtemp's 0700
    with atomic_write(target, folder=True) as tmp:
        fill(tmp, {"c.bin": b"3"})
    assert contents(target) == {"c.bin": b"3"}  # the old folder's files are gone
    with pytest.raises(RuntimeError), atomic_write(target, folder=True) as tmp:
        fill(tmp, {"d.bin": b"4"})
        raise RuntimeError("killed")
    assert contents(target) == {"c.bin": b"3"}
    assert [p.name for p in tmp_path.iterdir()] == ["step_00000010"]


@pytest.mark.parametrize("first_folder", [True, False])
def test_a_folder_replaces_a_file_and_back(tmp_path, first_folder):
    target = tmp_path / "clip.store"
    for folder in (first_folder, not first_folder):
        with atomic_write(target, folder=folder) as tmp:
            if folder:
                fill(tmp, {"frames.npy": b"f"})
            else:
                tmp.write_bytes(b"file")
        assert target.is_dir() == folder
        assert (contents(target) == {"frames.npy": b"f"}) if folder else target.read_bytes()
    assert [p.name for p in tmp_path.iterdir()] == ["clip.store"]


def test_a_failed_rename_puts_the_old_folder_back(tmp_path, monkeypatch):
    target = tmp_path / "store"
    with atomic_write(target, folder=True) as tmp:
        fill(tmp, {"old.bin": b"old"})
    real_replace = os.replace

    def replace(src, dst) -> None:
        if Path(dst) == target and Path(src).name.endswith(".tmp"):  # not the way back
            raise OSError("no space left")
        real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "replace", replace)
    with pytest.raises(OSError, match="no space"), atomic_write(target, folder=True) as tmp:
        fill(tmp, {"new.bin": b"new"})
    monkeypatch.undo()
    assert contents(target) == {"old.bin": b"old"}
    assert [p.name for p in tmp_path.iterdir()] == ["store"]
