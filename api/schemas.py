"""Request and response bodies of the HTTP API (they are also the OpenAPI schema at /docs)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, field_validator

from rag.pipeline import Answer
from rag.types import ScoredChunk

MAX_QUESTION_CHARS = 2000  # the schema's bound; server.max_question_chars may lower it


class QueryRequest(BaseModel):
    question: str = Field(
        min_length=1, max_length=MAX_QUESTION_CHARS, description="The question, in natural language."
    )
    top_k: int | None = Field(None, ge=1, le=50, description="Chunks to retrieve (default from config).")
    stream: bool = Field(
        False,
        description="Stream as server-sent events: `token` events with draft text as the model writes "
        "it, then one `answer` event with the grounded QueryResponse (which may be a refusal).",
    )

    @field_validator("question")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("question is blank; send the text of a question")
        return v


class SearchRequest(BaseModel):
    query: str = Field(min_length=1, max_length=MAX_QUESTION_CHARS)
    top_k: int | None = Field(None, ge=1, le=100)


class ChunkOut(BaseModel):
    rank: int
    chunk_id: int
    document_id: str
    source: str
    page: int | None = Field(description="1-based page for PDFs, null for other formats.")
    start: int = Field(description="Character offset of the chunk in the document's extracted text.")
    end: int
    score: float = Field(description="Cosine similarity between the query and the chunk.")
    text: str
    metadata: dict[str, Any] = {}

    @classmethod
    def from_hit(cls, hit: ScoredChunk, rank: int) -> ChunkOut:
        c = hit.chunk
        return cls(
            rank=rank,
            chunk_id=c.id or 0,
            document_id=c.document_id,
            source=c.source,
            page=c.page,
            start=c.start,
            end=c.end,
            score=round(hit.score, 4),
            text=c.text,
            metadata=hit.metadata,
        )


class Citation(BaseModel):
    n: int = Field(description="The number used by the answer's [n] markers.")
    chunk_id: int
    document_id: str
    source: str
    page: int | None
    start: int
    end: int
    score: float
    text: str
    metadata: dict[str, Any] = {}


class Timings(BaseModel):
    retrieve_ms: float
    generate_ms: float
    ground_ms: float = 0.0


class QueryResponse(BaseModel):
    answer: str
    refused: bool = Field(description="True when the documents do not support an answer.")
    reason: str = Field(description="Why the answer was given or refused, for people debugging.")
    citations: list[Citation]
    timings: Timings

    @classmethod
    def from_answer(cls, a: Answer) -> QueryResponse:
        citations = [
            Citation(
                n=c.n,
                chunk_id=c.hit.chunk.id or 0,
                document_id=c.hit.chunk.document_id,
                source=c.hit.chunk.source,
                page=c.hit.chunk.page,
                start=c.hit.chunk.start,
                end=c.hit.chunk.end,
                score=round(c.hit.score, 4),
                text=c.hit.chunk.text,
                metadata=c.hit.metadata,
            )
            for c in a.citations
        ]
        return cls(
            answer=a.answer,
            refused=a.refused,
            reason=a.reason,
            citations=citations,
            timings=Timings(**a.timings),
        )


class SearchResponse(BaseModel):
    results: list[ChunkOut]
    timings: dict[str, float]


class IndexInfo(BaseModel):
    loaded: bool
    version: int | None = None
    documents: int | None = None
    chunks: int | None = None
    embedding_model: str | None = None


class Health(BaseModel):
    status: str = Field(description="`ok` when questions can be answered, else `degraded`.")
    index: IndexInfo
    generator: str = Field(description="`loading`, `ready`, or `error: <reason>`.")


class ErrorBody(BaseModel):
    error: str
    detail: Any | None = None
