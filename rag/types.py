"""Data types that flow through the pipeline: ingest -> chunk -> index -> retrieve -> generate."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any


def content_hash(text: str) -> str:
    """Stable id for a piece of text; used for document versions and chunk de-duplication."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Page:
    """A span of a document's text that came from one page (PDF) or the whole file (others)."""

    number: int | None  # 1-based page number for paged formats, None otherwise
    start: int  # character offset of the page's text in Document.text
    end: int


@dataclass
class Document:
    """A loaded file: its full text plus where each page lies in that text."""

    id: str
    source: str
    text: str
    pages: list[Page]
    metadata: dict[str, Any] = field(default_factory=dict)
    # Hash of the file's raw bytes (ingest.loaders.file_fingerprint): lets re-ingest skip parsing.
    file_hash: str | None = None
    # The file's size and modification time ("<bytes>:<mtime_ns>", ingest.loaders.file_stat): when
    # it matches what is indexed, re-ingest skips even hashing the file.
    file_stat: str | None = None

    @property
    def hash(self) -> str:
        return content_hash(self.text)


@dataclass(frozen=True)
class Chunk:
    """A piece of a document that is embedded and retrieved; offsets slice Document.text."""

    document_id: str
    source: str
    page: int | None
    start: int
    end: int
    text: str
    id: int | None = None  # int64 id in the FAISS index, assigned by the store

    @property
    def hash(self) -> str:
        return content_hash(self.text)


@dataclass(frozen=True)
class ScoredChunk:
    """A retrieved chunk. ``score`` ranks the hits (after any fusion or reranking);
    ``dense_score`` is the raw cosine to the query, kept apart so the refusal gate
    (retrieval.min_score) keeps its meaning; None when the hit was not scored densely.
    ``keyword_score`` is its BM25 score (None when not scored by keywords)."""

    chunk: Chunk
    score: float  # the final rank score: the cosine (dense), BM25 (keyword) or fused (hybrid)
    metadata: dict[str, Any] = field(default_factory=dict)  # the document's user metadata
    dense_score: float | None = None  # cosine similarity to the query
    keyword_score: float | None = None  # BM25 (rag.index.keyword); 0.0 = no term in common
    rerank_score: float | None = None  # set by a reranker stage (retrieval.reranker)
    # Names of the prompt-injection rules its text fires (rag.injection); empty when none fired
    # or it was not screened (safety.injection "off").
    injection: tuple[str, ...] = ()
