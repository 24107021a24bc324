"""POST /v1/evaluate: score one (question, answer, contexts[, reference]) with the support judge.

The same metrics as `rag eval` with the deterministic judge (no LLM: a request takes tens of
milliseconds), so a client can check an answer from any system against its contexts.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter
from pydantic import BaseModel, Field

from api.deps import State
from eval.metrics import (
    answer_correctness,
    answer_relevance_embedding,
    context_precision,
    context_recall,
    context_relevance,
    faithfulness,
)
from rag.grounding.answer import is_refusal
from rag.grounding.support import LexicalSupportJudge
from rag.grounding.text import strip_markers

router = APIRouter(tags=["evaluate"])


class EvaluateRequest(BaseModel):
    question: str = Field(min_length=1, max_length=4000)
    answer: str = Field(max_length=20_000)
    contexts: list[Annotated[str, Field(max_length=20_000)]] = Field(
        min_length=1, max_length=50, description="The passages the answer was written from (at most 50)."
    )
    reference: str | None = Field(
        None, max_length=20_000, description="A reference answer, for correctness and context metrics."
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
    summary="Score one answer against its contexts (faithfulness, relevance; correctness with a reference)",
)
def evaluate(body: EvaluateRequest, state: State) -> EvaluateResponse:
    started = time.perf_counter()
    embedder = state.pipeline.embedder
    judge = LexicalSupportJudge(state.settings.grounding, embedder)
    answer = strip_markers(body.answer).strip()
    refused = not answer or is_refusal(answer)
    out = EvaluateResponse(
        refused=refused,
        faithfulness=None,
        answer_relevance=None,
        context_relevance=context_relevance(body.question, body.contexts, embedder),
    )
    if not refused:
        out.faithfulness, verdicts = faithfulness(answer, body.contexts, judge)
        out.statements = [StatementOut(**asdict(v)) for v in verdicts]
        out.answer_relevance = answer_relevance_embedding(body.question, answer, embedder)
        if body.reference:
            c = answer_correctness(answer, body.reference, judge, embedder)
            out.answer_correctness = c.score if c else None
    if body.reference:
        out.context_precision, _ = context_precision(body.reference, body.contexts, judge)
        out.context_recall, _ = context_recall(body.reference, body.contexts, judge)
    out.timings = {"evaluate_ms": round((time.perf_counter() - started) * 1000, 1)}
    return out
