"""File names of an index directory and the atomic pointer to its committed version."""

from __future__ import annotations

import os
import re
from pathlib import Path

from rag.errors import IndexNotFoundError
from rag.fsutil import fsync_dir

CURRENT = "CURRENT"
VECTORS = "vectors.faiss"
STORE = "store.sqlite"
MANIFEST = "manifest.json"
LOCK = ".lock"
UPLOADS = "uploads"  # files received over HTTP, kept so the index can be rebuilt from them
_VERSION_DIR = re.compile(r"v(\d{6,})")


def version_name(version: int) -> str:
    return f"v{version:06d}"


def version_number(path: Path) -> int | None:
    """The number of a version directory name (``v000007`` -> 7), None for anything else."""
    match = _VERSION_DIR.fullmatch(path.name)
    return int(match.group(1)) if match else None


def version_dirs(root: Path) -> list[Path]:
    """Version directories, oldest first (committed, superseded and orphaned alike)."""
    found = [p for p in Path(root).glob("v[0-9]*") if version_number(p) is not None and p.is_dir()]
    return sorted(found, key=lambda p: version_number(p) or 0)


def current_version_dir(root: Path) -> Path:
    pointer = root / CURRENT
    try:
        name = pointer.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise IndexNotFoundError(
            f"no index at {root}; build one with `rag ingest PATH --index {root}`"
        ) from None
    return root / name


def temp_name(path: Path) -> Path:
    """Where ``write_atomic`` stages ``path``; a crash can leave it behind, the writer removes it."""
    return path.with_name(path.name + f".tmp-{os.getpid()}")


def write_atomic(path: Path, text: str, before_replace: object = None) -> None:
    """Write to a temp file, fsync, rename over the target, fsync the directory.

    ``before_replace`` (a no-argument callable) runs between the two; the crash tests use it.
    """
    tmp = temp_name(path)
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    if callable(before_replace):
        before_replace()
    os.replace(tmp, path)
    fsync_dir(path.parent)
