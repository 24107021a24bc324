"""Read-only view of one committed index version: the unit the server answers from.

A version is its manifest (which segments to search), those immutable segment files, and the
store rows visible at its number (rag.index.sqlite_store.visible), so one reader gives every
query it serves a consistent snapshot while a writer commits the next version beside it.
Tombstoned vectors (chunks deleted since their segment was written) are skipped inside each
segment's search, never cut from a result afterwards.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from rag.errors import IndexCorruptError, IndexNotFoundError, KeywordIndexMissingError
from rag.index import ann, keyword, layout, segments
from rag.index.filters import SearchFilter
from rag.index.manifest import Manifest, SegmentInfo
from rag.index.sqlite_store import (
    DOCUMENT_COLUMNS,
    chunk_ids_of_documents,
    connect,
    counts,
    fetch_chunks,
    invisible_chunk_ids,
    tombstoned_ids,
    visible,
)
from rag.types import ScoredChunk

OPEN_ATTEMPTS = 5  # a version can be pruned between reading CURRENT and opening it; re-read
FILTER_CACHE = 64  # filters whose chunk ids are kept per reader (a version never changes)


class IndexReader:
    """One committed version: its manifest, its segments, and the store's rows it can see."""

    def __init__(
        self, root: Path, manifest_path: Path, *, mmap: bool = True, params: ann.AnnParams | None = None
    ) -> None:
        self.root = Path(root)
        self.manifest_path = manifest_path
        self.manifest = _read_manifest(manifest_path)
        self._params = params or ann.AnnParams()
        self._parts = [_open_segment(self.root, info, mmap) for info in self.manifest.segments]
        self._conn = _open_store(self.root / layout.STORE)
        self._db_lock = threading.Lock()  # one connection shared by the server's request threads
        self._filters: OrderedDict[str, np.ndarray] = OrderedDict()
        self.check_readable()
        with self._db() as conn:
            self._dead = np.asarray(sorted(tombstoned_ids(conn, self.version)), dtype=np.int64)
            self.has_keyword_index = (
                keyword.exists(conn) and self.manifest.keyword_analyzer == keyword.ANALYZER
            )

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        """The shared connection, under its lock; a damaged store becomes IndexCorruptError."""
        with self._db_lock:
            try:
                yield self._conn
            except sqlite3.DatabaseError as exc:
                raise _corrupt(self.root / layout.STORE, exc) from exc

    def check_readable(self) -> None:
        """A cheap read of the store (its document count against the manifest's): run on open
        and by /healthz, so a damaged file is reported instead of failing later reads."""
        with self._db() as conn:
            documents, _ = counts(conn, self.version)
        if documents != self.manifest.documents:
            raise IndexCorruptError(
                f"{self.root}: the store holds {documents} documents for version {self.version} but "
                f"its manifest says {self.manifest.documents}; {_REBUILD}"
            )

    @classmethod
    def open(cls, root: Path, **options: object) -> IndexReader:
        """Open the committed version that CURRENT names."""
        root = Path(root)
        for _ in range(OPEN_ATTEMPTS):
            path = layout.current_manifest_path(root)
            try:
                return cls(root, path, **options)  # type: ignore[arg-type]
            except FileNotFoundError:
                if layout.current_manifest_path(root) == path:
                    raise IndexNotFoundError(
                        f"index version {path.name} is incomplete (a file is missing); restore the "
                        f"directory from a backup or rebuild it with `rag ingest PATH --index {root}`"
                    ) from None
        raise IndexNotFoundError(f"{root} kept changing while it was being opened; retry")

    @property
    def version(self) -> int:
        return self.manifest.version

    @property
    def size(self) -> int:
        """Searchable vectors: every segment's, less the tombstoned."""
        return sum(s.vectors for s in self.manifest.segments) - len(self._dead)

    def is_stale(self) -> bool:
        """True when a writer has committed a newer version since this one was opened."""
        try:
            return layout.current_manifest_path(self.root) != self.manifest_path
        except (FileNotFoundError, IndexNotFoundError):
            return False

    def search(self, query: np.ndarray, top_k: int, filters: SearchFilter | None = None) -> list[ScoredChunk]:
        """Top-k chunks by cosine similarity (inner product of normalised vectors).

        With ``filters``, only matching chunks are scored (inside each segment's search, see
        rag.index.ann), so the top-k is taken among them rather than cut down from an
        unfiltered top-k.
        """
        allowed = None
        if filters is not None and not filters.is_empty:
            allowed = self.allowed_ids(filters)
            if len(allowed) == 0:
                return []
        if top_k <= 0 or not self._parts:
            return []
        hits = segments.search(
            self._parts,
            query,
            top_k,
            self._params,
            allowed=allowed,
            excluded=self._dead if len(self._dead) else None,
        )
        with self._db() as conn:
            found = fetch_chunks(conn, [i for i, _ in hits], self.version)
        return [
            ScoredChunk(chunk=found[i][0], score=s, metadata=found[i][1], dense_score=s)
            for i, s in hits
            if i in found
        ]

    def keyword_search(
        self, query: str, top_k: int, filters: SearchFilter | None = None
    ) -> list[ScoredChunk]:
        """Top-k chunks by BM25 (rag.index.keyword), ``score == keyword_score``; with
        ``filters``, the top-k among matching chunks, as in ``search``."""
        self._require_keyword_index()
        allowed = None
        if filters is not None and not filters.is_empty:
            allowed = self.allowed_ids(filters).tolist()
        with self._db() as conn:
            hidden = [] if allowed is not None else invisible_chunk_ids(conn, self.version)
            hits = keyword.search(conn, query, top_k, allowed, hidden)
            found = fetch_chunks(conn, [i for i, _ in hits], self.version)
        return [
            ScoredChunk(chunk=found[i][0], score=s, metadata=found[i][1], keyword_score=s)
            for i, s in hits
            if i in found
        ]

    def keyword_scores(self, query: str, chunk_ids: list[int]) -> dict[int, float]:
        """BM25 scores of these chunks (0.0 where a chunk shares no term with the query)."""
        self._require_keyword_index()
        with self._db() as conn:
            return keyword.scores(conn, query, chunk_ids)

    def dense_scores(self, query: np.ndarray, chunk_ids: list[int]) -> dict[int, float]:
        """Cosine of the query to each of these chunks (their stored vectors), so a chunk found
        only by keywords gets its true dense score for fusion and for the refusal gate."""
        vectors = self.vectors(chunk_ids)
        q = np.asarray(query, dtype=np.float32).reshape(-1)
        return {cid: float(v @ q) for cid, v in zip(chunk_ids, vectors, strict=True)}

    def vectors(self, chunk_ids: list[int]) -> np.ndarray:
        """The stored (normalised) vectors of these chunks, one row each."""
        return segments.vectors(self._parts, chunk_ids, self.manifest.dimension)

    def _require_keyword_index(self) -> None:
        if not self.has_keyword_index:
            raise KeywordIndexMissingError(
                f"the index at {self.root} was built before keyword search and has no keyword terms "
                f"yet; run `rag ingest PATH --index {self.root}` once (it adds them), or use mode "
                "dense"
            )

    def allowed_ids(self, filters: SearchFilter) -> np.ndarray:
        """Chunk ids of the documents that match ``filters`` (int64, sorted, cached per filter)."""
        key = filters.key
        if key in self._filters:
            self._filters.move_to_end(key)
            return self._filters[key]
        docs = [d["id"] for d in self.documents() if filters.matches(d["id"], d["source"], d["metadata"])]
        with self._db() as conn:
            ids = np.asarray(sorted(chunk_ids_of_documents(conn, docs, self.version)), dtype=np.int64)
        self._filters[key] = ids
        if len(self._filters) > FILTER_CACHE:
            self._filters.popitem(last=False)
        return ids

    def documents(self, limit: int | None = None, offset: int = 0) -> list[dict[str, Any]]:
        sql = f"SELECT {DOCUMENT_COLUMNS} FROM documents WHERE {visible(self.version)} ORDER BY id"
        args: tuple[int, ...] = ()
        if limit is not None:
            sql += " LIMIT ? OFFSET ?"
            args = (limit, offset)
        with self._db() as conn:
            rows = conn.execute(sql, args).fetchall()
        return [_document(row) for row in rows]

    def document(self, doc_id: str) -> dict[str, Any] | None:
        with self._db() as conn:
            row = conn.execute(
                f"SELECT {DOCUMENT_COLUMNS} FROM documents WHERE id = ? AND {visible(self.version)}",
                (doc_id,),
            ).fetchone()
        return _document(row) if row else None

    def file_hashes(self, prefix: str = "") -> dict[str, str | None]:
        """Id -> raw-bytes fingerprint (None if never recorded) of every document whose id
        starts with ``prefix``: ids only, without loading metadata or counting chunks."""
        pattern = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        with self._db() as conn:
            where = f"id LIKE ? ESCAPE '\\' AND {visible(self.version)}"
            rows = conn.execute(f"SELECT id, file_hash FROM documents WHERE {where}", (pattern,)).fetchall()
        return {doc_id: file_hash for doc_id, file_hash in rows if doc_id.startswith(prefix)}

    def chunk_ids(self) -> set[int]:
        with self._db() as conn:
            return {int(r[0]) for r in conn.execute(f"SELECT id FROM chunks WHERE {visible(self.version)}")}

    def chunk_texts(self) -> list[tuple[str, str]]:
        """(source, text) of every chunk, in id order: what `rag eval --synthesize` makes questions
        from. A list, not a generator, so the connection's lock is not held while the caller works."""
        with self._db() as conn:
            rows = conn.execute(
                f"SELECT source, text FROM chunks WHERE {visible(self.version)} ORDER BY id"
            ).fetchall()
        return [(str(source), str(text)) for source, text in rows]

    def vector_ids(self) -> set[int]:
        """Ids of the vectors search can return: every segment's, less the tombstoned."""
        return set(segments.all_ids(self._parts).tolist()) - set(self._dead.tolist())

    def check_consistent(self) -> None:
        """Raise AssertionError unless SQLite rows, segment ids, tombstones and the manifest agree."""
        chunk_ids, vector_ids = self.chunk_ids(), self.vector_ids()
        assert chunk_ids == vector_ids, (
            f"store and FAISS disagree: {len(chunk_ids - vector_ids)} chunk rows without a vector, "
            f"{len(vector_ids - chunk_ids)} vectors without a row"
        )
        stored = segments.all_ids(self._parts)
        assert len(stored) == len(set(stored.tolist())), "a chunk id is stored in two segments"
        for part in self._parts:
            assert ann.size(part.index) == len(part.ids) == part.info.vectors, (
                f"segment {part.info.number}: {ann.size(part.index)} vectors, {len(part.ids)} ids, "
                f"the manifest says {part.info.vectors}"
            )
        assert self.manifest.tombstones == len(self._dead), (self.manifest.tombstones, len(self._dead))
        if self.has_keyword_index:
            with self._db() as conn:
                keyword_ids = keyword.indexed_ids(conn) - set(invisible_chunk_ids(conn, self.version))
            assert keyword_ids == chunk_ids, (
                f"keyword terms and chunks disagree: {len(chunk_ids - keyword_ids)} chunks without "
                f"terms, {len(keyword_ids - chunk_ids)} terms without a chunk"
            )
        docs = self.documents()
        assert self.manifest.documents == len(docs), (self.manifest.documents, len(docs))
        assert self.manifest.chunks == len(chunk_ids) == sum(d["chunks"] for d in docs)

    def close(self) -> None:
        with self._db_lock:
            self._conn.close()


def _document(row: tuple[Any, ...]) -> dict[str, Any]:
    doc_id, source, digest, metadata, indexed_at, chunks = row
    return {
        "id": doc_id,
        "source": source,
        "hash": digest,
        "metadata": json.loads(metadata),
        "indexed_at": indexed_at,
        "chunks": chunks,
    }


_REBUILD = "restore the index directory from a backup or rebuild it with `rag ingest PATH --index DIR`"


def _corrupt(path: Path, reason: object) -> IndexCorruptError:
    return IndexCorruptError(f"{path} is damaged and cannot be read ({reason}); {_REBUILD}")


def _read_manifest(path: Path) -> Manifest:
    try:
        return Manifest.read(path)
    except ValueError as exc:  # bad bytes, JSON or fields (ValidationError is a ValueError too)
        raise _corrupt(path, f"not a valid manifest: {type(exc).__name__}") from exc


def _open_segment(root: Path, info: SegmentInfo, mmap: bool) -> segments.Segment:
    try:
        return segments.open_segment(root, info, mmap=mmap)
    except RuntimeError as exc:  # faiss reports an unreadable file as RuntimeError
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else exc
        raise _corrupt(root / layout.SEGMENTS / f"seg-{info.number:06d}.faiss", reason) from exc
    except ValueError as exc:  # numpy: a damaged ids file
        raise _corrupt(root / layout.SEGMENTS / f"seg-{info.number:06d}.ids.npy", exc) from exc


def _open_store(path: Path) -> sqlite3.Connection:
    if not path.is_file():
        raise FileNotFoundError(path)
    try:
        return connect(path, readonly=True)
    except sqlite3.DatabaseError as exc:
        raise _corrupt(path, exc) from exc
