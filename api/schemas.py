"""Request and response bodies of the HTTP API (they are also the OpenAPI schema at /docs)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic.json_schema import SkipJsonSchema

from api.public_ids import UPLOAD_PREFIX, public_id
from rag.config import ServerSettings
from rag.index.filters import SearchFilter
from rag.injection import Flagged
from rag.pipeline import Answer, CheckedSentence
from rag.pipeline import Citation as AnswerCitation
from rag.protocols import GenerationParams, Message
from rag.types import ScoredChunk

# The schema's bound is the default of server.max_question_chars (one source); a configured value
# may lower it, and the routes check that value with question_over_limit.
MAX_QUESTION_CHARS: int = ServerSettings.model_fields["max_question_chars"].default


def question_over_limit(text: str, server: ServerSettings) -> str | None:
    """A message naming the configured bound when ``text`` is over it; None when within."""
    limit = server.max_question_chars
    if len(text) <= limit:
        return None
    return (
        f"question is {len(text)} characters; the limit is {limit} "
        "(server.max_question_chars, env RAG_SERVER__MAX_QUESTION_CHARS)"
    )


def message_over_limit(text: str, server: ServerSettings, where: str) -> str | None:
    """A message naming the configured bound when the conversation message ``where`` (e.g.
    ``history[2]``) is over it; None when within."""
    limit = server.max_message_chars
    if len(text) <= limit:
        return None
    return (
        f"{where} is {len(text)} characters; the limit is {limit} (server.max_message_chars, env "
        "RAG_SERVER__MAX_MESSAGE_CHARS): send a shorter message, or only the part that matters"
    )


def history_over_limit(history: list[HistoryMessage] | None, server: ServerSettings) -> str | None:
    """``message_over_limit`` for the first over-long message of a /v1/query ``history``."""
    for i, message in enumerate(history or []):
        problem = message_over_limit(message.content, server, f"history[{i}].content")
        if problem:
            return problem
    return None


def filters_over_limit(filters: Filters | None, server: ServerSettings) -> str | None:
    """A message naming the configured bound when ``filters.metadata`` holds more conditions
    than it: each field, each list item and each nested value counts one (each is a comparison
    against every document). None when within."""
    limit = server.max_filters
    metadata = filters.metadata if filters is not None else None
    if not metadata or not _more_conditions_than(metadata, limit):
        return None
    return (
        f"filters.metadata has more than {limit} conditions (fields, list items and nested values "
        "counted one each); the limit is server.max_filters (env RAG_SERVER__MAX_FILTERS): send fewer "
        "values, or split the request"
    )


def _more_conditions_than(metadata: dict[str, Any], limit: int) -> bool:
    """Whether ``metadata`` holds more than ``limit`` values at any depth; counting stops there.

    Iterative, so no nesting depth the body limit allows can exhaust the stack."""
    pending: list[Any] = [metadata]
    count = 0
    while pending:
        value = pending.pop()
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
        for child in children:
            count += 1
            if count > limit:
                return True
            pending.append(child)
    return False


def _not_blank(v: str) -> str:
    if not v.strip():
        raise ValueError("is blank; send the text of a question")
    return v


# One definition of what a question (or a search query) may be, for every route that takes one.
QuestionText = Annotated[str, Field(min_length=1, max_length=MAX_QUESTION_CHARS), AfterValidator(_not_blank)]


class RequestModel(BaseModel):
    """Request bodies are strict: `"5"` is not a number, `true` is not `1`, and an unknown field
    (a typo such as `topk`) is an error instead of being ignored."""

    model_config = ConfigDict(strict=True, extra="forbid")


class Filters(RequestModel):
    """Restrict retrieval to some documents; applied before the top-k is taken, so a filtered
    query still gets k chunks whenever k matching chunks exist."""

    metadata: dict[str, Any] | None = Field(
        None,
        description="Every field must match the document's user metadata (AND). A list value "
        'matches any of its items (`{"lang": ["en", "de"]}`); a document whose field is a list '
        "matches when the list contains the value. Equality is JSON equality (`true` is not `1`).",
        examples=[{"team": "ops", "lang": ["en", "de"]}],
    )
    source_prefix: str | None = Field(
        None,
        min_length=1,
        description="Only documents whose source (the path as ingested, or `uploads/<name>`) starts "
        "with this.",
        examples=["uploads/"],
    )

    def to_filter(self) -> SearchFilter | None:
        return SearchFilter.from_dict(self.model_dump(), match_ids=False)


class GenerationOptions(RequestModel):
    """Per-request sampling settings; each one left out takes its configured default
    (generator.* in the settings). The defaults are greedy, so answers are reproducible."""

    max_tokens: int | None = Field(None, ge=1, le=1024, description="Most tokens of the answer.")
    temperature: float | None = Field(None, ge=0.0, le=2.0, description="0 = greedy.")
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    top_k: int | None = Field(None, ge=0, le=1000, description="0 = no top-k cut.")
    repetition_penalty: float | None = Field(None, gt=0.0, le=2.0)
    seed: int | None = Field(None, ge=0, le=2**32 - 1, description="For sampling (temperature > 0).")
    stop: list[Annotated[str, Field(min_length=1, max_length=64)]] | None = Field(
        None, max_length=8, description="Stop sequences (not returned)."
    )

    def apply(self, defaults: GenerationParams) -> GenerationParams:
        given = self.model_dump(exclude_none=True)
        if "stop" in given:
            given["stop"] = tuple(given["stop"])
        return replace(defaults, **given)


RetrievalMode = Literal["dense", "keyword", "hybrid"]
MODE_DESCRIPTION = (
    "How to find the chunks: `hybrid` (BM25 keywords and MiniLM cosine fused; the configured "
    "default, measured best), `dense` (cosine only) or `keyword` (BM25 only). Omitted: "
    "retrieval.mode from the config."
)


class HistoryMessage(RequestModel):
    """One earlier turn of the conversation, oldest first."""

    role: Literal["user", "assistant"]
    # Bounded by server.max_message_chars (history_over_limit, checked by the route) and the body
    # limit (server.max_body_kb); the rewrite reads at most conversation.max_history_tokens of it.
    content: str = Field(min_length=1)

    def as_message(self) -> Message:
        return {"role": self.role, "content": self.content}


class QueryRequest(RequestModel):
    question: QuestionText = Field(description="The question, in natural language.")
    history: list[HistoryMessage] | None = Field(
        None,
        description='The conversation before this question, oldest first. A follow-up ("and where is '
        'its configuration file?") is rewritten into a standalone question from it before retrieval '
        "(conversation.condense); the response's `standalone_question` says what was searched. At "
        "most conversation.max_messages messages; the rewrite reads the recent ones.",
    )
    mode: RetrievalMode | None = Field(None, description=MODE_DESCRIPTION)
    generation: GenerationOptions | None = Field(None, description="Sampling settings for this answer.")
    cache: bool = Field(
        True,
        description="Use the answer cache: an answer to the same (or a re-worded) question over the "
        "same index version, filters and settings is returned without generating. `false` neither "
        "reads nor writes it.",
    )
    top_k: int | None = Field(None, ge=1, le=50, description="Chunks to retrieve (default from config).")
    filters: Filters | None = Field(None, description="Restrict retrieval to matching documents.")
    stream: bool = Field(
        False,
        description="Stream as server-sent events: a `sentence` event for each sentence of the answer "
        "as soon as it is complete and the support judge accepted it (unsupported ones are "
        "withheld; appending the texts gives the answer), then one `answer` event with the "
        "QueryResponse, which may still be a refusal (then show its message instead); a failure is "
        "an `error` event carrying the JSON error body and its `status`.",
    )
    stream_draft: bool = Field(
        False,
        description="With `stream: true`: stream the model's UNCHECKED draft as `token` events "
        "instead of `sentence` events (it may hold what grounding withholds, or end in a refusal); "
        "the `answer` event is the same.",
    )

    @model_validator(mode="after")
    def _draft_needs_stream(self) -> QueryRequest:
        if self.stream_draft and not self.stream:
            raise ValueError("stream_draft needs stream: true; send both, or neither")
        return self


class SearchRequest(RequestModel):
    query: QuestionText = Field(description="What to look for.")
    mode: RetrievalMode | None = Field(None, description=MODE_DESCRIPTION)
    top_k: int | None = Field(None, ge=1, le=100)
    filters: Filters | None = Field(None, description="Restrict the search to matching documents.")


def hit_fields(hit: ScoredChunk) -> dict[str, Any]:
    """A retrieved chunk as the API shows it (search results and citations alike): the one
    conversion, with the document id made public (api.public_ids) and the score rounded."""
    c = hit.chunk
    return {
        "chunk_id": c.id or 0,
        "document_id": public_id(c.document_id),
        "source": c.source,
        "page": c.page,
        "start": c.start,
        "end": c.end,
        "score": round(hit.score, 4),
        "dense_score": _rounded(hit.dense_score),
        "keyword_score": _rounded(hit.keyword_score),
        "rerank_score": _rounded(hit.rerank_score),
        "injection": list(hit.injection) or None,
        "text": c.text,
        "metadata": hit.metadata,
    }


def _rounded(score: float | None) -> float | None:
    return None if score is None else round(score, 4)


SCORE_DESCRIPTION = (
    "The rank score: the fused score in [0, 1] in hybrid mode (relative to this query's "
    "candidates), the cosine in dense mode, BM25 in keyword mode, or the reranker's score."
)
DENSE_DESCRIPTION = "Cosine similarity between the query and the chunk (what the refusal gate reads)."
KEYWORD_DESCRIPTION = "BM25 score of the chunk for the query's words (0 = no word in common)."
RERANK_DESCRIPTION = "The reranker's score, when retrieval.reranker is set."
INJECTION_DESCRIPTION = (
    "The prompt-injection rules the chunk's text fires (e.g. `ignore-previous`, `role-header`; "
    "docs/prompt-injection.md), or null: text that reads as instructions to the model. An answer "
    "keeps such chunks out of its prompt by default (safety.injection)."
)


class ChunkOut(BaseModel):
    rank: int
    chunk_id: int
    document_id: str
    source: str
    page: int | None = Field(description="1-based page for PDFs, null for other formats.")
    start: int = Field(description="Character offset of the chunk in the document's extracted text.")
    end: int
    score: float = Field(description=SCORE_DESCRIPTION)
    dense_score: float | None = Field(None, description=DENSE_DESCRIPTION)
    keyword_score: float | None = Field(None, description=KEYWORD_DESCRIPTION)
    rerank_score: float | None = Field(None, description=RERANK_DESCRIPTION)
    injection: list[str] | None = Field(None, description=INJECTION_DESCRIPTION)
    text: str
    metadata: dict[str, Any] = {}

    @classmethod
    def from_hit(cls, hit: ScoredChunk, rank: int) -> ChunkOut:
        return cls(rank=rank, **hit_fields(hit))


class Citation(BaseModel):
    """The HTTP form of rag.pipeline.Citation (built only by ``of``)."""

    n: int = Field(description="The number used by the answer's [n] markers.")
    chunk_id: int
    document_id: str
    source: str
    page: int | None
    start: int
    end: int
    score: float = Field(description=SCORE_DESCRIPTION)
    dense_score: float | None = Field(None, description=DENSE_DESCRIPTION)
    keyword_score: float | None = Field(None, description=KEYWORD_DESCRIPTION)
    rerank_score: float | None = Field(None, description=RERANK_DESCRIPTION)
    injection: list[str] | None = Field(None, description=INJECTION_DESCRIPTION)
    text: str
    metadata: dict[str, Any] = {}

    @classmethod
    def of(cls, citation: AnswerCitation) -> Citation:
        return cls(n=citation.n, **hit_fields(citation.hit))


class SentenceEvent(BaseModel):
    """The data of a `sentence` event: one checked sentence of the answer."""

    text: str = Field(
        description="The sentence with its [n] markers, starting with what separates it from the "
        "previous one (a space, a line break, a list bullet; nothing for the first)."
    )
    citations: list[Citation] = Field(description="The chunks its [n] markers refer to.")

    @classmethod
    def of(cls, sentence: CheckedSentence) -> SentenceEvent:
        return cls(text=sentence.text, citations=[Citation.of(c) for c in sentence.citations])


class Timings(BaseModel):
    retrieve_ms: float
    generate_ms: float
    ground_ms: float = 0.0


class Usage(BaseModel):
    """What generating this answer cost (zeros when nothing was generated: a refusal before
    generation, or a cached answer)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    prefill_ms: float = Field(0.0, description="Prompt processing, up to the first answer token.")
    decode_ms: float = Field(0.0, description="The remaining answer tokens.")


class FlaggedChunk(BaseModel):
    """A chunk among the top k whose text reads as instructions to the model (rag.injection)."""

    chunk_id: int
    document_id: str
    source: str
    page: int | None
    injection: list[str] = Field(description="The rules it fired (docs/prompt-injection.md).")
    action: Literal["excluded", "downweighted", "flagged"] = Field(
        description="What the answer did with it (safety.injection): kept out of the prompt, ranked "
        "lower, or only marked."
    )

    @classmethod
    def of(cls, flagged: Flagged) -> FlaggedChunk:
        c = flagged.hit.chunk
        return cls(
            chunk_id=c.id or 0,
            document_id=public_id(c.document_id),
            source=c.source,
            page=c.page,
            injection=list(flagged.hit.injection),
            action=flagged.action,
        )


class QueryResponse(BaseModel):
    answer: str
    refused: bool = Field(description="True when the documents do not support an answer.")
    reason: str = Field(description="Why the answer was given or refused, for people debugging.")
    citations: list[Citation]
    timings: Timings
    usage: Usage = Field(default_factory=Usage)
    cached: str | None = Field(
        None, description="`exact` or `similar` when the answer came from the answer cache."
    )
    index_version: int | None = Field(None, description="The index version the answer was drawn from.")
    standalone_question: str | None = Field(
        None,
        description="With `history`: the question as it was searched and answered, rewritten from the "
        "conversation (the same as `question` when it needed no rewrite).",
    )
    flagged: list[FlaggedChunk] = Field(
        default_factory=list,
        description="Retrieved chunks that read as prompt injection, and what was done with each.",
    )

    @classmethod
    def from_answer(cls, a: Answer) -> QueryResponse:
        citations = [Citation.of(c) for c in a.citations]
        return cls(
            answer=a.answer,
            refused=a.refused,
            reason=a.reason,
            citations=citations,
            timings=Timings(**a.timings),
            usage=Usage(**a.usage) if a.usage and not a.cached else Usage(),
            cached=a.cached,
            index_version=a.index_version,
            flagged=[FlaggedChunk.of(f) for f in a.flagged],
        )


class SearchResponse(BaseModel):
    results: list[ChunkOut]
    timings: dict[str, float]
    index_version: int | None = Field(
        None, description="The committed index version every result came from (one per response)."
    )


class IndexInfo(BaseModel):
    loaded: bool
    version: int | None = None
    documents: int | None = None
    chunks: int | None = None
    embedding_model: str | None = None
    error: str | None = Field(
        None,
        description="What is wrong with the index, when something is: none committed yet, a damaged "
        "file, or an embedding model other than the server's.",
    )


class QueueInfo(BaseModel):
    busy: bool = Field(description="An answer is being generated.")
    waiting: int = Field(description="Questions waiting for the generator.")
    max_waiting: int = Field(description="Beyond this many waiting, questions get 429.")
    expected_wait_s: float = Field(
        description="How long a question sent now would wait for the generator (recent answer times)."
    )


class Health(BaseModel):
    status: str = Field(description="`ok` when questions can be answered, else `degraded`.")
    index: IndexInfo
    generator: str = Field(
        description="`loading`, `ready`, `error: <reason>`, or `unreachable: <reason>` for a remote "
        "generator that does not answer."
    )
    queue: QueueInfo


class SegmentOut(BaseModel):
    number: int = Field(description="The version that wrote the segment.")
    vectors: int = Field(description="Vectors stored, tombstoned ones included.")
    kind: str = Field(description="The FAISS index kind: flat (exact), hnsw, ivf_sq8 or ivf_pq.")


class IndexDetails(BaseModel):
    """GET /v1/index: what the live index was built with and what it holds."""

    version: int = Field(description="The committed version queries are answered from.")
    format_version: int
    embedding_model: str
    dimension: int
    metric: str
    chunk_tokens: int
    overlap_tokens: int
    documents: int
    chunks: int
    keyword_analyzer: str | None = Field(
        None,
        description="How the keyword (BM25) terms were analysed; null for an index built before "
        "keyword search, which has none until its next ingest adds them (hybrid then searches "
        "densely only).",
    )
    created_at: str = Field(description="When the first version of this index was written (UTC).")
    updated_at: str = Field(description="When this version was committed (UTC).")
    segments: list[SegmentOut] = Field(
        default_factory=list,
        description="The immutable vector segments this version searches, oldest first "
        "(`rag compact` merges them into one).",
    )
    tombstones: int = Field(
        0, description="Vectors of deleted chunks still stored in those segments (skipped by search)."
    )
    compatible: bool = Field(description="Whether the server's embedding model matches the index's.")
    problem: str | None = Field(None, description="Why it does not, and how to fix it.")


class DocumentOut(BaseModel):
    id: str = Field(
        description="Stable public id: `uploads/<name>` for uploads, `doc_` + 16 hex digits for files "
        "ingested from the server's disk (their stored id is a path, never shown over HTTP)."
    )
    source: str = Field(
        description="What citations show: the path as given to `rag ingest` (relative when it was "
        "given relative), or `uploads/<name>`."
    )
    chunks: int
    hash: str = Field(description="SHA-256 of the extracted text; unchanged text is not re-indexed.")
    indexed_at: str
    metadata: dict[str, Any] = {}


class DocumentList(BaseModel):
    index_version: int | None = Field(description="null while no index has been committed.")
    total: int
    documents: list[DocumentOut]


class DocumentDeleted(BaseModel):
    deleted: str
    index_version: int


class UploadedFile(BaseModel):
    """A received file, stored under the index by its sha256 until its document no longer needs it."""

    # The one upload type: jobs keep it with ``path`` (where it is stored; neither in the JSON
    # nor in the schema), JobAccepted and JobOut show it.

    name: str = Field(
        description="The file name as stored: the base name of the one sent, without directories, "
        "leading dots or control characters."
    )
    document_id: str = Field(description="`uploads/<name>`: uploading the same name again updates it.")
    bytes: int
    sha256: str
    path: SkipJsonSchema[Path | None] = Field(None, exclude=True)  # <index>/uploads/<sha256>/<name>

    @model_validator(mode="before")
    @classmethod
    def _document_id_from_name(cls, data: Any) -> Any:
        """The document id always follows from the name, so no caller can make them disagree."""
        if isinstance(data, dict) and "name" in data:
            return {**data, "document_id": UPLOAD_PREFIX + str(data["name"])}
        return data


class JobAccepted(BaseModel):
    job_id: str
    status: str
    status_url: str = Field(description="Poll this for progress: GET /v1/jobs/{job_id}.")
    files: list[UploadedFile]


class StageProgress(BaseModel):
    done: int
    total: int


class FileError(BaseModel):
    path: str
    error: str


class JobOut(BaseModel):
    id: str
    kind: str
    status: str = Field(description="`queued`, `running`, `succeeded` or `failed`.")
    created_at: str
    started_at: str | None = None
    finished_at: str | None = None
    stage: str | None = Field(
        None,
        description="The stage that last made progress: parse, embed or write (documents stream "
        "through the stages, so they overlap; 'load embedder' before the first job's start).",
    )
    progress: dict[str, StageProgress] = Field(
        default_factory=dict,
        description="Per stage: files parsed, chunks embedded, chunks written, each done of total; "
        "the embed and write totals grow as files are parsed.",
    )
    files: list[UploadedFile] = []
    summary: dict[str, Any] | None = Field(
        None, description="Counts when finished: added, updated, unchanged, failed, chunks, ..."
    )
    errors: list[FileError] = Field(default_factory=list, description="One entry per file that failed.")
    error: str | None = Field(None, description="Why the whole job failed, when it did.")


class ErrorBody(BaseModel):
    """Every error response, whatever its status."""

    error: str = Field(description="What went wrong and how to fix it.")
    detail: Any | None = None


class Problem(BaseModel):
    field: str = Field(description="Dotted path of the bad field (empty for the whole body).")
    problem: str


class ValidationErrorBody(BaseModel):
    """A 422: the body or a parameter is invalid; one entry per problem."""

    error: str
    detail: list[Problem]


class CollectionOut(BaseModel):
    name: str
    index_version: int | None = Field(description="null while the collection has no committed index.")
    documents: int
    chunks: int


class CollectionList(BaseModel):
    """The collections the caller's key may read (every collection when no key is configured)."""

    collections: list[CollectionOut]
