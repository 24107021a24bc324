"""POST /v1/evaluate: score one (question, answer, contexts[, reference]) with the support judge.

The same metrics as `rag eval` with the deterministic judge (no LLM), so a client can check an
answer from any system against its contexts. Anyone may call it, and its cost grows with answer
sentences x context sentences, so:

- a request is bounded (the `evaluate:` config section; over a bound: 422 naming it), which keeps
  the largest one to seconds of CPU;
- the work runs in a worker thread that stops at its next check (between metrics, between groups
  of statements, between embedding batches) when the client disconnects or the server shuts down
  (api/cancel.py).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, Field

from api.cancel import raise_if_cancelled, run_cancellable
from api.deps import State, authenticate
from api.schemas import QuestionText, question_over_limit
from api.state import AppState
from rag.config import EvaluateSettings
from rag.embedding.caching import CachingEmbedder
from rag.grounding.answer import is_refusal
from rag.grounding.support import LexicalSupportJudge
from rag.grounding.text import split_sentences, strip_markers
from rag.metrics import (
    answer_correctness,
    answer_relevance_embedding,
    context_precision,
    context_recall,
    context_relevance,
    faithfulness,
)
from rag.protocols import Embedder, Support, SupportJudge, judge_all

router = APIRouter(tags=["evaluate"])

# The schema's bounds are the config defaults; `evaluate.*` in the config may lower them.
SCHEMA_LIMITS = EvaluateSettings()
# Statements judged between two cancellation checks: the judge prepares the contexts once per
# call, so smaller groups stop sooner but repeat that preparation more often.
STATEMENTS_PER_CHECK = 8


class EvaluateRequest(BaseModel):
    question: QuestionText
    answer: str = Field(max_length=SCHEMA_LIMITS.max_answer_chars)
    contexts: list[Annotated[str, Field(max_length=SCHEMA_LIMITS.max_context_chars)]] = Field(
        min_length=1,
        max_length=SCHEMA_LIMITS.max_contexts,
        description=f"The passages the answer was written from (by default at most "
        f"{SCHEMA_LIMITS.max_contexts}, {SCHEMA_LIMITS.max_context_chars} characters and "
        f"{SCHEMA_LIMITS.max_context_sentences} sentences together).",
    )
    reference: str | None = Field(
        None,
        max_length=SCHEMA_LIMITS.max_reference_chars,
        description="A reference answer, for correctness and context metrics.",
    )


class StatementOut(BaseModel):
    text: str
    supported: bool
    score: float
    evidence: str
    context_index: int | None
    missing: list[str]
    reason: str


class EvaluateResponse(BaseModel):
    refused: bool = Field(description="The answer is a refusal: faithfulness and relevance are not scored.")
    faithfulness: float | None
    answer_relevance: float | None
    context_relevance: float | None
    context_precision: float | None = None
    context_recall: float | None = None
    answer_correctness: float | None = None
    statements: list[StatementOut] = []
    timings: dict[str, float] = {}


@router.post(
    "/v1/evaluate",
    response_model=EvaluateResponse,
    dependencies=[Depends(authenticate)],  # any valid key once keys exist: it reads no collection
    summary="Score one answer against its contexts (faithfulness, relevance; correctness with a reference)",
    responses={422: {"description": "Invalid body, or over one of the `evaluate:` bounds (named)."}},
)
async def evaluate(body: EvaluateRequest, state: State, request: Request) -> EvaluateResponse:
    problem = question_over_limit(body.question, state.settings.server) or over_limit(
        body, state.settings.evaluate
    )
    if problem:
        raise HTTPException(422, problem)
    return await run_cancellable(request, lambda cancel: _evaluate(body, state, cancel))


def over_limit(body: EvaluateRequest, limits: EvaluateSettings) -> str | None:
    """The first bound the request exceeds, as a message naming it; None when within all.
    Character counts come first: they are free, and they bound the cost of counting sentences."""
    reference = body.reference or ""
    checks: list[tuple[str, str, Callable[[], int]]] = [
        ("answer", "max_answer_chars", lambda: len(body.answer)),
        ("contexts", "max_contexts", lambda: len(body.contexts)),
        ("contexts", "max_context_chars", lambda: sum(map(len, body.contexts))),
        ("reference", "max_reference_chars", lambda: len(reference)),
        ("answer", "max_answer_sentences", lambda: len(split_sentences(body.answer))),
        ("contexts", "max_context_sentences", lambda: sum(len(split_sentences(c)) for c in body.contexts)),
        ("reference", "max_reference_sentences", lambda: len(split_sentences(reference))),
    ]
    for field, key, measure in checks:
        limit, n = getattr(limits, key), measure()
        if n > limit:
            unit = key.removeprefix("max_").split("_")[-1]  # chars, sentences, contexts
            return (
                f"{field}: {n} {unit} is over the limit of {limit} (evaluate.{key}, env "
                f"RAG_EVALUATE__{key.upper()}); send less, or split it over several requests"
            )
    return None


def _evaluate(body: EvaluateRequest, state: AppState, cancel: threading.Event) -> EvaluateResponse:
    """The metrics, in a worker thread; every step checks ``cancel`` and stops when it is set.
    One caching embedder per request: the judge embeds the same context sentences for several
    metrics."""
    started = time.perf_counter()
    batch = state.settings.embedding.batch_size
    embedder = CachingEmbedder(_CheckedEmbedder(state.embedder, cancel, batch))
    judge = _CheckedJudge(LexicalSupportJudge(state.settings.grounding, embedder), cancel)
    answer = strip_markers(body.answer).strip()
    refused = not answer or is_refusal(answer)
    out = EvaluateResponse(
        refused=refused,
        faithfulness=None,
        answer_relevance=None,
        context_relevance=context_relevance(body.question, body.contexts, embedder, state.settings.metrics),
    )
    if not refused:
        raise_if_cancelled(cancel)
        out.faithfulness, verdicts = faithfulness(answer, body.contexts, judge)
        out.statements = [StatementOut(**asdict(v)) for v in verdicts]
        raise_if_cancelled(cancel)
        out.answer_relevance = answer_relevance_embedding(body.question, answer, embedder)
        if body.reference:
            raise_if_cancelled(cancel)
            c = answer_correctness(answer, body.reference, judge, embedder, state.settings.metrics)
            out.answer_correctness = c.score if c else None
    if body.reference:
        raise_if_cancelled(cancel)
        out.context_precision, _ = context_precision(body.reference, body.contexts, judge)
        raise_if_cancelled(cancel)
        out.context_recall, _ = context_recall(body.reference, body.contexts, judge)
    out.timings = {"evaluate_ms": round((time.perf_counter() - started) * 1000, 1)}
    return out


class _CheckedEmbedder:
    """Implements Embedder by delegating to ``inner`` one batch at a time, checking ``cancel``
    before each: embedding the contexts is most of a request's cost."""

    def __init__(self, inner: Embedder, cancel: threading.Event, batch: int) -> None:
        self.inner, self.cancel, self.batch = inner, cancel, batch
        self.model_id, self.dim, self.max_tokens = inner.model_id, inner.dim, inner.max_tokens

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        parts = []
        for i in range(0, len(texts), self.batch):
            raise_if_cancelled(self.cancel)
            parts.append(self.inner.embed_documents(texts[i : i + self.batch]))
        return np.concatenate(parts) if parts else np.zeros((0, self.dim), dtype=np.float32)

    def embed_query(self, text: str) -> np.ndarray:
        raise_if_cancelled(self.cancel)
        return self.inner.embed_query(text)

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)


class _CheckedJudge:
    """Implements SupportJudge by judging ``STATEMENTS_PER_CHECK`` statements at a time through
    ``inner``, checking ``cancel`` before each group: comparing statements with context sentences
    is the other part of the cost."""

    def __init__(self, inner: SupportJudge, cancel: threading.Event) -> None:
        self.inner, self.cancel = inner, cancel

    def judge(self, statement: str, contexts: Sequence[str]) -> Support:
        return self.judge_many([statement], contexts)[0]

    def judge_many(self, statements: Sequence[str], contexts: Sequence[str]) -> list[Support]:
        out: list[Support] = []
        for i in range(0, len(statements), STATEMENTS_PER_CHECK):
            raise_if_cancelled(self.cancel)
            out.extend(judge_all(self.inner, statements[i : i + STATEMENTS_PER_CHECK], contexts))
        return out
