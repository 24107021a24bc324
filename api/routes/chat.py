"""The OpenAI-compatible API: POST /v1/chat/completions and GET /v1/models.

A chat request is a question with its conversation: the last message (the user's) is rewritten
into a standalone question from the messages before it (rag.conversation), which is then
answered exactly as POST /v1/query answers: retrieve, generate, check every sentence, cite. The
rewrite uses the generator too, so it runs inside the same generation slot as the answer.

Streaming shows checked text only: each sentence goes out once the support judge has accepted it
(``Pipeline.events``, whose unchecked draft pieces are only points to stop at), never the draft.
Bodies are in api/openai_schemas.py; errors on these routes are in OpenAI's shape (api/errors.py),
so the SDK raises its own exceptions.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

import anyio
from fastapi import Depends, HTTPException, Request
from sse_starlette import EventSourceResponse, ServerSentEvent

from api.cancel import ClientDisconnected, raise_if_cancelled, run_cancellable
from api.collections import Collection
from api.deps import Caller, State, authenticate, authorize, require_generator
from api.errors import FieldError, error_body, openai_error, openai_shaped, status_of
from api.gate import QueueFull
from api.keys import Principal
from api.observability import record_answer
from api.openai_schemas import (
    AssistantMessage,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Choice,
    ChunkChoice,
    CompletionUsage,
    Delta,
    ModelCard,
    ModelList,
    OpenAIErrorBody,
    RagInfo,
)
from api.routing import CollectionRoutes
from api.schemas import Citation, FlaggedChunk, filters_over_limit, message_over_limit, question_over_limit
from api.state import AppState
from rag.collections import DEFAULT_COLLECTION
from rag.config import ServerSettings, Settings
from rag.conversation import Rewrite, standalone_question
from rag.pipeline import Answer, CheckedSentence
from rag.protocols import GenerationParams, Message

log = logging.getLogger("rag.api.chat")
router = CollectionRoutes(tags=["openai"])

OWNER = "rag-service"
STARTED = int(time.time())  # the models' "created": when this process loaded the routes
_END = object()  # what next() returns from a finished answer stream


def _error(description: str) -> dict[str, Any]:
    return {"model": OpenAIErrorBody, "description": description}


RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _error(
        "Invalid body: a blank or over-long question, a last message not from the user, "
        "too many or over-long messages, too many filter conditions, an unsupported OpenAI "
        "parameter, an unknown field."
    ),
    429: _error("Too many questions are waiting for the generator; retry after `Retry-After` seconds."),
    502: _error("A remote generator failed or is unreachable."),
    404: _error("Unknown model (GET /v1/models lists them) or collection, or no index in it yet."),
    503: _error("The generator is still loading, or an index file is damaged."),
    504: _error("The answer took longer than server.request_timeout_s; its generation was stopped."),
}


@dataclass(frozen=True)
class Turn:
    """The request's question and the conversation before it."""

    question: str
    history: list[Message]


# ----------------------------------------------------------------------------------- models


def model_ids(settings: Settings) -> list[str]:
    """The configured generator, by the name the config gives it (a .gguf path by its file name:
    the server's disk layout is none of a client's business)."""
    model = settings.generator.model
    return [PurePath(model).name if model.endswith(".gguf") else model]


def served_model(settings: Settings, name: str) -> str:
    if name not in model_ids(settings):
        raise FieldError(
            404,
            f"the model {name!r} does not exist on this server; it serves {', '.join(model_ids(settings))} "
            "(GET /v1/models)",
            param="model",
            code="model_not_found",
        )
    return name


@router.get(
    "/models",
    response_model=ModelList,
    dependencies=[Depends(authenticate)],
    summary="The models a chat request may name",
)
async def list_models(state: State) -> ModelList:
    """The configured generator(s), in OpenAI's list shape."""
    return ModelList(
        data=[ModelCard(id=m, created=STARTED, owned_by=OWNER) for m in model_ids(state.settings)]
    )


@router.get(
    "/models/{model:path}",
    response_model=ModelCard,
    dependencies=[Depends(authenticate)],
    responses={404: _error("Unknown model.")},
    summary="One model",
)
async def get_model(model: str, state: State) -> ModelCard:
    return ModelCard(id=served_model(state.settings, model), created=STARTED, owned_by=OWNER)


# ------------------------------------------------------------------------------------- chat


@router.post(
    "/chat/completions",
    response_model=ChatCompletion,
    responses={
        **RESPONSES,
        200: {
            "content": {"text/event-stream": {}},
            "description": "A `chat.completion` (JSON), or with `stream: true` server-sent "
            "`chat.completion.chunk` events and `[DONE]`.",
        },
    },
    summary="Answer the last question of a conversation (OpenAI chat protocol)",
)
async def chat_completions(
    body: ChatCompletionRequest, state: State, caller: Caller, request: Request
) -> ChatCompletion | EventSourceResponse:
    """A grounded answer to the last (user) message, in OpenAI's chat format. A follow-up is
    rewritten into a standalone question first (`rag.question` says what was searched); the
    citations are in `choices[0].message.references`, a refusal is a normal reply whose
    `refused` is true. Retrieval options (`top_k`, `filters`, `mode`, `collection`, `cache`) go in
    the body beside OpenAI's fields (the SDK's `extra_body`)."""
    model = served_model(state.settings, body.model)
    collection = _collection(state, caller, body, request)
    turn = _turn(body, state.settings)
    require_generator(state)  # after validation: a bad body is a 400 whatever the model's state
    gate = state.gate
    if gate.busy and gate.waiting >= gate.max_waiting:
        raise _busy(QueueFull(gate.waiting, gate.retry_after_s()))
    if body.stream:
        chunks = _chunks(state, collection, body, turn, model)
        return EventSourceResponse(chunks, ping=state.settings.server.sse_ping_s)
    try:
        async with gate.slot():
            if await request.is_disconnected():  # left while waiting: don't even start
                raise ClientDisconnected
            rewrite, answer = await run_cancellable(
                request, lambda cancel: _reply(state, collection, body, turn, cancel)
            )
    except QueueFull as exc:
        raise _busy(exc) from None
    record_answer(state, answer)
    return completion(answer, rewrite, model, _params(state, body))


def _turn(body: ChatCompletionRequest, settings: Settings) -> Turn:
    limit = settings.conversation.max_messages
    if len(body.messages) > limit:
        raise FieldError(
            400,
            f"messages: {len(body.messages)} messages; the limit is {limit} (conversation.max_messages): "
            "send the recent part of the conversation",
            param="messages",
            code="too_many_messages",
        )
    question = body.messages[-1].text
    problem = question_over_limit(question, settings.server)
    if problem:
        raise FieldError(
            400, f"messages: the last message is the question, and the {problem}", param="messages"
        )
    _check_sizes(body, settings.server)
    history: list[Message] = [{"role": m.role, "content": m.text} for m in body.messages[:-1]]
    return Turn(question, history)


def _check_sizes(body: ChatCompletionRequest, server: ServerSettings) -> None:
    """Every message within server.max_message_chars, the filters within server.max_filters: a
    400 naming the field, as OpenAI's own size errors do."""
    for i, message in enumerate(body.messages):
        problem = message_over_limit(message.text, server, f"messages[{i}]")
        if problem:
            raise FieldError(400, problem, param=f"messages[{i}]", code="message_too_long")
    problem = filters_over_limit(body.filters, server)
    if problem:
        raise FieldError(400, problem, param="filters", code="too_many_filters")


def _collection(
    state: AppState, caller: Principal | None, body: ChatCompletionRequest, request: Request
) -> Collection:
    """The collection to answer from: the path's (/v1/collections/{name}/chat/completions, for an
    SDK whose base_url is /v1/collections/{name}), else the body's ``collection``, else the
    default; the two may not disagree. Errors in OpenAI's shape, naming the field."""
    path = request.path_params.get("collection")
    if path is not None and body.collection not in (None, path):
        raise FieldError(
            400,
            f"collection {body.collection!r} in the body disagrees with {path!r} in the path; send one",
            param="collection",
        )
    name = path or body.collection or DEFAULT_COLLECTION
    try:
        return authorize(state, caller, name, "read", request)
    except HTTPException as exc:
        code = {401: "invalid_api_key", 403: "permission_denied", 404: "collection_not_found"}.get(
            exc.status_code
        )
        raise FieldError(exc.status_code, str(exc.detail), param="collection", code=code) from None


def _busy(exc: QueueFull) -> FieldError:
    headers = {"Retry-After": str(exc.retry_after_s)}
    return FieldError(429, str(exc), code="rate_limit_exceeded", headers=headers)


def _params(state: AppState, body: ChatCompletionRequest) -> GenerationParams:
    return body.params(state.pipeline.default_params())


def _rewrite(state: AppState, turn: Turn) -> Rewrite:
    return standalone_question(turn.question, turn.history, state.pipeline.generator, state.settings)


def _answer_stream(
    collection: Collection, body: ChatCompletionRequest, question: str
) -> Iterator[str | CheckedSentence | Answer]:
    """Everything as it happens (Pipeline.events): draft pieces (UNCHECKED: never sent, but a
    point between tokens to notice a departed client), checked sentences, then the Answer."""
    pipeline = collection.pipeline
    return pipeline.events(
        question,
        body.top_k,
        filters=body.filters.to_filter() if body.filters else None,
        params=body.params(pipeline.default_params()),
        use_cache=body.cache,
        mode=body.mode,
    )


def _reply(
    state: AppState, collection: Collection, body: ChatCompletionRequest, turn: Turn, cancel: threading.Event
) -> tuple[Rewrite, Answer]:
    """Runs in a worker thread: rewrite, then answer; stops between tokens once ``cancel`` is
    set (the client left, or the slot's deadline passed)."""
    rewrite = _rewrite(state, turn)
    raise_if_cancelled(cancel)
    stream = _answer_stream(collection, body, rewrite.question)
    try:
        for item in stream:
            raise_if_cancelled(cancel)
            if isinstance(item, Answer):
                return rewrite, item
    finally:
        stream.close()  # closes the generator's own stream, which stops the model
    raise RuntimeError("the answer stream ended without an answer")


# ------------------------------------------------------------------------ response building


def completion(answer: Answer, rewrite: Rewrite, model: str, params: GenerationParams) -> ChatCompletion:
    message = AssistantMessage(content=answer.answer, references=_references(answer), refused=answer.refused)
    return ChatCompletion(
        id=_completion_id(),
        created=int(time.time()),
        model=model,
        choices=[Choice(message=message, finish_reason=_finish_reason(answer, params))],
        usage=_usage(answer, rewrite),
        rag=_rag_info(answer, rewrite),
    )


def _references(answer: Answer) -> list[Citation]:
    return [Citation.of(c) for c in answer.citations]


def _finish_reason(answer: Answer, params: GenerationParams) -> str:
    """ "length" when the model wrote its whole token allowance (the answer may be cut short)."""
    written = answer.usage.get("completion_tokens", 0) if not answer.cached else 0
    return "length" if not answer.refused and written >= params.max_tokens else "stop"


def _usage(answer: Answer, rewrite: Rewrite) -> CompletionUsage:
    generated = answer.usage if answer.usage and not answer.cached else {}
    prompt = int(generated.get("prompt_tokens", 0) + rewrite.usage.get("prompt_tokens", 0))
    completion_ = int(generated.get("completion_tokens", 0) + rewrite.usage.get("completion_tokens", 0))
    return CompletionUsage(
        prompt_tokens=prompt, completion_tokens=completion_, total_tokens=prompt + completion_
    )


def _rag_info(answer: Answer, rewrite: Rewrite) -> RagInfo:
    return RagInfo(
        question=rewrite.question,
        rewrite=rewrite.method,  # type: ignore[arg-type]
        rewrite_reason=rewrite.reason,
        refused=answer.refused,
        reason=answer.reason,
        cached=answer.cached,
        index_version=answer.index_version,
        timings={"condense_ms": round(rewrite.seconds * 1000, 1), **answer.timings},
        flagged=[FlaggedChunk.of(f) for f in answer.flagged],
    )


def _completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


# -------------------------------------------------------------------------------- streaming


@dataclass(frozen=True)
class _Frame:
    """What every chunk of one streamed reply shares (OpenAI: the same id and created)."""

    id: str
    created: int
    model: str

    def event(self, chunk_fields: dict[str, Any]) -> ServerSentEvent:
        chunk = ChatCompletionChunk(id=self.id, created=self.created, model=self.model, **chunk_fields)
        return ServerSentEvent(chunk.model_dump_json(exclude_none=True))

    def text(self, content: str, role: str | None = None) -> ServerSentEvent:
        return self.event({"choices": [ChunkChoice(delta=Delta(role=role, content=content))]})


async def _chunks(
    state: AppState, collection: Collection, body: ChatCompletionRequest, turn: Turn, model: str
) -> AsyncIterator[ServerSentEvent]:
    """The role chunk at once, then one chunk per checked sentence, the closing chunks and
    ``[DONE]``; a failure after the start is a chunk with OpenAI's error body (the SDK raises it).

    sse-starlette cancels this generator when the client disconnects; the ``finally`` then closes
    the answer stream (shielded from that cancellation) before the generator is released."""
    frame = _Frame(_completion_id(), int(time.time()), model)
    yield frame.text("", role="assistant")
    try:
        async with state.gate.slot() as ticket:
            rewrite = await anyio.to_thread.run_sync(_rewrite, state, turn)
            stream = _answer_stream(collection, body, rewrite.question)
            shown = False
            try:
                while (item := await anyio.to_thread.run_sync(next, stream, _END)) is not _END:
                    ticket.check()  # past server.request_timeout_s: GenerationTimeout, a 504 chunk
                    if isinstance(item, CheckedSentence):
                        shown = True
                        yield frame.text(item.text)
                    elif isinstance(item, Answer):
                        record_answer(state, item)
                        for event in _closing(frame, item, rewrite, body, _params(state, body), shown):
                            yield event
            finally:
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(stream.close)
    except QueueFull as exc:
        yield _error_event(429, str(exc), "rate_limit_exceeded")
    except Exception as exc:
        status = status_of(exc)
        if status >= 500 and status not in (502, 503, 504):
            log.exception("streamed chat answer failed")
        yield _error_event(status, error_body(exc))


def _closing(
    frame: _Frame,
    answer: Answer,
    rewrite: Rewrite,
    body: ChatCompletionRequest,
    params: GenerationParams,
    shown: bool,
) -> list[ServerSentEvent]:
    """After the Answer: the refusal message if it is one (after a blank line when sentences were
    already shown: they cannot be taken back, and the final chunk says ``refused``), the final
    chunk with ``finish_reason`` and our fields, the usage chunk if asked for, and ``[DONE]``."""
    events: list[ServerSentEvent] = []
    if answer.refused:
        events.append(frame.text(f"\n\n{answer.answer}" if shown else answer.answer))
    elif not shown and answer.answer:  # nothing was streamed (e.g. an answer from elsewhere)
        events.append(frame.text(answer.answer))
    usage = _usage(answer, rewrite)
    separate_usage = bool(body.stream_options and body.stream_options.include_usage)
    final = ChunkChoice(delta=Delta(), finish_reason=_finish_reason(answer, params))  # type: ignore[arg-type]
    events.append(
        frame.event(
            {
                "choices": [final],
                "usage": None if separate_usage else usage,
                "references": _references(answer),
                "refused": answer.refused,
                "rag": _rag_info(answer, rewrite),
            }
        )
    )
    if separate_usage:
        events.append(frame.event({"choices": [], "usage": usage}))
    events.append(ServerSentEvent("[DONE]"))
    return events


def _error_event(status: int, message: str, code: str | None = None) -> ServerSentEvent:
    body = openai_error(status, message, code=code)
    body["error"]["status"] = status  # ours: the status it would have had before the stream began
    return ServerSentEvent(json.dumps(body))


# ----------------------------------------------------------------------------- OpenAPI schema


def document_errors(schema: dict[str, Any]) -> None:
    """Correct the generated schema for these routes: their errors have OpenAI's shape and an
    invalid body is a 400 (FastAPI documents a 422 with its own body), as api/errors.py sends."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for model in (OpenAIErrorBody,):
        components[model.__name__] = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(components[model.__name__].pop("$defs", {}))
    ref = {"$ref": f"#/components/schemas/{OpenAIErrorBody.__name__}"}
    error = {"content": {"application/json": {"schema": ref}}}
    for path, item in schema.get("paths", {}).items():
        if not openai_shaped(path):
            continue
        for operation in item.values():
            responses = operation.setdefault("responses", {})
            invalid = responses.pop("422", None)
            if invalid is not None:
                responses.setdefault("400", {"description": "Invalid request."})
            for status, response in responses.items():
                if status[0] in "45":
                    response.update(error)
