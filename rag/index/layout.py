"""File names of an index directory and the atomic pointer to its committed version."""

from __future__ import annotations

import re
from pathlib import Path

from rag.errors import IndexNotFoundError
from rag.fsutil import atomic_file, fsync_dir, temp_glob

__all__ = ["fsync_dir"]  # re-exported for the writer

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


def temp_files(path: Path) -> list[Path]:
    """Temp files ``write_atomic`` staged ``path`` in; a crash can leave one, the writer removes it."""
    return list(Path(path).parent.glob(temp_glob(path)))


def write_atomic(path: Path, text: str, before_replace: object = None) -> None:
    """``rag.fsutil.atomic_file``: a temp file beside ``path``, fsynced, renamed over it, the
    directory fsynced.

    ``before_replace`` (a no-argument callable) runs once the text is written, before the rename;
    the crash tests use it.
    """
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
        if callable(before_replace):
            before_replace()
