"""File names of an index directory and the atomic pointer to its committed version."""

from __future__ import annotations

import os
from pathlib import Path

from rag.errors import IndexNotFoundError

CURRENT = "CURRENT"
VECTORS = "vectors.faiss"
STORE = "store.sqlite"
MANIFEST = "manifest.json"
LOCK = ".lock"


def version_name(version: int) -> str:
    return f"v{version:06d}"


def current_version_dir(root: Path) -> Path:
    pointer = root / CURRENT
    try:
        name = pointer.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise IndexNotFoundError(
            f"no index at {root}; build one with `rag ingest PATH --index {root}`"
        ) from None
    return root / name


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, text: str) -> None:
    """Write to a temp file, fsync, rename over the target, fsync the directory."""
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)
