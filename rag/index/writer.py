"""The single writer: stage a new version beside the live one, then swap it in atomically."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import time
from dataclasses import replace
from pathlib import Path
from types import TracebackType

import faiss
import numpy as np

from rag.errors import IndexLockedError, IndexNotFoundError
from rag.fsutil import FileLock
from rag.index import keyword, layout
from rag.index.manifest import Manifest, utc_now
from rag.index.sqlite_store import (
    connect,
    counts,
    delete_chunks_of,
    insert_chunks,
    migrate,
    next_chunk_id,
    set_next_chunk_id,
)
from rag.protocols import DocumentState
from rag.types import Chunk, Document

__all__ = ["DocumentState", "IndexWriter"]
STAGING_PREFIX = ".staging-"
# Crash tests only: the name of a point in commit() at which the process SIGKILLs itself, so a
# test can check that a crash at exactly that moment leaves a loadable, consistent index.
CRASH_ENV = "RAG_TEST_CRASH_AT"
CRASH_POINTS = (
    "mid_write",  # after the first document was written to the staging copy
    "mid_faiss_write",  # half of vectors.faiss written
    "before_rename",  # staging complete and fsynced, not yet renamed to vNNNNNN
    "after_rename",  # vNNNNNN in place, CURRENT still names the old version
    "before_current",  # new CURRENT written to a temp file, not yet renamed over CURRENT
    "after_current",  # committed; old versions not yet pruned
    "mid_prune",  # one old version removed, others not
)


class IndexWriter:
    """The FAISS + SQLite store's writer (a ``StoreWriter``); open it with
    ``FaissSqliteStore.writer()``. Use as a context manager; nothing is visible to readers
    until ``commit()``.

    The lock is an fcntl lock on ``.lock`` (``rag.fsutil.FileLock``) so a CLI ingest and the
    server's upload jobs on the same directory never write at the same time; it is released by
    the kernel if the process dies.
    """

    def __init__(
        self,
        root: Path,
        *,
        embedding_model: str,
        dimension: int,
        chunk_tokens: int,
        overlap_tokens: int,
        lock_timeout_s: float = 0.0,
        keep_versions: int = 2,
    ) -> None:
        if keep_versions < 1:
            raise ValueError(f"keep_versions={keep_versions}: at least the live version must be kept (>= 1)")
        self.root = Path(root)
        self._keep_versions = keep_versions  # index.keep_versions
        self._identity = (embedding_model, dimension, chunk_tokens, overlap_tokens)
        self._lock_timeout_s = lock_timeout_s
        self._lock: FileLock | None = None
        self._conn: sqlite3.Connection | None = None
        self._vectors: faiss.IndexIDMap2 | None = None
        self._manifest: Manifest | None = None
        self._staging: Path | None = None
        self.changed = False

    # -- lifecycle -------------------------------------------------------------------------
    def __enter__(self) -> IndexWriter:
        self.root.mkdir(parents=True, exist_ok=True)
        self._acquire_lock()
        try:
            self._clean_leftovers()
            self._stage()
        except BaseException:
            self._release()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._release()

    def _acquire_lock(self) -> None:
        lock = FileLock(self.root / layout.LOCK)
        try:
            lock.acquire(timeout_s=self._lock_timeout_s)
        except TimeoutError:
            raise IndexLockedError(
                f"another process is writing to {self.root}; wait for it to finish (one writer at a "
                "time), or allow a longer wait with ingest.lock_timeout_s"
            ) from None
        self._lock = lock

    def _release(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._staging is not None and self._staging.exists():
            shutil.rmtree(self._staging, ignore_errors=True)
        self._staging = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    @classmethod
    def for_existing(cls, root: Path, *, lock_timeout_s: float = 0.0, keep_versions: int = 2) -> IndexWriter:
        """A writer with the index's own identity, for changes that embed nothing (deletes)."""
        manifest = Manifest.read(layout.current_version_dir(Path(root)) / layout.MANIFEST)
        return cls(
            root,
            embedding_model=manifest.embedding_model,
            dimension=manifest.dimension,
            chunk_tokens=manifest.chunk_tokens,
            overlap_tokens=manifest.overlap_tokens,
            lock_timeout_s=lock_timeout_s,
            keep_versions=keep_versions,
        )

    def _clean_leftovers(self) -> None:
        """What a writer killed mid-commit leaves behind is garbage, removed under the lock:
        staging dirs, a half-written CURRENT temp file, versions never made CURRENT, and old
        versions it did not get to prune."""
        for path in self.root.glob(STAGING_PREFIX + "*"):
            shutil.rmtree(path, ignore_errors=True)
        for path in layout.temp_files(self.root / layout.CURRENT):
            path.unlink(missing_ok=True)
        try:
            live = layout.version_number(layout.current_version_dir(self.root))
        except IndexNotFoundError:
            live = None
        for path in layout.version_dirs(self.root):
            number = layout.version_number(path)
            if live is None or (number is not None and number > live):
                shutil.rmtree(path, ignore_errors=True)
        if live is not None:
            self._prune(keep=live)  # a writer killed after its commit never pruned

    def _stage(self) -> None:
        model, dim, chunk_tokens, overlap = self._identity
        self._staging = self.root / f"{STAGING_PREFIX}{time.time_ns()}"
        self._staging.mkdir()
        store = self._staging / layout.STORE
        try:
            current = layout.current_version_dir(self.root)
        except IndexNotFoundError:
            now = utc_now()
            self._manifest = Manifest(
                embedding_model=model,
                dimension=dim,
                chunk_tokens=chunk_tokens,
                overlap_tokens=overlap,
                created_at=now,
                updated_at=now,
            )
            self._vectors = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
            self._conn = connect(store, readonly=False)
            return
        self._manifest = Manifest.read(current / layout.MANIFEST)
        self._manifest.check_compatible(model, dim)
        self._vectors = faiss.read_index(str(current / layout.VECTORS))
        src = connect(current / layout.STORE, readonly=True)
        try:
            self._conn = connect(store, readonly=False)
            src.backup(self._conn)  # replaces the staged schema with the live one's
            # An index from before keyword search (or with terms of another analysis) gets its
            # keyword terms built here, and is committed even if no document changes.
            self.changed = migrate(self._conn, analyzer=self._manifest.keyword_analyzer)
        finally:
            src.close()

    # -- reads used for incremental ingestion ------------------------------------------------
    def document_state(self, doc_id: str) -> DocumentState | None:
        """What is indexed for ``doc_id``, or None when it is not indexed."""
        row = self._db.execute(
            "SELECT hash, metadata, file_hash, file_stat FROM documents WHERE id = ?", (doc_id,)
        ).fetchone()
        return DocumentState(row[0], json.loads(row[1]), row[2], row[3]) if row else None

    def set_file_hash(self, doc_id: str, file_hash: str | None, file_stat: str | None = None) -> None:
        """Record the file fingerprint of an unchanged document (its bytes changed, its text did
        not, or the index predates fingerprints), so the next ingest skips parsing it."""
        if file_hash is None:
            return
        cur = self._db.execute(
            "UPDATE documents SET file_hash = ?, file_stat = ? WHERE id = ? "
            "AND (file_hash IS NOT ? OR file_stat IS NOT ?)",
            (file_hash, file_stat, doc_id, file_hash, file_stat),
        )
        self.changed = self.changed or cur.rowcount > 0

    def document_ids(self) -> set[str]:
        return {r[0] for r in self._db.execute("SELECT id FROM documents")}

    def vectors_for_hashes(self, hashes: set[str]) -> dict[str, np.ndarray]:
        """Vectors already in the index for these chunk texts: identical text is embedded once."""
        out: dict[str, np.ndarray] = {}
        for digest in hashes:
            row = self._db.execute("SELECT id FROM chunks WHERE hash = ? LIMIT 1", (digest,)).fetchone()
            if row is not None:
                out[digest] = self._index.reconstruct(int(row[0]))
        return out

    # -- writes ------------------------------------------------------------------------------
    def upsert(self, doc: Document, chunks: list[Chunk], vectors: np.ndarray) -> list[Chunk]:
        """Replace a document's chunks (if any) with these; returns the chunks with their ids."""
        if len(chunks) != len(vectors):
            raise ValueError(f"{len(chunks)} chunks but {len(vectors)} vectors for {doc.source}")
        self.delete(doc.id)
        first = next_chunk_id(self._db)
        stored = [replace(c, id=first + i) for i, c in enumerate(chunks)]
        self._db.execute(
            "INSERT INTO documents (id, source, hash, metadata, indexed_at, chunks, file_hash, file_stat) "
            "VALUES (?,?,?,?,?,?,?,?)",
            (
                doc.id,
                doc.source,
                doc.hash,
                json.dumps(doc.metadata),
                utc_now(),
                len(chunks),
                doc.file_hash,
                doc.file_stat,
            ),
        )
        insert_chunks(self._db, stored)
        set_next_chunk_id(self._db, first + len(chunks))
        if stored:
            ids = np.arange(first, first + len(stored), dtype=np.int64)
            self._index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), ids)
        self.changed = True
        _crash_point("mid_write")
        return stored

    def delete(self, doc_id: str) -> bool:
        ids = delete_chunks_of(self._db, doc_id)
        if ids:
            self._index.remove_ids(np.asarray(ids, dtype=np.int64))
        removed = self._db.execute("DELETE FROM documents WHERE id = ?", (doc_id,)).rowcount > 0
        self.changed = self.changed or removed
        return removed

    def commit(self) -> Manifest:
        """Write the staged version and make it CURRENT; the only step readers can observe.

        Until CURRENT is replaced (one rename) readers and a crash see the old version; after
        it, the new one. Everything before is invisible staging, everything after is cleanup.
        """
        assert self._staging is not None and self._manifest is not None
        self._db.commit()
        docs, chunks = counts(self._db)
        self._db.close()
        self._conn = None
        _write_vectors(self._index, self._staging / layout.VECTORS)
        version = self._next_version()
        manifest = self._manifest.model_copy(
            update={
                "version": version,
                "updated_at": utc_now(),
                "documents": docs,
                "chunks": chunks,
                "keyword_analyzer": keyword.ANALYZER,
            }
        )
        manifest.write(self._staging / layout.MANIFEST)
        _fsync_tree(self._staging)
        _crash_point("before_rename")
        final = self.root / layout.version_name(version)
        self._staging.rename(final)
        self._staging = None
        layout.fsync_dir(self.root)
        _crash_point("after_rename")
        layout.write_atomic(
            self.root / layout.CURRENT,
            final.name + "\n",
            before_replace=lambda: _crash_point("before_current"),
        )
        _crash_point("after_current")
        self._manifest = manifest
        self._prune(keep=version)
        return manifest

    # -- helpers -----------------------------------------------------------------------------
    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("IndexWriter used outside its `with` block or after commit()")
        return self._conn

    @property
    def _index(self) -> faiss.IndexIDMap2:
        assert self._vectors is not None
        return self._vectors

    def _next_version(self) -> int:
        existing = [layout.version_number(p) or 0 for p in layout.version_dirs(self.root)]
        assert self._manifest is not None
        return max([self._manifest.version, *existing]) + 1

    def _prune(self, keep: int) -> None:
        """Keep the newest ``keep_versions`` up to ``keep`` (by default the new version and its
        predecessor, from which readers may still be answering)."""
        old = [p for p in layout.version_dirs(self.root) if (layout.version_number(p) or 0) <= keep]
        for n, path in enumerate(old[: -self._keep_versions]):
            shutil.rmtree(path, ignore_errors=True)
            if n == 0:
                _crash_point("mid_prune")


def _crash_point(name: str) -> None:
    """SIGKILL this process if RAG_TEST_CRASH_AT names this point (crash tests only)."""
    if os.environ.get(CRASH_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


def _write_vectors(index: faiss.Index, path: Path) -> None:
    if os.environ.get(CRASH_ENV) != "mid_faiss_write":
        faiss.write_index(index, str(path))
        return
    # Crash tests: stream the same bytes through Python and die half-way through the file.
    # (Not the default path: the Python callback writes ~4x slower than faiss's own fwrite.)
    half = faiss.serialize_index(index).size // 2
    with open(path, "wb") as fh:

        def write(data: bytes) -> int:
            if fh.tell() + len(data) >= half:
                fh.write(data[: half - fh.tell()])
                fh.flush()
                _crash_point("mid_faiss_write")
            fh.write(data)
            return len(data)

        faiss.write_index(index, faiss.PyCallbackIOWriter(write))


def _fsync_tree(path: Path) -> None:
    for child in path.iterdir():
        with open(child, "rb") as fh:
            os.fsync(fh.fileno())
    layout.fsync_dir(path)
