"""Ingestion: files -> documents -> chunks -> vectors -> one atomic index commit.

Incremental by design: a document whose text and metadata are unchanged is skipped, a chunk
whose exact text is already in the index (or earlier in this batch) reuses its vector, and one
bad file is recorded in the summary without stopping the batch.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ingest.loaders import default_document_id, iter_files, load_document
from rag.chunking import Chunker
from rag.config import Settings
from rag.errors import LoaderError
from rag.index.writer import IndexWriter
from rag.protocols import Embedder
from rag.types import Chunk, Document

STAGES = ("parse", "embed", "write")


class ProgressSink(Protocol):
    """Receives progress per stage; the CLI renders it with rich, the API stores it on the job."""

    def start(self, stage: str, total: int) -> None: ...

    def advance(self, stage: str, n: int = 1) -> None: ...


class NullProgress:
    def start(self, stage: str, total: int) -> None:
        pass

    def advance(self, stage: str, n: int = 1) -> None:
        pass


@dataclass
class IngestSummary:
    documents: int = 0  # files seen
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    failed: int = 0
    chunks: int = 0  # chunks written for added/updated documents
    chunks_embedded: int = 0  # of those, how many needed the embedder (the rest reused a vector)
    seconds: float = 0.0
    index_version: int | None = None
    errors: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Pending:
    doc: Document
    chunks: list[Chunk]
    status: str  # "added" | "updated"


def ingest(
    paths: Sequence[Path],
    settings: Settings,
    embedder: Embedder,
    *,
    sync: bool = False,
    metadata: dict[str, dict[str, Any]] | None = None,
    progress: ProgressSink | None = None,
) -> IngestSummary:
    """Index ``paths`` (files or folders) into ``settings.index_dir``; see the module docstring."""
    started = time.perf_counter()
    progress = progress or NullProgress()
    summary = IngestSummary()
    chunker = Chunker(settings.chunking, embedder.count_tokens, embedder.max_tokens)
    files = list(iter_files(paths, settings.ingest.extensions))
    with _writer(settings, embedder) as writer:
        pending = _parse(files, writer, chunker, settings, metadata or {}, summary, progress)
        vectors = _embed(pending, writer, embedder, summary, progress)
        progress.start("write", len(pending))
        for item, vecs in zip(pending, vectors, strict=True):
            writer.upsert(item.doc, item.chunks, vecs)
            setattr(summary, item.status, getattr(summary, item.status) + 1)
            summary.chunks += len(item.chunks)
            progress.advance("write")
        if sync:
            summary.deleted = _delete_missing(writer, paths, {default_document_id(f) for f in files})
        if writer.changed:
            summary.index_version = writer.commit().version
    summary.seconds = round(time.perf_counter() - started, 3)
    return summary


def _writer(settings: Settings, embedder: Embedder) -> IndexWriter:
    return IndexWriter(
        settings.index_dir,
        embedding_model=embedder.model_id,
        dimension=embedder.dim,
        chunk_tokens=settings.chunking.chunk_tokens,
        overlap_tokens=settings.chunking.overlap_tokens,
        lock_timeout_s=settings.ingest.lock_timeout_s,
    )


def _parse(
    files: list[Path],
    writer: IndexWriter,
    chunker: Chunker,
    settings: Settings,
    metadata: dict[str, dict[str, Any]],
    summary: IngestSummary,
    progress: ProgressSink,
) -> list[_Pending]:
    max_bytes = int(settings.ingest.max_file_mb * 1024 * 1024)
    progress.start("parse", len(files))
    pending = []
    for path in files:
        summary.documents += 1
        try:
            doc = load_document(path, max_bytes=max_bytes)
        except LoaderError as exc:
            summary.failed += 1
            summary.errors.append({"path": path.as_posix(), "error": str(exc)})
            progress.advance("parse")
            continue
        doc.metadata = metadata.get(path.as_posix(), metadata.get(doc.id, {}))
        known = writer.document_state(doc.id)
        if known == (doc.hash, doc.metadata):
            summary.unchanged += 1
        else:
            pending.append(_Pending(doc, chunker.split(doc), "updated" if known else "added"))
        progress.advance("parse")
    return pending


def _embed(
    pending: list[_Pending],
    writer: IndexWriter,
    embedder: Embedder,
    summary: IngestSummary,
    progress: ProgressSink,
) -> list[np.ndarray]:
    """Embed each distinct chunk text once; reuse vectors already stored in the index."""
    hashes = {c.hash: c.text for item in pending for c in item.chunks}
    known = writer.vectors_for_hashes(set(hashes))
    todo = [h for h in hashes if h not in known]
    progress.start("embed", len(todo))
    batch = max(1, embedder_batch(embedder))
    for i in range(0, len(todo), batch):
        part = todo[i : i + batch]
        for digest, vec in zip(part, embedder.embed_documents([hashes[h] for h in part]), strict=True):
            known[digest] = vec
        progress.advance("embed", len(part))
    summary.chunks_embedded = len(todo)
    dim = embedder.dim
    return [
        np.stack([known[c.hash] for c in item.chunks]) if item.chunks else np.zeros((0, dim), np.float32)
        for item in pending
    ]


def embedder_batch(embedder: Embedder) -> int:
    """Progress granularity: a few model batches per update keeps the bar live and cheap."""
    return 4 * int(getattr(embedder, "batch_size", 32))


def _delete_missing(writer: IndexWriter, roots: Iterable[Path], seen: set[str]) -> int:
    """With --sync, documents under the given folders whose files are gone are deleted."""
    prefixes = [Path(r).resolve().as_posix().rstrip("/") + "/" for r in roots if Path(r).is_dir()]
    gone = [
        doc_id
        for doc_id in writer.document_ids()
        if doc_id not in seen and any(doc_id.startswith(p) for p in prefixes)
    ]
    for doc_id in gone:
        writer.delete(doc_id)
    return len(gone)
