"""The one atomic write and the one file lock (rag/fsutil.py), on the real filesystem."""

from __future__ import annotations

import stat
import threading
import time
from pathlib import Path

import pytest

from rag.fsutil import FILE_MODE, FileLock, atomic_file, atomic_write_bytes, atomic_write_text, temp_glob


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_an_atomic_write_replaces_the_file_readable_by_all(tmp_path: Path) -> None:
    target = tmp_path / "record.json"
    target.write_text("old")
    atomic_write_text(target, '{"new": true}')
    assert target.read_text() == '{"new": true}'
    assert mode(target) == FILE_MODE == 0o644  # not mkstemp's 0600
    assert not list(tmp_path.glob(temp_glob(target)))


def test_an_explicit_mode_is_kept(tmp_path: Path) -> None:
    target = tmp_path / "secret.bin"
    atomic_write_bytes(target, b"\x00\x01", mode=0o600)
    assert target.read_bytes() == b"\x00\x01" and mode(target) == 0o600


def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "model.onnx"
    target.write_bytes(b"good")
    with pytest.raises(RuntimeError, match="export failed"), atomic_file(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("export failed")
    assert target.read_bytes() == b"good"
    assert not list(tmp_path.glob(temp_glob(target)))


def test_a_held_lock_times_out_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / ".lock"
    with FileLock(path):
        other = FileLock(path)
        with pytest.raises(TimeoutError, match=r"\.lock is locked by another process"):
            other.acquire(timeout_s=0.3)
        assert not other.held
    other.acquire(timeout_s=0)  # free once the first holder left its block
    assert other.held
    other.release()


def test_a_waiting_lock_gets_it_when_released(tmp_path: Path) -> None:
    path = tmp_path / "join.lock"
    first = FileLock(path)
    first.acquire()
    threading.Timer(0.3, first.release).start()
    started = time.monotonic()
    with FileLock(path):  # waits without a timeout
        assert time.monotonic() - started >= 0.25
