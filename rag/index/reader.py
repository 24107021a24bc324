"""Read-only view of one committed index version: the unit the server answers from.

A version directory never changes once committed, so one reader gives every query it serves a
consistent snapshot: the vectors and the SQLite rows always come from the same version.
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

import faiss
import numpy as np

from rag.errors import IndexCorruptError, IndexNotFoundError, KeywordIndexMissingError
from rag.index import keyword, layout
from rag.index.filters import SearchFilter
from rag.index.manifest import Manifest
from rag.index.sqlite_store import chunk_ids_of_documents, connect, fetch_chunks
from rag.types import ScoredChunk

OPEN_ATTEMPTS = 5  # a version can be pruned between reading CURRENT and opening it; re-read
FILTER_CACHE = 64  # filters whose chunk ids are kept per reader (a version never changes)


class IndexReader:
    def __init__(self, root: Path, version_dir: Path) -> None:
        self.root = root
        self.version_dir = version_dir
        self.manifest = _read_manifest(version_dir / layout.MANIFEST)
        self._vectors = _read_vectors(version_dir / layout.VECTORS)
        self._conn = _open_store(version_dir / layout.STORE)
        self._db_lock = threading.Lock()  # one connection shared by the server's request threads
        self._filters: OrderedDict[str, np.ndarray] = OrderedDict()
        self.check_readable()
        with self._db() as conn:
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
                raise _corrupt(self.version_dir / layout.STORE, exc) from exc

    def check_readable(self) -> None:
        """A cheap read of the store (its document count against the manifest's): run on open
        and by /healthz, so a damaged file is reported instead of failing later reads."""
        with self._db() as conn:
            (documents,) = conn.execute("SELECT count(*) FROM documents").fetchone()
        if documents != self.manifest.documents:
            raise IndexCorruptError(
                f"{self.version_dir}: the store holds {documents} documents but the manifest says "
                f"{self.manifest.documents}; {_REBUILD}"
            )

    @classmethod
    def open(cls, root: Path) -> IndexReader:
        """Open the committed version that CURRENT names."""
        root = Path(root)
        for _ in range(OPEN_ATTEMPTS):
            version_dir = layout.current_version_dir(root)
            try:
                return cls(root, version_dir)
            except FileNotFoundError:
                if layout.current_version_dir(root) == version_dir:
                    raise IndexNotFoundError(
                        f"index version {version_dir} is incomplete (a file is missing); restore the "
                        f"directory from a backup or rebuild it with `rag ingest PATH --index {root}`"
                    ) from None
        raise IndexNotFoundError(f"{root} kept changing while it was being opened; retry")

    @property
    def version(self) -> int:
        return self.manifest.version

    @property
    def size(self) -> int:
        return int(self._vectors.ntotal)

    def is_stale(self) -> bool:
        """True when a writer has committed a newer version since this one was opened."""
        try:
            return layout.current_version_dir(self.root) != self.version_dir
        except (FileNotFoundError, IndexNotFoundError):
            return False

    def search(self, query: np.ndarray, top_k: int, filters: SearchFilter | None = None) -> list[ScoredChunk]:
        """Top-k chunks by cosine similarity (inner product of normalised vectors).

        With ``filters``, only matching chunks are scored (a FAISS ID selector), so the top-k is
        taken among them rather than cut down from an unfiltered top-k.
        """
        params = None
        candidates = self.size
        if filters is not None and not filters.is_empty:
            allowed = self.allowed_ids(filters)
            candidates = len(allowed)
            selector = faiss.IDSelectorBatch(allowed)
            params = faiss.SearchParameters(sel=selector)
        k = min(top_k, candidates)
        if k <= 0:
            return []
        q = np.ascontiguousarray(np.asarray(query, dtype=np.float32).reshape(1, -1))
        scores, ids = self._vectors.search(q, k, params=params)
        hits = [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]
        with self._db() as conn:
            found = fetch_chunks(conn, [i for i, _ in hits])
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
            hits = keyword.search(conn, query, top_k, allowed)
            found = fetch_chunks(conn, [i for i, _ in hits])
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
        if not chunk_ids:
            return np.zeros((0, self.manifest.dimension), dtype=np.float32)
        return np.stack([self._vectors.reconstruct(int(i)) for i in chunk_ids])

    def _require_keyword_index(self) -> None:
        if not self.has_keyword_index:
            raise KeywordIndexMissingError(
                f"the index at {self.root} was built before keyword search and has no keyword terms "
                f"yet; run `rag ingest PATH --index {self.root}` once (it adds them), or use mode "
                "dense"
            )

    def allowed_ids(self, filters: SearchFilter) -> np.ndarray:
        """Chunk ids of the documents that match ``filters`` (int64, cached per filter)."""
        key = filters.key
        if key in self._filters:
            self._filters.move_to_end(key)
            return self._filters[key]
        docs = [d["id"] for d in self.documents() if filters.matches(d["id"], d["source"], d["metadata"])]
        with self._db() as conn:
            ids = np.asarray(chunk_ids_of_documents(conn, docs), dtype=np.int64)
        self._filters[key] = ids
        if len(self._filters) > FILTER_CACHE:
            self._filters.popitem(last=False)
        return ids

    def documents(self, limit: int | None = None, offset: int = 0) -> list[dict[str, Any]]:
        sql = "SELECT id, source, hash, metadata, indexed_at, chunks FROM documents ORDER BY id"
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
                "SELECT id, source, hash, metadata, indexed_at, chunks FROM documents WHERE id = ?",
                (doc_id,),
            ).fetchone()
        return _document(row) if row else None

    def file_hashes(self, prefix: str = "") -> dict[str, str | None]:
        """Id -> raw-bytes fingerprint (None if never recorded) of every document whose id
        starts with ``prefix``: ids only, without loading metadata or counting chunks."""
        pattern = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        with self._db() as conn:
            rows = conn.execute(
                "SELECT id, file_hash FROM documents WHERE id LIKE ? ESCAPE '\\'", (pattern,)
            ).fetchall()
        return {doc_id: file_hash for doc_id, file_hash in rows if doc_id.startswith(prefix)}

    def chunk_ids(self) -> set[int]:
        with self._db() as conn:
            return {int(r[0]) for r in conn.execute("SELECT id FROM chunks")}

    def chunk_texts(self) -> list[tuple[str, str]]:
        """(source, text) of every chunk, in id order: what `rag eval --synthesize` makes questions
        from. A list, not a generator, so the connection's lock is not held while the caller works."""
        with self._db() as conn:
            rows = conn.execute("SELECT source, text FROM chunks ORDER BY id").fetchall()
        return [(str(source), str(text)) for source, text in rows]

    def vector_ids(self) -> set[int]:
        return set(faiss.vector_to_array(self._vectors.id_map).tolist())

    def check_consistent(self) -> None:
        """Raise AssertionError unless SQLite rows, FAISS ids and the manifest agree."""
        chunk_ids, vector_ids = self.chunk_ids(), self.vector_ids()
        assert chunk_ids == vector_ids, (
            f"store and FAISS disagree: {len(chunk_ids - vector_ids)} chunk rows without a vector, "
            f"{len(vector_ids - chunk_ids)} vectors without a row"
        )
        if self.has_keyword_index:
            with self._db() as conn:
                keyword_ids = keyword.indexed_ids(conn)
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


def _read_vectors(path: Path) -> faiss.Index:
    if not path.is_file():
        raise FileNotFoundError(path)
    try:
        return faiss.read_index(str(path))
    except RuntimeError as exc:  # faiss reports an unreadable file as RuntimeError
        raise _corrupt(path, str(exc).strip().splitlines()[-1] if str(exc).strip() else exc) from exc


def _open_store(path: Path) -> sqlite3.Connection:
    if not path.is_file():
        raise FileNotFoundError(path)
    try:
        return connect(path, readonly=True)
    except sqlite3.DatabaseError as exc:
        raise _corrupt(path, exc) from exc
