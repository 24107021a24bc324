"""The vector index: FAISS for vectors, SQLite for chunk text and metadata, versioned on disk.

``FaissSqliteStore`` (faiss_store.py) is the ``VectorStore`` the rest of the service uses (registry
name ``faiss``); nothing outside this package touches FAISS, SQLite or the handle directly.

Layout of an index directory::

    index/
      CURRENT          name of the committed version, replaced atomically on commit
      v000007/         one complete, immutable version
        vectors.faiss  IndexIDMap2(IndexFlatIP): int64 chunk id -> normalised vector
        store.sqlite   documents and chunks (text, source, page, offsets, hashes)
        manifest.json  embedding model, dimension, metric, chunking, counts, times
      .lock            writer lock (fcntl), shared with other processes
      uploads/         files received over HTTP: uploads/<sha256>/<name> (see api/jobs.py)

A commit writes a whole new version directory (``.staging-*``, fsynced, renamed to ``vNNNNNN``)
and then swaps CURRENT, so a crash at any moment leaves either the old or the new version, and
readers never see a mix. The next writer removes what a killed one left behind (staging dirs,
versions never made CURRENT, a CURRENT temp file) and keeps the live version plus one before it.
Document ids are stable (normalised absolute path, or ``uploads/<name>``); chunk ids are int64,
shared by SQLite and FAISS, and never reused.
"""

from __future__ import annotations

from typing import Any

__all__ = ["FaissSqliteStore", "IndexReader", "IndexWriter", "Manifest"]

_LAZY = {
    "FaissSqliteStore": "rag.index.faiss_store",
    "IndexReader": "rag.index.reader",
    "IndexWriter": "rag.index.writer",
    "Manifest": "rag.index.manifest",
}


def __getattr__(name: str) -> Any:
    """Import on first use: ``rag.index.filters`` and ``rag.index.manifest`` stay free of FAISS,
    so the protocols and a store of another kind can use them without loading it."""
    if name not in _LAZY:
        raise AttributeError(f"module 'rag.index' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_LAZY[name]), name)
