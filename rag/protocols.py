"""The small typed interfaces every backend implements. A backend is chosen by name in config
(see rag.registry), so swapping one is a one-line change in configs/*.yaml."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, TypedDict, runtime_checkable

import numpy as np

from rag.types import Chunk, Document, ScoredChunk

if TYPE_CHECKING:  # annotations only: keeps this module free of FAISS and SQLite
    from rag.index.filters import SearchFilter
    from rag.index.manifest import Manifest


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors (so inner product = cosine)."""

    model_id: str  # recorded in the index manifest and checked when an index is opened
    dim: int
    max_tokens: int  # longest input, in the model's word pieces, embedded without truncation

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray: ...

    def embed_query(self, text: str) -> np.ndarray: ...

    def count_tokens(self, text: str) -> int: ...


# -- the store: one committed version to read, one writer to make the next -----------------------


class DocumentState(NamedTuple):
    """The indexed version of a document, as incremental ingestion compares it."""

    hash: str  # of the extracted text
    metadata: dict[str, Any]
    file_hash: str | None  # of the file's raw bytes; None in indexes written before it existed
    file_stat: str | None = None  # "<bytes>:<mtime_ns>" when it was hashed; None if not recorded


@runtime_checkable
class StoreSnapshot(Protocol):
    """One committed, immutable version of a store: every read of one request goes to one
    snapshot, so a response never mixes two versions (a commit in between makes a new one).

    Keyword search and reading stored vectors are optional capabilities
    (``KeywordSearchable``, ``VectorReadable``); the hybrid retriever checks for them.
    """

    @property
    def version(self) -> int: ...

    @property
    def manifest(self) -> Manifest: ...

    def search(self, vector: np.ndarray, k: int, filters: SearchFilter | None = None) -> list[ScoredChunk]:
        """Top-k chunks by cosine, ``score == dense_score``; with ``filters``, the top-k of the
        matching chunks (not a filtered top-k)."""
        ...

    def documents(self, limit: int | None = None, offset: int = 0) -> list[dict[str, Any]]: ...

    def document(self, doc_id: str) -> dict[str, Any] | None: ...

    def file_hashes(self, prefix: str = "") -> dict[str, str | None]:
        """Document id -> raw-bytes fingerprint, for ids starting with ``prefix``."""
        ...

    def check_readable(self) -> None:
        """A cheap read that raises IndexCorruptError when the stored data is damaged."""
        ...


@runtime_checkable
class KeywordSearchable(Protocol):
    """Optional snapshot capability: BM25 over the same chunks, with the same filters.
    ``has_keyword_index`` is False for an index written before it had keyword terms."""

    has_keyword_index: bool

    def keyword_search(
        self, query: str, top_k: int, filters: SearchFilter | None = None
    ) -> list[ScoredChunk]:
        """Top-k by BM25, ``score == keyword_score``; filters apply before the top-k."""
        ...

    def keyword_scores(self, query: str, chunk_ids: list[int]) -> dict[int, float]:
        """BM25 of exactly these chunks (0.0 where no query term occurs)."""
        ...


@runtime_checkable
class VectorReadable(Protocol):
    """Optional snapshot capability: the stored vectors, so fusion can give a keyword-only
    hit its true cosine and diversity can compare hits without embedding them again."""

    def dense_scores(self, query: np.ndarray, chunk_ids: list[int]) -> dict[int, float]: ...

    def vectors(self, chunk_ids: list[int]) -> np.ndarray: ...


@runtime_checkable
class StoreWriter(Protocol):
    """Stages changes, invisible to readers until ``commit()``; a context manager that holds
    the store's single-writer lock while open."""

    changed: bool

    def __enter__(self) -> StoreWriter: ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    def document_state(self, doc_id: str) -> DocumentState | None: ...

    def document_ids(self) -> set[str]: ...

    def set_file_hash(self, doc_id: str, file_hash: str | None, file_stat: str | None = None) -> None:
        """Record an unchanged document's file fingerprint (and size:mtime), so the next ingest
        skips parsing (and hashing) it."""
        ...

    def vectors_for_hashes(self, hashes: set[str]) -> dict[str, np.ndarray]: ...

    def upsert(self, doc: Document, chunks: list[Chunk], vectors: np.ndarray) -> list[Chunk]: ...

    def delete(self, doc_id: str) -> bool: ...

    def commit(self) -> Manifest:
        """Make the staged version the live one; ``.version`` of the result names it."""
        ...


@runtime_checkable
class Compactable(Protocol):
    """Optional writer capability: merge storage segments and drop deleted vectors, publishing
    the result as the next version (``rag compact``)."""

    def compact(self, numbers: Sequence[int] | None = None) -> Manifest: ...


@runtime_checkable
class VectorStore(Protocol):
    """Where chunks and their vectors live (registry kind ``store``, setting ``index.store``).

    Built as ``cls(settings)``: cheap, nothing opened until the first ``snapshot()``.
    """

    def snapshot(self) -> StoreSnapshot:
        """The latest committed version; raises IndexNotFoundError while there is none."""
        ...

    def refresh(self) -> None:
        """A commit just happened here: the next ``snapshot()`` looks for it at once."""
        ...

    def writer(self, embedder: Embedder | None = None, *, lock_timeout_s: float | None = None) -> StoreWriter:
        """A writer for vectors of ``embedder``; without one, for changes that embed nothing
        (deletes), with the live version's identity. ``lock_timeout_s`` defaults to
        ``ingest.lock_timeout_s``."""
        ...


# -- retrieval -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Retrieved:
    """What a retriever found, and which committed index version answered (one per call)."""

    hits: list[ScoredChunk]
    index_version: int | None = None  # None when the store has no versions


@runtime_checkable
class Retriever(Protocol):
    """Registry kind ``retriever`` (setting ``retrieval.retriever``), built as
    ``cls(settings, embedder, store)``.

    Hits are best first by ``score``. ``dense_score`` carries the raw cosine whenever the hit
    was scored densely (the refusal gate reads it); a fusing or reranking stage changes
    ``score`` and keeps ``dense_score``. ``mode`` is "dense", "keyword" or "hybrid" (None: the
    configured ``retrieval.mode``); a retriever that cannot serve a mode raises
    ``rag.errors.UnsupportedModeError``.
    """

    def retrieve(
        self, query: str, top_k: int, filters: SearchFilter | None = None, mode: str | None = None
    ) -> Retrieved: ...


@runtime_checkable
class Reranker(Protocol):
    """Registry kind ``reranker`` (setting ``retrieval.reranker``, default "none"), built as
    ``cls(settings, generator)``: re-scores the first ``retrieval.rerank_candidates`` hits.

    Returns the hits best first with ``rerank_score`` set and ``score`` equal to it;
    ``dense_score`` and ``keyword_score`` are kept."""

    def rerank(self, query: str, hits: list[ScoredChunk]) -> list[ScoredChunk]: ...


class Message(TypedDict):
    role: str  # "system" | "user" | "assistant"
    content: str


@dataclass(frozen=True)
class GenerationParams:
    max_tokens: int = 160
    temperature: float = 0.0  # 0 means greedy decoding
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    top_k: int = 0  # 0: no top-k cut
    repetition_penalty: float = 1.0
    seed: int | None = None  # for sampling; greedy ignores it


@dataclass
class Generation:
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = "stop"  # "stop" | "length"


@dataclass
class GenerationStats:
    """Timing of the last call, for efficiency metrics (Generation itself carries no timings)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    prefill_s: float = 0.0  # prompt processing up to the first generated token
    decode_s: float = 0.0  # the remaining generated tokens

    @property
    def prompt_tokens_per_s(self) -> float:
        return self.prompt_tokens / self.prefill_s if self.prefill_s > 0 else 0.0

    @property
    def completion_tokens_per_s(self) -> float:
        rest = self.completion_tokens - 1
        return rest / self.decode_s if self.decode_s > 0 and rest > 0 else 0.0


@runtime_checkable
class ReportsUsage(Protocol):
    """Optional generator capability: token counts and prefill/decode time of its last call,
    reported with every answer (``usage``)."""

    last_stats: GenerationStats


@runtime_checkable
class TokenCounter(Protocol):
    """Optional generator capability: count tokens with the model's own tokenizer, so the
    context budget (generator.context_tokens) is measured in the tokens the model pays for."""

    def count_tokens(self, text: str) -> int: ...


@runtime_checkable
class WarmsUp(Protocol):
    """Optional generator capability: compute the fixed system prompt's state once at load
    time, so every answer reuses it (prefix reuse)."""

    def warm_up(self, system_prompt: str) -> None: ...


@runtime_checkable
class Generator(Protocol):
    """A chat LLM. Implementations load their model once and are safe to call from one thread
    at a time (the API serialises calls)."""

    name: str

    def generate(self, messages: list[Message], params: GenerationParams) -> Generation: ...

    def stream(self, messages: list[Message], params: GenerationParams) -> Iterator[str]: ...


@runtime_checkable
class Loadable(Protocol):
    """Optional capability (generators): load the model now instead of on first use, so the
    first answer is not charged with it. Remote backends have nothing to load and omit it."""

    def load(self) -> None: ...


@runtime_checkable
class YesNoScorer(Protocol):
    """Optional generator capability used by the LLM judge: P("yes") for the next token, read
    from the logits, so a verdict needs no JSON parsing."""

    def yes_probability(self, messages: list[Message]) -> float: ...


@runtime_checkable
class HealthChecked(Protocol):
    """Optional generator capability: a cheap check that a remote model server answers, so the
    service's health says `unreachable` instead of `ready` when it does not."""

    def health_problem(self) -> str | None:
        """None when healthy, else what is wrong (one line, for /healthz)."""
        ...


@runtime_checkable
class Loader(Protocol):
    """Reads files of some suffixes into Documents (ingest.loaders: one per format, and the
    suffix dispatcher over them). Instances must be picklable (module-level classes): ingestion
    sends its loader to the parse worker process."""

    suffixes: tuple[str, ...]  # lower-case, with the dot: (".html", ".htm")

    def load(self, path: Path, *, doc_id: str | None = None, max_bytes: int | None = None) -> Document:
        """``doc_id`` defaults to the resolved path; a file over ``max_bytes`` is a LoaderError."""
        ...


@dataclass(kw_only=True)
class Support:
    """The one statement verdict: how well one statement is supported by a set of contexts, with
    the evidence for it. Judges return it, the answer path keeps one per sentence, the evaluator
    reports it (``dataclasses.asdict`` is the JSON of a statement in eval results and in
    POST /v1/evaluate), so "supported" means the same thing everywhere."""

    text: str = ""  # the statement judged
    supported: bool
    score: float  # in [0, 1]; a calibrated-ish probability that the statement is supported
    evidence: str = ""  # the context sentence that supports the statement best
    context_index: int | None = None  # which context holds the best evidence
    missing: list[str] = field(default_factory=list)  # statement terms found in no context
    reason: str = ""


@runtime_checkable
class SupportJudge(Protocol):
    """One definition of "supported", shared by the answer path and the evaluator."""

    def judge(self, statement: str, contexts: Sequence[str]) -> Support: ...


@runtime_checkable
class BatchSupportJudge(Protocol):
    """Optional judge capability: many statements against the same contexts at once (the
    contexts are prepared and embedded once instead of per statement)."""

    def judge_many(self, statements: Sequence[str], contexts: Sequence[str]) -> list[Support]: ...


def judge_all(judge: SupportJudge, statements: Sequence[str], contexts: Sequence[str]) -> list[Support]:
    """``judge_many`` when the judge has it, else one ``judge`` call per statement."""
    if isinstance(judge, BatchSupportJudge):
        return list(judge.judge_many(statements, contexts))
    return [judge.judge(s, contexts) for s in statements]
