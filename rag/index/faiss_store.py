"""The FAISS + SQLite store (registry name ``faiss``): the first ``VectorStore`` backend.

It owns the long-lived ``IndexHandle`` (the latest committed version, re-checked at most once a
second) and opens the single ``IndexWriter``; nothing outside rag/index needs to know either.
Settings ``index.*`` (keep_versions, merge_segments, mmap, ann) reach the reader and writer here.
"""

from __future__ import annotations

from pathlib import Path

from rag.config import Settings
from rag.index.ann import AnnParams
from rag.index.handle import IndexHandle
from rag.index.reader import IndexReader
from rag.index.writer import IndexWriter
from rag.protocols import Embedder


class FaissSqliteStore:
    """Versioned directories under ``index_dir``: vectors in FAISS, text and metadata in SQLite.

    Cheap to construct: nothing is read until the first ``snapshot()`` or ``writer()``.
    """

    def __init__(self, settings: Settings) -> None:
        self.root = Path(settings.index_dir)
        self._settings = settings
        self._params = AnnParams(**settings.index.ann.model_dump())
        self._handle = IndexHandle(
            self.root, reader_options={"mmap": settings.index.mmap, "params": self._params}
        )

    def snapshot(self) -> IndexReader:
        """The latest committed version; raises IndexNotFoundError while there is none."""
        return self._handle.get()

    def refresh(self) -> None:
        self._handle.refresh()

    def writer(self, embedder: Embedder | None = None, *, lock_timeout_s: float | None = None) -> IndexWriter:
        """A writer for ``embedder``'s vectors, or (no embedder) one with the live version's
        identity, for deletes; raises IndexNotFoundError then if there is no index yet."""
        timeout = self._settings.ingest.lock_timeout_s if lock_timeout_s is None else lock_timeout_s
        options = {
            "lock_timeout_s": timeout,
            "keep_versions": self._settings.index.keep_versions,
            "ann_params": self._params,
            "merge_segments": self._settings.index.merge_segments,
        }
        if embedder is None:
            return IndexWriter.for_existing(self.root, **options)
        chunking = self._settings.chunking
        return IndexWriter(
            self.root,
            embedding_model=embedder.model_id,
            dimension=embedder.dim,
            chunk_tokens=chunking.chunk_tokens,
            overlap_tokens=chunking.overlap_tokens,
            **options,  # type: ignore[arg-type]
        )
