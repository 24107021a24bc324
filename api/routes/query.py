"""POST /v1/query: a grounded answer with citations, or a refusal; optionally streamed."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

from fastapi import APIRouter, HTTPException
from fastapi.responses import StreamingResponse

from api.deps import ReadyState
from api.schemas import ErrorBody, QueryRequest, QueryResponse
from rag.index.filters import SearchFilter
from rag.pipeline import Answer

router = APIRouter(tags=["answers"])
# One generation at a time: the local model uses every core, so parallel calls only slow each other.
_generation = threading.Lock()

RESPONSES = {
    422: {"model": ErrorBody, "description": "Invalid body (e.g. blank or over-long question)."},
    503: {"model": ErrorBody, "description": "No index yet, or the generator is still loading."},
}


@router.post(
    "/v1/query",
    response_model=QueryResponse,
    responses={**RESPONSES, 200: {"content": {"text/event-stream": {}}}},
    summary="Answer a question from the indexed documents",
)
def query(body: QueryRequest, state: ReadyState) -> QueryResponse | StreamingResponse:
    """Retrieves the top-k chunks, drafts an answer with the generator, and checks each sentence
    against the chunks. `refused` is true (with a fixed message) when retrieval finds nothing
    similar enough or the draft is not supported by the chunks; citations name the chunks that
    support the answer."""
    limit = state.settings.server.max_question_chars
    if len(body.question) > limit:
        raise HTTPException(422, f"question is {len(body.question)} characters; the limit is {limit}")
    if body.stream:
        return StreamingResponse(_events(state, body), media_type="text/event-stream")
    with _generation:
        answer = state.pipeline.answer(body.question, body.top_k, filters=_filters(body))
    return QueryResponse.from_answer(answer)


def _filters(body: QueryRequest) -> SearchFilter | None:
    return body.filters.to_filter() if body.filters else None


def _events(state: ReadyState, body: QueryRequest) -> Iterator[str]:
    with _generation:
        for item in state.pipeline.answer_stream(body.question, body.top_k, filters=_filters(body)):
            if isinstance(item, Answer):
                yield _sse("answer", QueryResponse.from_answer(item).model_dump_json())
            else:
                yield _sse("token", json.dumps({"text": item}))


def _sse(event: str, data: str) -> str:
    return f"event: {event}\ndata: {data}\n\n"
