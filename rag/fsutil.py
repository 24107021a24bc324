"""Durability helpers shared by everything that replaces files in place (index, jobs, model caches):
one atomic write, one file lock, one file mode.

An atomic write stages the new content in a temporary file in the target's folder (a rename is
atomic only within one filesystem), fsyncs it, renames it over the target and fsyncs the folder,
so a crash leaves the old file or the new one, never a torn one. Temporary files are named
``.<target name>.<random>.tmp`` (``temp_glob`` matches them) so a caller that holds the target's
lock can remove what a crash left behind.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

# Files we write are readable by everyone, like any model or index file: caches and indexes are
# shared between users and services (mkstemp alone would make them 0600).
FILE_MODE = 0o644
TEMP_SUFFIX = ".tmp"
LOCK_POLL_S = 0.2  # how often a lock with a timeout is tried again


def fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable, not just the renamed file's bytes."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_glob(path: Path) -> str:
    """The glob (in ``path``'s folder) of the temporary files ``atomic_file`` stages ``path`` in."""
    return f".{Path(path).name}.*{TEMP_SUFFIX}"


@contextmanager
def atomic_file(path: Path, mode: int = FILE_MODE) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write (by any means: a library that takes a file
    name, a copy loop); when the block ends without error it gets ``mode``, is fsynced and renamed
    over ``path``, and the folder is fsynced. On error it is removed and ``path`` is untouched."""
    path = Path(path)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, mode)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: Path, data: bytes, mode: int = FILE_MODE) -> None:
    """Replace ``path`` with ``data`` atomically and durably (module docstring)."""
    with atomic_file(path, mode) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: Path, text: str, mode: int = FILE_MODE, encoding: str = "utf-8") -> None:
    """Replace ``path`` with ``text`` atomically and durably (module docstring)."""
    atomic_write_bytes(path, text.encode(encoding), mode)


class FileLock:
    """An exclusive ``flock`` on ``path`` (created if missing): one holder across processes and
    threads (each FileLock opens its own descriptor). Released by ``release()``, by leaving the
    ``with`` block, or when the process exits, so a crash never leaves it held."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._fh: int | None = None

    def acquire(self, timeout_s: float | None = None) -> None:
        """Wait for the lock: forever when ``timeout_s`` is None, else at most ``timeout_s``
        seconds (0: one try), then raise TimeoutError naming the lock file."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, FILE_MODE)
        try:
            self._wait(fd, timeout_s)
        except BaseException:
            os.close(fd)
            raise
        self._fh = fd

    def _wait(self, fd: int, timeout_s: float | None) -> None:
        if timeout_s is None:
            fcntl.flock(fd, fcntl.LOCK_EX)
            return
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise TimeoutError(
                        f"{self.path} is locked by another process (waited {timeout_s:g} s); "
                        "wait for it to finish, or allow a longer wait"
                    ) from None
                time.sleep(LOCK_POLL_S)

    def release(self) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh, fcntl.LOCK_UN)
            os.close(self._fh)
            self._fh = None

    @property
    def held(self) -> bool:
        return self._fh is not None

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
