"""The single writer: one SQLite transaction and one new segment per commit, then one rename.

A commit of version N (see rag.index.layout for the files):

1. the vectors it added become ``segments/seg-N.*`` (temp files, fsynced, renamed);
2. its rows (``added_in = N``, replaced ones ``deleted_in = N``) commit in SQLite, durably;
3. ``manifest-N.json`` names the live segments and the counts;
4. CURRENT is renamed to name ``manifest-N.json`` - the only step readers can observe;
5. manifests older than ``keep_versions``, segments none of them names, and rows no kept version
   sees are removed.

A crash before step 4 leaves version N-1 live and readable (its manifest, its segments, its rows:
rows of N are invisible to it), and the next writer, under the lock, rolls back what it finds of
N. After step 4 everything is N's. Nothing before step 4 touches what N-1 reads.

Compaction (``compact()``, ``rag compact``, and automatically when small segments pile up) is a
commit like any other: it writes one merged segment without the tombstoned vectors and a manifest
that names it instead of the segments it replaces.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from types import TracebackType

import faiss
import numpy as np

from rag.errors import IndexLockedError, IndexNotFoundError
from rag.fsutil import FileLock
from rag.index import ann, keyword, layout, segments
from rag.index.manifest import FORMAT_VERSION, Manifest, SegmentInfo, utc_now
from rag.index.sqlite_store import (
    LATEST,
    connect,
    counts,
    erase_chunks,
    insert_chunks,
    live_chunk_ids_of,
    next_chunk_id,
    purge,
    roll_back_after,
    set_next_chunk_id,
    tombstoned_ids,
)
from rag.protocols import DocumentState
from rag.types import Chunk, Document

__all__ = ["DocumentState", "IndexWriter"]
# Crash tests only: the name of a point in a commit at which the process SIGKILLs itself, so a
# test can check that a crash at exactly that moment leaves a loadable, consistent index.
CRASH_ENV = "RAG_TEST_CRASH_AT"
CRASH_POINTS = (
    "mid_write",  # after the first document was written (an uncommitted SQLite transaction)
    "mid_segment_write",  # the new segment written under temporary names, not yet renamed
    "after_segment",  # the segment's files in place, the SQLite transaction not committed
    "after_db_commit",  # rows committed, no manifest names their version
    "before_manifest",  # the new manifest written to a temp file, not yet renamed
    "after_manifest",  # manifest-N in place, CURRENT still names the old one
    "before_current",  # new CURRENT written to a temp file, not yet renamed over CURRENT
    "after_current",  # committed; old manifests and segments not yet pruned
    "mid_prune",  # one old file removed, others not
)
BEFORE_SWAP = CRASH_POINTS[: CRASH_POINTS.index("before_current") + 1]


class IndexWriter:
    """The FAISS + SQLite store's writer (a ``StoreWriter``); open it with
    ``FaissSqliteStore.writer()``. Use as a context manager; nothing is visible to readers
    until ``commit()``, which may be called once.

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
        ann_params: ann.AnnParams | None = None,
        merge_segments: int = 10,
    ) -> None:
        if keep_versions < 1:
            raise ValueError(f"keep_versions={keep_versions}: at least the live version must be kept (>= 1)")
        self.root = Path(root)
        self._keep_versions = keep_versions  # index.keep_versions
        self._params = ann_params or ann.AnnParams()  # index.ann
        self._merge_segments = merge_segments  # index.merge_segments
        self._identity = (embedding_model, dimension, chunk_tokens, overlap_tokens)
        self._lock_timeout_s = lock_timeout_s
        self._lock: FileLock | None = None
        self._conn: sqlite3.Connection | None = None
        self._base: Manifest | None = None  # the live manifest (or a new one), updated per commit
        self._parts: list[segments.Segment] | None = None  # the live segments, opened on demand
        self._new = _NewVectors(dimension)
        self.version = 0  # the version this writer's commit will make
        self.changed = False

    # -- lifecycle -------------------------------------------------------------------------
    def __enter__(self) -> IndexWriter:
        self.root.mkdir(parents=True, exist_ok=True)
        self._acquire_lock()
        try:
            self._open()
        except BaseException:
            self._release()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._release()

    @classmethod
    def for_existing(cls, root: Path, **options: object) -> IndexWriter:
        """A writer with the index's own identity, for changes that embed nothing (deletes,
        compaction); raises IndexNotFoundError when there is no index."""
        legacy = layout.legacy_current_dir(Path(root))
        manifest = Manifest.read(legacy / layout.LEGACY_MANIFEST) if legacy else _live_manifest(Path(root))
        if manifest is None:
            raise IndexNotFoundError(f"no index at {root}; build one with `rag ingest PATH --index {root}`")
        return cls(
            root,
            embedding_model=manifest.embedding_model,
            dimension=manifest.dimension,
            chunk_tokens=manifest.chunk_tokens,
            overlap_tokens=manifest.overlap_tokens,
            **options,  # type: ignore[arg-type]
        )

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
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            self._conn.close()
            self._conn = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def _open(self) -> None:
        legacy = layout.legacy_current_dir(self.root)
        live = None if legacy is not None else _live_manifest(self.root)
        if legacy is not None:  # a killed conversion's store is garbage: start it again
            _remove_store(self.root)
        self._conn = connect(self.root / layout.STORE, readonly=False)
        self._clean_leftovers(live.version if live else 0)
        if legacy is not None:  # ATTACH is not allowed inside the transaction
            self._db.execute("ATTACH DATABASE ? AS old", (str(legacy / layout.LEGACY_STORE),))
        self._begin(live)
        if legacy is not None:
            self._convert(legacy)

    def _begin(self, live: Manifest | None) -> None:
        model, dim, chunk_tokens, overlap = self._identity
        self._db.execute("BEGIN IMMEDIATE")
        if live is None:
            now = utc_now()
            self._base = Manifest(
                embedding_model=model,
                dimension=dim,
                chunk_tokens=chunk_tokens,
                overlap_tokens=overlap,
                created_at=now,
                updated_at=now,
                keyword_analyzer=keyword.ANALYZER,
            )
        else:
            live.check_compatible(model, dim)
            self._base = live
            if live.keyword_analyzer != keyword.ANALYZER:
                # Terms of another analysis are not comparable with today's query terms.
                keyword.rebuild(self._db)
                self.changed = True
        self.version = self._base.version + 1
        self._parts = None
        self._new = _NewVectors(dim)

    def _clean_leftovers(self, live: int) -> None:
        """What a writer killed mid-commit leaves behind is garbage, removed under the lock: rows
        of a version never made CURRENT, temp files, manifests and segments no kept version
        names, and old ones it did not get to prune."""
        self._db.execute("BEGIN IMMEDIATE")
        roll_back_after(self._db, live)
        self._db.execute("COMMIT")
        for name in (layout.CURRENT, "manifest-*.json"):  # a glob: any version's temp manifest
            for path in layout.temp_files(self.root / name):
                path.unlink(missing_ok=True)
        for path in layout.manifest_paths(self.root):
            if (layout.manifest_number(path) or 0) > live:
                path.unlink(missing_ok=True)
        self._prune(live)

    # -- reads used for incremental ingestion ------------------------------------------------
    def document_state(self, doc_id: str) -> DocumentState | None:
        """What is indexed for ``doc_id``, or None when it is not indexed."""
        row = self._db.execute(
            f"SELECT hash, metadata, file_hash, file_stat FROM documents WHERE id = ? AND {LATEST}",
            (doc_id,),
        ).fetchone()
        return DocumentState(row[0], json.loads(row[1]), row[2], row[3]) if row else None

    def set_file_hash(self, doc_id: str, file_hash: str | None, file_stat: str | None = None) -> None:
        """Record the file fingerprint of an unchanged document (its bytes changed, its text did
        not, or the index predates fingerprints), so the next ingest skips parsing it."""
        if file_hash is None:
            return
        cur = self._db.execute(
            f"UPDATE documents SET file_hash = ?, file_stat = ? WHERE id = ? AND {LATEST} "
            "AND (file_hash IS NOT ? OR file_stat IS NOT ?)",
            (file_hash, file_stat, doc_id, file_hash, file_stat),
        )
        self.changed = self.changed or cur.rowcount > 0

    def document_ids(self) -> set[str]:
        return {r[0] for r in self._db.execute(f"SELECT id FROM documents WHERE {LATEST}")}

    def vectors_for_hashes(self, hashes: set[str]) -> dict[str, np.ndarray]:
        """Vectors already in the index for these chunk texts: identical text is embedded once.
        Any stored row will do, a deleted one too: its vector is still in its segment."""
        out: dict[str, np.ndarray] = {}
        stored: dict[int, str] = {}
        for digest in hashes:
            row = self._db.execute("SELECT id FROM chunks WHERE hash = ? LIMIT 1", (digest,)).fetchone()
            if row is None:
                continue
            vector = self._new.get(int(row[0]))
            if vector is not None:
                out[digest] = vector
            else:
                stored[int(row[0])] = digest
        if stored:
            ids = list(stored)
            for cid, vector in zip(ids, segments.vectors(self._live_parts(), ids, self._dim), strict=True):
                out[stored[cid]] = vector
        return out

    # -- writes ------------------------------------------------------------------------------
    def upsert(self, doc: Document, chunks: list[Chunk], vectors: np.ndarray) -> list[Chunk]:
        """Replace a document's chunks (if any) with these; returns the chunks with their ids."""
        if len(chunks) != len(vectors):
            raise ValueError(f"{len(chunks)} chunks but {len(vectors)} vectors for {doc.source}")
        self.delete(doc.id)
        first = next_chunk_id(self._db)
        stored = [_with_id(c, first + i) for i, c in enumerate(chunks)]
        self._db.execute(
            "INSERT INTO documents (id, source, hash, metadata, indexed_at, chunks, file_hash, file_stat, "
            "added_in) VALUES (?,?,?,?,?,?,?,?,?)",
            (
                doc.id,
                doc.source,
                doc.hash,
                json.dumps(doc.metadata),
                utc_now(),
                len(chunks),
                doc.file_hash,
                doc.file_stat,
                self.version,
            ),
        )
        insert_chunks(self._db, stored, self.version)
        set_next_chunk_id(self._db, first + len(chunks))
        if stored:
            self._new.add(np.arange(first, first + len(stored), dtype=np.int64), vectors)
        self.changed = True
        _crash_point("mid_write")
        return stored

    def delete(self, doc_id: str) -> bool:
        """Remove a document: its committed rows are marked deleted by this version (older
        versions still see them) and their vectors tombstoned; rows this writer added are erased."""
        row = self._db.execute(
            f"SELECT row, added_in FROM documents WHERE id = ? AND {LATEST}", (doc_id,)
        ).fetchone()
        if row is None:
            return False
        ids = live_chunk_ids_of(self._db, doc_id)
        if row[1] == self.version:
            erase_chunks(self._db, ids)
            self._db.execute("DELETE FROM documents WHERE row = ?", (row[0],))
            self._new.drop(ids)
        else:
            self._db.execute("UPDATE documents SET deleted_in = ? WHERE row = ?", (self.version, row[0]))
            self._db.execute(
                f"UPDATE chunks SET deleted_in = ? WHERE document_id = ? AND {LATEST}", (self.version, doc_id)
            )
            self._db.executemany(
                "INSERT INTO tombstones (chunk_id, deleted_in) VALUES (?, ?)",
                [(i, self.version) for i in ids],
            )
        self.changed = True
        return True

    def commit(self) -> Manifest:
        """Publish this writer's changes as the next version (module docstring), then merge small
        segments if more than ``merge_segments`` of them have piled up (a second commit)."""
        ids, vectors = self._new.take()
        added = self._write_segment(ids, vectors)
        manifest = self._publish(self._base_segments() + added)
        small = [s for s in manifest.segments if ann.kind_for(s.vectors, self._params) == "flat"]
        if len(small) > self._merge_segments:
            self._begin(manifest)
            manifest = self.compact([s.number for s in small])
        return manifest

    def compact(self, numbers: Sequence[int] | None = None) -> Manifest:
        """Merge these segments (default: every one) into one, without tombstoned vectors, and
        publish that as the next version; a writer that changed nothing else calls this instead
        of ``commit()``. Chunk ids and search results do not change; disk and search time do."""
        if len(self._new):
            raise RuntimeError("compact() with uncommitted changes: commit() them first")
        if not self._db.in_transaction:  # after a commit(): compaction is the next version
            self._begin(self._base)
        live = self._base_segments()
        chosen = [s for s in live if numbers is None or s.number in set(numbers)]
        dead = np.asarray(tombstoned_ids(self._db, self.version), dtype=np.int64)
        if not self.changed and _nothing_to_merge(chosen, dead, self._params):
            assert self._base is not None
            return self._base
        parts = [p for p in self._live_parts() if p.info in chosen]
        keep = [np.asarray(p.ids)[~np.isin(p.ids, dead)] for p in parts]
        ids = np.concatenate(keep) if keep else np.zeros(0, dtype=np.int64)
        merged = self._write_segment(ids, segments.vectors(parts, ids, self._dim) if len(ids) else None)
        dropped = (
            np.concatenate([np.asarray(p.ids)[np.isin(p.ids, dead)] for p in parts]) if parts else dead[:0]
        )
        self._db.executemany(
            "UPDATE tombstones SET dropped_in = ? WHERE chunk_id = ?",
            [(self.version, int(i)) for i in dropped],
        )
        remaining = [s for s in live if s not in chosen]
        return self._publish(sorted(remaining + merged, key=lambda s: s.number))

    # -- helpers -----------------------------------------------------------------------------
    def _write_segment(self, ids: np.ndarray, vectors: np.ndarray | None) -> list[SegmentInfo]:
        """Step 1 of the module docstring: this version's segment (none when it adds no vector)."""
        if not len(ids) or vectors is None:
            return []
        info = segments.write(
            self.root,
            self.version,
            ids,
            vectors,
            self._params,
            before_rename=lambda: _crash_point("mid_segment_write"),
        )
        _crash_point("after_segment")
        return [info]

    def _publish(self, live: list[SegmentInfo]) -> Manifest:
        """Steps 2-5 of the module docstring for version ``self.version``."""
        assert self._base is not None
        version = self.version
        purge(self._db, version - self._keep_versions + 1)
        docs, chunks = counts(self._db, version)
        dead = len(tombstoned_ids(self._db, version))
        self._db.execute("COMMIT")
        _crash_point("after_db_commit")
        manifest = self._base.model_copy(
            update={
                "version": version,
                "updated_at": utc_now(),
                "documents": docs,
                "chunks": chunks,
                "keyword_analyzer": keyword.ANALYZER,
                "segments": live,
                "tombstones": dead,
            }
        )
        name = layout.manifest_name(version)
        layout.write_atomic(
            self.root / name,
            json.dumps(manifest.model_dump(), indent=2) + "\n",
            before_replace=lambda: _crash_point("before_manifest"),
        )
        _crash_point("after_manifest")
        layout.write_atomic(
            self.root / layout.CURRENT, name + "\n", before_replace=lambda: _crash_point("before_current")
        )
        _crash_point("after_current")
        self._base = manifest
        self._prune(version)
        return manifest

    def _convert(self, legacy: Path) -> None:
        """Copy a format-1 index (a full copy per version) into this writer's transaction; its
        commit makes it format 2. Until then CURRENT names the old folder, which stays intact."""
        old = Manifest.read(legacy / layout.LEGACY_MANIFEST)
        model, dim, _, _ = self._identity
        old.check_compatible(model, dim)
        self._base = old.model_copy(update={"format_version": FORMAT_VERSION})
        self.version = old.version + 1
        columns = {r[1] for r in self._db.execute("PRAGMA old.table_info(documents)")}
        stat = "file_stat" if "file_stat" in columns else "NULL"
        file_hash = "file_hash" if "file_hash" in columns else "NULL"
        self._db.execute(
            "INSERT INTO documents (id, source, hash, metadata, indexed_at, chunks, file_hash, file_stat, "
            f"added_in) SELECT id, source, hash, metadata, indexed_at, chunks, {file_hash}, {stat}, ? "
            "FROM old.documents",
            (self.version,),
        )
        self._db.execute(
            'INSERT INTO chunks (id, document_id, source, page, start, "end", text, hash, added_in) '
            'SELECT id, document_id, source, page, start, "end", text, hash, ? FROM old.chunks',
            (self.version,),
        )
        self._db.execute("INSERT OR REPLACE INTO meta SELECT key, value FROM old.meta")
        keyword.rebuild(self._db)
        index = faiss.read_index(str(legacy / layout.LEGACY_VECTORS))
        ids = faiss.vector_to_array(index.id_map).astype(np.int64)
        if len(ids):
            self._new.add(ids, index.index.reconstruct_n(0, len(ids)))
        self.changed = True
        _crash_point("mid_write")

    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("IndexWriter used outside its `with` block")
        return self._conn

    @property
    def _dim(self) -> int:
        return self._identity[1]

    def _base_segments(self) -> list[SegmentInfo]:
        return list(self._base.segments) if self._base is not None else []

    def _live_parts(self) -> list[segments.Segment]:
        if self._parts is None:
            self._parts = [segments.open_segment(self.root, s, mmap=True) for s in self._base_segments()]
        return self._parts

    def _prune(self, live: int) -> None:
        """Keep the newest ``keep_versions`` manifests up to ``live`` and the segments they name;
        remove the rest, temp files in segments/, and a converted index's old folders."""
        kept = [p for p in layout.manifest_paths(self.root) if (layout.manifest_number(p) or 0) <= live]
        old, kept = kept[: -self._keep_versions], kept[-self._keep_versions :]
        named = {s.number for p in kept for s in Manifest.read(p).segments}
        doomed = old + [p for p in segments.files(self.root) if segments.file_number(p) not in named]
        if live and layout.legacy_current_dir(self.root) is None:
            doomed += layout.legacy_dirs(self.root)
        for n, path in enumerate(doomed):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            if n == 0:
                _crash_point("mid_prune")


class _NewVectors:
    """The vectors this writer added, by chunk id, until its commit writes them as a segment."""

    def __init__(self, dim: int) -> None:
        self._dim = dim
        self._blocks: list[tuple[np.ndarray, np.ndarray]] = []
        self._at: dict[int, tuple[int, int]] = {}  # chunk id -> (block, row)
        self._dropped: set[int] = set()

    def __len__(self) -> int:
        return len(self._at)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        block = len(self._blocks)
        self._blocks.append((ids, np.ascontiguousarray(vectors, dtype=np.float32)))
        self._at.update((int(cid), (block, row)) for row, cid in enumerate(ids))

    def get(self, chunk_id: int) -> np.ndarray | None:
        at = self._at.get(chunk_id)
        return None if at is None else self._blocks[at[0]][1][at[1]]

    def drop(self, ids: Sequence[int]) -> None:
        for cid in ids:
            if self._at.pop(int(cid), None) is not None:
                self._dropped.add(int(cid))

    def take(self) -> tuple[np.ndarray, np.ndarray]:
        """Every kept (id, vector), emptying the buffer."""
        if not self._blocks:
            return np.zeros(0, dtype=np.int64), np.zeros((0, self._dim), dtype=np.float32)
        ids = np.concatenate([b[0] for b in self._blocks])
        vectors = np.concatenate([b[1] for b in self._blocks])
        keep = ~np.isin(ids, np.fromiter(self._dropped, dtype=np.int64, count=len(self._dropped)))
        self.__init__(self._dim)  # type: ignore[misc]
        return ids[keep], vectors[keep]


def _nothing_to_merge(chosen: list[SegmentInfo], dead: np.ndarray, params: ann.AnnParams) -> bool:
    """One segment already of the kind its size calls for, and no tombstones: compaction would
    rewrite it unchanged."""
    if len(chosen) > 1 or len(dead):
        return False
    return all(s.kind == ann.kind_for(s.vectors, params) for s in chosen)


def _with_id(chunk: Chunk, chunk_id: int) -> Chunk:
    return replace(chunk, id=chunk_id)


def _live_manifest(root: Path) -> Manifest | None:
    try:
        return Manifest.read(layout.current_manifest_path(root))
    except IndexNotFoundError:
        return None


def _remove_store(root: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        (root / (layout.STORE + suffix)).unlink(missing_ok=True)


def _crash_point(name: str) -> None:
    """SIGKILL this process if RAG_TEST_CRASH_AT names this point (crash tests only)."""
    if os.environ.get(CRASH_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
