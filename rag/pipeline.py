"""The question-answering path: retrieve -> (refuse early) -> generate -> ground -> cite.

Everything that decides what the user sees (refusal, citations) happens here in code; the model
only drafts the answer text.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from typing import Any

from rag.config import Settings
from rag.grounding.answer import GroundedAnswer, ground_answer
from rag.index.filters import SearchFilter
from rag.prompt import build_messages
from rag.protocols import Embedder, GenerationParams, Generator, SupportJudge
from rag.retrieval import DenseRetriever
from rag.types import ScoredChunk


@dataclass
class Citation:
    """A chunk the answer's [n] markers refer to: the one citation type (the HTTP response
    converts it in one place, api.schemas.Citation.of)."""

    n: int  # the chunk's number in the prompt and in the answer's [n] markers
    hit: ScoredChunk


@dataclass
class Answer:
    question: str
    answer: str
    refused: bool
    reason: str
    citations: list[Citation]
    contexts: list[ScoredChunk]
    timings: dict[str, float] = field(default_factory=dict)
    usage: dict[str, int] = field(default_factory=dict)
    draft: str = ""  # what the model wrote, before grounding
    grounding: GroundedAnswer | None = None


class Pipeline:
    def __init__(
        self,
        settings: Settings,
        retriever: DenseRetriever,
        judge: SupportJudge,
        generator: Generator | None = None,
    ) -> None:
        self.settings = settings
        self.retriever = retriever
        self.judge = judge
        self.generator = generator

    @property
    def embedder(self) -> Embedder:
        return self.retriever.embedder

    def search(
        self, query: str, top_k: int | None = None, *, filters: SearchFilter | None = None
    ) -> list[ScoredChunk]:
        """``filters`` (metadata, source prefix) are applied before the top-k is taken."""
        k = top_k or self.settings.retrieval.top_k
        if filters is None:  # the Retriever protocol's two-argument call, for any retriever
            return self.retriever.retrieve(query, k)
        return self.retriever.retrieve(query, k, filters)

    def answer(
        self, question: str, top_k: int | None = None, *, filters: SearchFilter | None = None
    ) -> Answer:
        return _last(self.answer_stream(question, top_k, filters=filters))

    def answer_stream(
        self, question: str, top_k: int | None = None, *, filters: SearchFilter | None = None
    ) -> Iterator[str | Answer]:
        """Yields draft text pieces as the model writes them, then the final, grounded Answer."""
        t0 = time.perf_counter()
        hits = self.search(question, top_k, filters=filters)
        timings = {"retrieve_ms": _ms(t0)}
        if not hits or hits[0].score < self.settings.retrieval.min_score:
            best = f"{hits[0].score:.2f}" if hits else "none"
            reason = f"no chunk is similar enough to the question (best score {best})"
            yield self._refusal(question, hits, reason, timings)
            return
        if self.generator is None:
            raise RuntimeError("Pipeline.answer needs a generator; build it with load_generator=True")
        t1 = time.perf_counter()
        messages = build_messages(question, hits)
        pieces: list[str] = []
        # closing(): when our consumer closes this stream, the generator's own stream is closed
        # at once (which stops the model), not whenever it is garbage-collected.
        with closing(self.generator.stream(messages, self._params())) as stream:
            for piece in stream:
                pieces.append(piece)
                yield piece
        draft = "".join(pieces)
        timings["generate_ms"] = _ms(t1)
        t2 = time.perf_counter()
        grounded = ground_answer(draft, [h.chunk.text for h in hits], self.judge, self.settings.grounding)
        timings["ground_ms"] = _ms(t2)
        citations = [] if grounded.refused else [Citation(n, hits[n - 1]) for n in grounded.cited]
        yield Answer(
            question,
            grounded.answer,
            grounded.refused,
            grounded.reason,
            citations,
            hits,
            timings,
            draft=draft,
            grounding=grounded,
        )

    def _params(self) -> GenerationParams:
        g = self.settings.generator
        return GenerationParams(max_tokens=g.max_tokens, temperature=g.temperature, top_p=g.top_p)

    def _refusal(
        self, question: str, hits: list[ScoredChunk], reason: str, timings: dict[str, float]
    ) -> Answer:
        timings["generate_ms"] = 0.0
        msg = self.settings.grounding.refusal_message
        return Answer(question, msg, True, reason, [], hits, timings)


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 1)


def _last(stream: Iterator[Any]) -> Answer:
    result = None
    for item in stream:
        result = item
    assert isinstance(result, Answer)
    return result
