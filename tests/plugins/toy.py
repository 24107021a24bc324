"""Toy backends that the service loads through config alone (no edit to rag/, api/ or ingest/):

    index.store: "tests.plugins.toy:ToyStore"           an in-memory numpy VectorStore
    retrieval.retriever: "tests.plugins.toy:ToyRetriever" dense hits, re-scored by rank

They are real implementations of the protocols, not mocks: the store keeps vectors in a numpy
matrix and answers exact top-k inner-product search with filters; the retriever changes ``score``
(the rank score a fusing or reranking stage would produce) and keeps ``dense_score``, so a test can
check that the refusal gate reads the cosine, not the rank score.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import Any

import numpy as np

from rag.config import Settings
from rag.errors import IndexNotFoundError
from rag.index.filters import SearchFilter
from rag.index.manifest import Manifest, utc_now
from rag.protocols import DocumentState, Embedder, Retrieved, Support, VectorStore
from rag.types import Chunk, Document, ScoredChunk

# Every ToyStore on one index_dir shares its data, as every FAISS store on one directory does.
_STATES: dict[str, _State] = {}
_STATES_LOCK = threading.Lock()


@dataclass(frozen=True)
class _Doc:
    info: dict[str, Any]  # id, source, hash, metadata, indexed_at, chunks, file_hash
    chunks: tuple[Chunk, ...]
    vectors: np.ndarray  # (len(chunks), dim)


@dataclass
class _State:
    snapshot: ToySnapshot | None = None
    next_id: int = 1
    lock: threading.Lock = field(default_factory=threading.Lock)  # the single-writer lock


class ToySnapshot:
    """One immutable version: documents with their chunks and vectors."""

    def __init__(self, manifest: Manifest, docs: dict[str, _Doc]) -> None:
        self._manifest = manifest
        self._docs = docs
        chunks = [(c, d) for d in docs.values() for c in d.chunks]
        self._chunks = [c for c, _ in chunks]
        self._meta = [d.info["metadata"] for _, d in chunks]
        self._owner = [d.info for _, d in chunks]
        rows = [d.vectors for d in docs.values() if len(d.chunks)]
        self._matrix = np.vstack(rows) if rows else np.zeros((0, manifest.dimension), np.float32)

    @property
    def version(self) -> int:
        return self._manifest.version

    @property
    def manifest(self) -> Manifest:
        return self._manifest

    def search(self, vector: np.ndarray, k: int, filters: SearchFilter | None = None) -> list[ScoredChunk]:
        scores = self._matrix @ np.asarray(vector, dtype=np.float32).reshape(-1)
        allowed = [
            i
            for i, info in enumerate(self._owner)
            if filters is None or filters.matches(info["id"], info["source"], info["metadata"])
        ]
        best = sorted(allowed, key=lambda i: -float(scores[i]))[:k]
        return [
            ScoredChunk(self._chunks[i], float(scores[i]), self._meta[i], dense_score=float(scores[i]))
            for i in best
        ]

    def documents(self, limit: int | None = None, offset: int = 0) -> list[dict[str, Any]]:
        ordered = [_public(self._docs[i].info) for i in sorted(self._docs)]
        return ordered[offset:] if limit is None else ordered[offset : offset + limit]

    def document(self, doc_id: str) -> dict[str, Any] | None:
        doc = self._docs.get(doc_id)
        return _public(doc.info) if doc else None

    def file_hashes(self, prefix: str = "") -> dict[str, str | None]:
        return {i: d.info["file_hash"] for i, d in self._docs.items() if i.startswith(prefix)}

    def check_readable(self) -> None:
        """Memory cannot be damaged on disk: nothing to check."""


class ToyStore:
    """An in-memory VectorStore: versions are snapshots, commits swap them under a lock."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        with _STATES_LOCK:
            self._state = _STATES.setdefault(str(settings.index_dir), _State())

    def snapshot(self) -> ToySnapshot:
        snapshot = self._state.snapshot
        if snapshot is None:
            raise IndexNotFoundError(f"the toy store for {self.settings.index_dir} is empty; ingest first")
        return snapshot

    def refresh(self) -> None:
        """Commits are visible at once in memory."""

    def writer(self, embedder: Embedder | None = None, *, lock_timeout_s: float | None = None) -> ToyWriter:
        return ToyWriter(self, embedder)


class ToyWriter:
    """Stages a copy of the live documents; ``commit()`` publishes it as the next version."""

    def __init__(self, store: ToyStore, embedder: Embedder | None) -> None:
        self._store = store
        self._embedder = embedder
        self._docs: dict[str, _Doc] = {}
        self._manifest: Manifest | None = None
        self.changed = False

    def __enter__(self) -> ToyWriter:
        state = self._store._state
        if not state.lock.acquire(timeout=5):
            raise TimeoutError("another toy writer is open")
        live = state.snapshot
        if live is not None:
            self._docs = dict(live._docs)
            self._manifest = live.manifest
            if self._embedder is not None:
                live.manifest.check_compatible(self._embedder.model_id, self._embedder.dim)
        elif self._embedder is not None:
            chunking = self._store.settings.chunking
            now = utc_now()
            self._manifest = Manifest(
                embedding_model=self._embedder.model_id,
                dimension=self._embedder.dim,
                chunk_tokens=chunking.chunk_tokens,
                overlap_tokens=chunking.overlap_tokens,
                created_at=now,
                updated_at=now,
            )
        else:
            state.lock.release()
            raise IndexNotFoundError("the toy store is empty: nothing to change")
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._store._state.lock.release()

    def document_state(self, doc_id: str) -> DocumentState | None:
        doc = self._docs.get(doc_id)
        if doc is None:
            return None
        return DocumentState(doc.info["hash"], doc.info["metadata"], doc.info["file_hash"])

    def document_ids(self) -> set[str]:
        return set(self._docs)

    def set_file_hash(self, doc_id: str, file_hash: str | None, file_stat: str | None = None) -> None:
        doc = self._docs.get(doc_id)
        if doc is not None and file_hash is not None and doc.info["file_hash"] != file_hash:
            self._docs[doc_id] = replace(doc, info={**doc.info, "file_hash": file_hash})
            self.changed = True

    def vectors_for_hashes(self, hashes: set[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        for doc in self._docs.values():
            for chunk, vector in zip(doc.chunks, doc.vectors, strict=True):
                if chunk.hash in hashes:
                    found.setdefault(chunk.hash, vector)
        return found

    def upsert(self, doc: Document, chunks: list[Chunk], vectors: np.ndarray) -> list[Chunk]:
        state = self._store._state
        stored = [replace(c, id=state.next_id + i) for i, c in enumerate(chunks)]
        state.next_id += len(chunks)
        info = {
            "id": doc.id,
            "source": doc.source,
            "hash": doc.hash,
            "metadata": dict(doc.metadata),
            "indexed_at": utc_now(),
            "chunks": len(chunks),
            "file_hash": doc.file_hash,
        }
        self._docs[doc.id] = _Doc(info, tuple(stored), np.asarray(vectors, dtype=np.float32))
        self.changed = True
        return stored

    def delete(self, doc_id: str) -> bool:
        removed = self._docs.pop(doc_id, None) is not None
        self.changed = self.changed or removed
        return removed

    def commit(self) -> Manifest:
        assert self._manifest is not None
        manifest = self._manifest.model_copy(
            update={
                "version": self._manifest.version + 1,
                "updated_at": utc_now(),
                "documents": len(self._docs),
                "chunks": sum(len(d.chunks) for d in self._docs.values()),
            }
        )
        self._store._state.snapshot = ToySnapshot(manifest, dict(self._docs))
        self._manifest = manifest
        return manifest


class ToyRetriever:
    """Dense hits re-scored by rank (1, 1/2, 1/3, ...), as a fusion stage would: ``score`` is no
    cosine any more, ``dense_score`` still is."""

    def __init__(self, settings: Settings, embedder: Embedder, store: VectorStore) -> None:
        self.embedder = embedder
        self.store = store

    def retrieve(
        self, query: str, top_k: int, filters: SearchFilter | None = None, mode: str | None = None
    ) -> Retrieved:
        snapshot = self.store.snapshot()
        hits = snapshot.search(self.embedder.embed_query(query), top_k, filters)
        ranked = [replace(h, score=1.0 / rank) for rank, h in enumerate(hits, 1)]
        return Retrieved(ranked, snapshot.version)


def _public(info: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in info.items() if k != "file_hash"}


class NothingSupportedJudge:
    """A SupportJudge (``grounding.judge: tests.plugins.toy:NothingSupportedJudge``) that finds
    no statement supported, so an answer path that uses the configured judge must refuse."""

    def __init__(self, settings: object, embedder: Embedder | None, generator: object | None) -> None:
        self.calls = 0

    def judge(self, statement: str, contexts: Sequence[str]) -> Support:
        self.calls += 1
        return Support(score=0.0, supported=False, reason="the toy judge supports nothing")


class NotAStore:
    """Built fine from settings but implements nothing: the registry must refuse it by name."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
