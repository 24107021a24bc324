"""File names of an index directory and the atomic pointer to its committed version.

An index directory (format 2, segmented)::

    CURRENT                  names the live manifest ("manifest-000007.json"); replaced by one rename
    manifest-000007.json     the live version: its number, counts and the segments it reads
    manifest-000006.json     the predecessor, kept for readers finishing a query (index.keep_versions)
    segments/seg-000007.*    immutable vector segments (rag.index.segments), one per commit or merge
    store.sqlite             chunk text, documents and keyword terms, rows tagged with the version
                             that added and the one that deleted them (rag.index.sqlite_store)
    .lock                    the single writer's lock
    uploads/                 files received over HTTP

Format 1 (before segments) kept a whole copy per version in ``vNNNNNN/`` folders; such an index is
converted in place by its next writer (``rag compact`` or any ingest), see rag.index.writer.
"""

from __future__ import annotations

import re
from pathlib import Path

from rag.errors import IndexFormatError, IndexNotFoundError
from rag.fsutil import atomic_file, fsync_dir, temp_glob

__all__ = ["fsync_dir"]  # re-exported for the writer

CURRENT = "CURRENT"
STORE = "store.sqlite"
SEGMENTS = "segments"
LOCK = ".lock"
UPLOADS = "uploads"  # files received over HTTP, kept so the index can be rebuilt from them
# Format 1 (one folder per version, each a full copy): read only to convert it.
LEGACY_VECTORS = "vectors.faiss"
LEGACY_STORE = "store.sqlite"
LEGACY_MANIFEST = "manifest.json"
_MANIFEST = re.compile(r"manifest-(\d{6,})\.json")
_LEGACY_DIR = re.compile(r"v(\d{6,})")


def manifest_name(version: int) -> str:
    return f"manifest-{version:06d}.json"


def manifest_number(path: Path) -> int | None:
    """The version of a manifest file name (``manifest-000007.json`` -> 7), None for anything else."""
    match = _MANIFEST.fullmatch(Path(path).name)
    return int(match.group(1)) if match else None


def manifest_paths(root: Path) -> list[Path]:
    """Manifest files, oldest first (committed, superseded and orphaned alike)."""
    found = [p for p in Path(root).glob("manifest-*.json") if manifest_number(p) is not None]
    return sorted(found, key=lambda p: manifest_number(p) or 0)


def legacy_dirs(root: Path) -> list[Path]:
    """Format-1 version folders (``v000007``), oldest first."""
    found = [p for p in Path(root).glob("v[0-9]*") if _LEGACY_DIR.fullmatch(p.name) and p.is_dir()]
    return sorted(found, key=lambda p: int(p.name[1:]))


def current_name(root: Path) -> str:
    """What CURRENT names; raises IndexNotFoundError when nothing was ever committed."""
    try:
        return (Path(root) / CURRENT).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise IndexNotFoundError(
            f"no index at {root}; build one with `rag ingest PATH --index {root}`"
        ) from None


def current_manifest_path(root: Path) -> Path:
    """The live manifest's path; IndexFormatError for an index in the old, unsegmented format."""
    name = current_name(root)
    if _LEGACY_DIR.fullmatch(name):
        raise IndexFormatError(
            f"the index at {root} is in the format of an earlier release (a full copy per version); "
            f"convert it in place with `rag compact --index {root}` (safe to interrupt; readers of "
            "the old release keep working until it finishes)"
        )
    return Path(root) / name


def legacy_current_dir(root: Path) -> Path | None:
    """The live format-1 version folder, or None when the index is not in format 1."""
    try:
        name = current_name(root)
    except IndexNotFoundError:
        return None
    return Path(root) / name if _LEGACY_DIR.fullmatch(name) else None


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
