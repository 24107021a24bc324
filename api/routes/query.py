"""POST /v1/query: a grounded answer with citations, or a refusal; optionally streamed.

The route is ``async``: a question waits for the generator in the event loop (``GenerationGate``),
holding no worker thread, and the answer is computed in one worker thread. A client that goes
away (a closed stream, or a dropped connection while waiting) stops its generation and frees the
generator for the next question.

A stream shows only checked text: a `sentence` event for each sentence the support judge accepted,
as soon as it is complete (Pipeline.checked_stream's rules), then the `answer` event. The model's
unchecked draft is streamed (`token` events) only when the request asks for it (`stream_draft`).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import AsyncIterator, Iterator

import anyio
from fastapi import HTTPException, Request
from sse_starlette import EventSourceResponse, ServerSentEvent

from api.cancel import ClientDisconnected, raise_if_cancelled, run_cancellable
from api.collections import Collection
from api.deps import Reader, State, require_generator
from api.errors import error_body, status_of
from api.gate import QueueFull
from api.observability import record_answer
from api.routing import CollectionRoutes
from api.schemas import (
    ErrorBody,
    QueryRequest,
    QueryResponse,
    SentenceEvent,
    filters_over_limit,
    history_over_limit,
    question_over_limit,
)
from api.state import AppState
from rag.conversation import standalone_question
from rag.index.filters import SearchFilter
from rag.pipeline import Answer, CheckedSentence

log = logging.getLogger("rag.api.query")
router = CollectionRoutes(tags=["answers"])

RESPONSES = {
    422: {
        "model": ErrorBody,
        "description": "Invalid body (e.g. a blank or over-long question or history message, too "
        "many filter conditions).",
    },
    429: {
        "model": ErrorBody,
        "description": "Too many questions are already waiting for the generator; retry after "
        "`Retry-After` seconds.",
    },
    502: {"model": ErrorBody, "description": "A remote generator failed or is unreachable."},
    504: {
        "model": ErrorBody,
        "description": "The answer took longer than server.request_timeout_s; its generation was stopped.",
    },
    404: {"model": ErrorBody, "description": "No such collection, or no index in it yet."},
    503: {"model": ErrorBody, "description": "The generator is still loading, or an index file is damaged."},
}
_END = object()  # what next() returns from a finished answer stream


@router.post(
    "/query",
    response_model=QueryResponse,
    responses={
        **RESPONSES,
        200: {
            "content": {"text/event-stream": {}},
            "description": "The answer (JSON), or with `stream: true` server-sent events: a "
            "`sentence` event per checked sentence (`{text, citations}`), then `answer` (QueryResponse), "
            "or `error` with the JSON error body; `token` events (unchecked draft) only with "
            "`stream_draft: true`.",
        },
    },
    summary="Answer a question from the indexed documents",
)
async def query(
    body: QueryRequest, state: State, collection: Reader, request: Request
) -> QueryResponse | EventSourceResponse:
    """Retrieves the top-k chunks, drafts an answer with the generator, and checks each sentence
    against the chunks. `refused` is true (with a fixed message) when retrieval finds nothing
    similar enough or the draft is not supported by the chunks; citations name the chunks that
    support the answer. One answer is generated at a time; when `server.max_waiting_questions`
    are already waiting, the request gets 429 with `Retry-After`."""
    server = state.settings.server
    problem = (
        question_over_limit(body.question, server)
        or _history_over_limit(state, body)
        or history_over_limit(body.history, server)
        or filters_over_limit(body.filters, server)
    )
    if problem:
        raise HTTPException(422, problem)
    require_generator(state)  # after validation: a bad body is a 422 whatever the model's state
    gate = state.gate
    if gate.busy and gate.waiting >= gate.max_waiting:
        raise _busy(QueueFull(gate.waiting, gate.retry_after_s()))
    if body.stream:
        return EventSourceResponse(_events(state, collection, body), ping=state.settings.server.sse_ping_s)
    try:
        async with gate.slot():
            if await request.is_disconnected():  # left while waiting: don't even start
                raise ClientDisconnected
            answer = await run_cancellable(request, lambda cancel: _answer(collection, body, cancel))
    except QueueFull as exc:
        raise _busy(exc) from None
    record_answer(state, answer)
    return _response(body, answer)


def _history_over_limit(state: AppState, body: QueryRequest) -> str | None:
    limit = state.settings.conversation.max_messages
    if body.history and len(body.history) + 1 > limit:
        return (
            f"history: {len(body.history)} messages and the question exceed {limit} "
            "(conversation.max_messages); send the recent part of the conversation"
        )
    return None


def _busy(exc: QueueFull) -> HTTPException:
    return HTTPException(429, str(exc), headers={"Retry-After": str(exc.retry_after_s)})


def _filters(body: QueryRequest) -> SearchFilter | None:
    return body.filters.to_filter() if body.filters else None


def _stream(collection: Collection, body: QueryRequest) -> Iterator[str | CheckedSentence | Answer]:
    """Draft pieces, checked sentences and the Answer, as they happen (Pipeline.events): the
    callers stop between any two of them, so a departed client stops the model within a token.

    A generator function, so nothing runs before the first ``next()``, which the callers make in a
    worker thread inside the generation slot: the history's rewrite (rag.conversation) may call
    the generator too."""
    pipeline = collection.pipeline
    params = body.generation.apply(pipeline.default_params()) if body.generation else None
    question = _standalone(collection, body)
    yield from pipeline.events(
        question,
        body.top_k,
        filters=_filters(body),
        params=params,
        use_cache=body.cache,
        mode=body.mode,
    )


def _standalone(collection: Collection, body: QueryRequest) -> str:
    """The question to search and answer: rewritten from ``history`` when there is one."""
    if not body.history:
        return body.question
    history = [m.as_message() for m in body.history]
    pipeline = collection.pipeline
    return standalone_question(body.question, history, pipeline.generator, collection.settings).question


def _response(body: QueryRequest, answer: Answer) -> QueryResponse:
    response = QueryResponse.from_answer(answer)
    if body.history:
        response.standalone_question = answer.question
    return response


def _answer(collection: Collection, body: QueryRequest, cancel: threading.Event) -> Answer:
    """Runs in a worker thread; stops between tokens once ``cancel`` is set (the client left)."""
    stream = _stream(collection, body)
    try:
        for item in stream:
            raise_if_cancelled(cancel)
            if isinstance(item, Answer):
                return item
    finally:
        stream.close()  # closes the generator's own stream, which stops the model
    raise RuntimeError("the answer stream ended without an answer")


async def _events(
    state: AppState, collection: Collection, body: QueryRequest
) -> AsyncIterator[ServerSentEvent]:
    """`sentence` events (or `token` events with ``stream_draft``), then one `answer` event; any
    error becomes an `error` event.

    sse-starlette cancels this generator when the client disconnects; the ``finally`` then closes
    the answer stream (shielded from that cancellation) before the generator is released. Items
    are fetched one at a time (a token at most), so that happens within a token.
    """
    try:
        async with state.gate.slot() as ticket:
            stream = _stream(collection, body)
            try:
                while (item := await anyio.to_thread.run_sync(next, stream, _END)) is not _END:
                    ticket.check()  # past server.request_timeout_s: GenerationTimeout, a 504 event
                    if isinstance(item, Answer):
                        record_answer(state, item)
                    event = _event(body, item)
                    if event is not None:
                        yield event
            finally:
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(stream.close)
    except QueueFull as exc:
        yield _error_event(429, str(exc))
    except Exception as exc:
        status = status_of(exc)
        if status >= 500 and status not in (502, 503, 504):
            log.exception("streamed answer failed")
        yield _error_event(status, error_body(exc))


def _event(body: QueryRequest, item: str | CheckedSentence | Answer) -> ServerSentEvent | None:
    """The event an item of the answer stream becomes; None for what this stream does not show
    (draft pieces unless asked for, checked sentences when the draft is streamed instead)."""
    draft = body.stream_draft
    if isinstance(item, Answer):
        return ServerSentEvent(_response(body, item).model_dump_json(), event="answer")
    if isinstance(item, CheckedSentence):
        return None if draft else ServerSentEvent(SentenceEvent.of(item).model_dump_json(), event="sentence")
    return ServerSentEvent(json.dumps({"text": item}), event="token") if draft else None


def _error_event(status: int, message: str) -> ServerSentEvent:
    return ServerSentEvent(json.dumps({"error": message, "status": status}), event="error")
