"""The client's own models of the service's HTTP bodies (mirroring its OpenAPI schema, GET
/openapi.json), so the client needs none of the service's code. Unknown fields are ignored: a
newer server that adds a field does not break an older client."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

RetrievalMode = Literal["dense", "keyword", "hybrid"]


class Response(BaseModel):
    """Every response model: tolerant of fields this client does not know yet."""

    model_config = ConfigDict(extra="ignore")


class Filters(BaseModel):
    """Restrict retrieval to some documents (applied before the top-k is taken): every
    ``metadata`` field must match (a list value matches any of its items), and the document's
    source must start with ``source_prefix``."""

    model_config = ConfigDict(extra="forbid")

    metadata: dict[str, Any] | None = None
    source_prefix: str | None = None


class _Chunk(Response):
    """What search hits and citations share: a chunk, where it is, and how it scored."""

    chunk_id: int
    document_id: str
    source: str
    page: int | None = Field(None, description="1-based page for PDFs, None otherwise.")
    start: int = Field(description="Character offset in the document's extracted text.")
    end: int
    score: float = Field(description="The rank score (fused, cosine, BM25 or reranker, by mode).")
    dense_score: float | None = None
    keyword_score: float | None = None
    rerank_score: float | None = None
    injection: list[str] | None = Field(
        None, description="Prompt-injection rules the chunk's text fires, or None (server docs)."
    )
    text: str
    metadata: dict[str, Any] = {}

    @property
    def key(self) -> str:
        """A stable id for the chunk (the server's chunk_id may change when the index is rebuilt)."""
        return f"{self.document_id}#{self.start}-{self.end}"

    def retriever_metadata(self) -> dict[str, Any]:
        """The metadata the LangChain and LlamaIndex retrievers attach to each chunk."""
        return {
            "source": self.source,
            "page": self.page,
            "start": self.start,
            "end": self.end,
            "chunk_id": self.chunk_id,
            "document_id": self.document_id,
            "score": self.score,
            "dense_score": self.dense_score,
            "keyword_score": self.keyword_score,
            "rerank_score": self.rerank_score,
            "document_metadata": self.metadata,
        }


class Hit(_Chunk):
    """One ranked chunk of POST /v1/search."""

    rank: int


class Citation(_Chunk):
    """A chunk that supports an answer; ``n`` is the number its ``[n]`` markers use."""

    n: int


class SearchResponse(Response):
    results: list[Hit]
    timings: dict[str, float] = {}
    index_version: int | None = None


class Timings(Response):
    retrieve_ms: float
    generate_ms: float
    ground_ms: float = 0.0


class Usage(Response):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    prefill_ms: float = 0.0
    decode_ms: float = 0.0


class FlaggedChunk(Response):
    """A retrieved chunk whose text reads as instructions to the model, and what the server did
    with it: ``excluded`` (kept out of the prompt), ``downweighted`` or ``flagged`` (only marked)."""

    chunk_id: int
    document_id: str
    source: str
    page: int | None = None
    injection: list[str]
    action: str


class Answer(Response):
    """The grounded answer of POST /v1/query, or a refusal (``refused``, no citations)."""

    answer: str
    refused: bool
    reason: str
    citations: list[Citation]
    timings: Timings
    usage: Usage = Field(default_factory=Usage)
    cached: str | None = Field(None, description="`exact` or `similar` for a cached answer.")
    index_version: int | None = None
    standalone_question: str | None = Field(
        None, description="With a history: the question as searched, rewritten from the conversation."
    )
    flagged: list[FlaggedChunk] = []


class StreamText(Response):
    """Text streamed before the answer: a ``sentence`` event (a sentence that passed grounding,
    with the citations of its ``[n]`` markers; joined, they are the answer unless it is refused)
    or, when the draft is asked for, a ``token`` event (unchecked text as the model writes it, no
    citations). Fields this client does not know are kept in ``model_extra``."""

    model_config = ConfigDict(extra="allow")

    event: str
    text: str = Field(description="Starts with what separates it from the previous text, if anything.")
    citations: list[Citation] = []


class IndexInfo(Response):
    loaded: bool
    version: int | None = None
    documents: int | None = None
    chunks: int | None = None
    embedding_model: str | None = None
    error: str | None = None


class QueueInfo(Response):
    busy: bool
    waiting: int
    max_waiting: int
    expected_wait_s: float | None = Field(None, description="How long a question sent now would wait.")


class Health(Response):
    """GET /healthz: ``ok`` when questions can be answered, else ``degraded``."""

    status: str
    index: IndexInfo
    generator: str
    queue: QueueInfo


class UploadedFile(Response):
    name: str
    document_id: str
    bytes: int
    sha256: str


class JobAccepted(Response):
    """POST /v1/documents (202): the job that will index the files."""

    job_id: str
    status: str
    status_url: str
    files: list[UploadedFile]


class StageProgress(Response):
    done: int
    total: int


class FileError(Response):
    path: str
    error: str


class Job(Response):
    """GET /v1/jobs/{id}: an upload job's progress and, once finished, its outcome."""

    id: str
    kind: str
    status: str = Field(description="`queued`, `running`, `succeeded` or `failed`.")
    created_at: str
    started_at: str | None = None
    finished_at: str | None = None
    stage: str | None = None
    progress: dict[str, StageProgress] = {}
    files: list[UploadedFile] = []
    summary: dict[str, Any] | None = None
    errors: list[FileError] = []
    error: str | None = None

    @property
    def finished(self) -> bool:
        return self.status in FINISHED_JOB_STATES


FINISHED_JOB_STATES = frozenset({"succeeded", "failed"})
