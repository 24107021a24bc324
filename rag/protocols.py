"""The small typed interfaces every backend implements. A backend is chosen by name in config
(see rag.registry), so swapping one is a one-line change in configs/*.yaml."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypedDict, runtime_checkable

import numpy as np

from rag.types import Document, ScoredChunk


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors (so inner product = cosine)."""

    model_id: str  # recorded in the index manifest and checked when an index is opened
    dim: int
    max_tokens: int  # longest input, in the model's word pieces, embedded without truncation

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray: ...

    def embed_query(self, text: str) -> np.ndarray: ...

    def count_tokens(self, text: str) -> int: ...


@runtime_checkable
class Retriever(Protocol):
    def retrieve(self, query: str, top_k: int) -> list[ScoredChunk]: ...


class Message(TypedDict):
    role: str  # "system" | "user" | "assistant"
    content: str


@dataclass(frozen=True)
class GenerationParams:
    max_tokens: int = 160
    temperature: float = 0.0  # 0 means greedy decoding
    top_p: float = 1.0
    stop: tuple[str, ...] = ()


@dataclass
class Generation:
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = "stop"  # "stop" | "length"


@runtime_checkable
class Generator(Protocol):
    """A chat LLM. Implementations load their model once and are safe to call from one thread
    at a time (the API serialises calls)."""

    name: str

    def generate(self, messages: list[Message], params: GenerationParams) -> Generation: ...

    def stream(self, messages: list[Message], params: GenerationParams) -> Iterator[str]: ...


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
