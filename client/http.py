"""A small typed client of the service's HTTP API (httpx): search, answers (whole or streamed as
server-sent events), health, and uploads with their jobs. ``RagClient`` is synchronous,
``AsyncRagClient`` the same calls for asyncio. Every failure, an error status or no answer at
all, is one exception, ``RagClientError``, carrying the server's own error message."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import ExitStack, asynccontextmanager, contextmanager
from itertools import chain
from os import PathLike
from pathlib import Path
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from client.models import (
    Answer,
    Filters,
    Health,
    Hit,
    Job,
    JobAccepted,
    RetrievalMode,
    SearchResponse,
    StreamText,
)

# An answer may wait behind other questions for the one generator (tens of seconds each), so the
# default read timeout is generous; connecting to a live server takes milliseconds.
DEFAULT_TIMEOUT_S = 300.0
CONNECT_TIMEOUT_S = 10.0
JOB_POLL_S = 0.5
DEFAULT_JOB_WAIT_S = 600.0
ERROR_TEXT_CHARS = 500  # of a non-JSON error body (a proxy's HTML page), quoted in the message

SEARCH, QUERY, HEALTH, DOCUMENTS, JOBS = "/v1/search", "/v1/query", "/healthz", "/v1/documents", "/v1/jobs"
TEXT_EVENTS = frozenset({"sentence", "token"})  # checked sentences, or the draft's tokens
ANSWER_EVENT, ERROR_EVENT = "answer", "error"
DEFAULT_EVENT = "message"  # the SSE name of an event without an `event:` line
END_OF_STREAM = ""  # fed after the last line: a blank line ends an event the stream left open

ModelT = TypeVar("ModelT", bound=BaseModel)
FiltersArg = Filters | dict[str, Any] | None
# The conversation before a follow-up question, oldest first: {"role": "user" | "assistant", "content"}.
History = Sequence[dict[str, str]] | None


class RagClientError(Exception):
    """A request failed. ``status`` is the HTTP status (None when no response came: the server
    was unreachable or timed out, or a stream broke off); ``message`` is the server's error text,
    which says what was wrong and how to fix it; ``detail`` the per-field problems of a 422;
    ``retry_after_s`` the server's Retry-After (429 queue full, 503 generator loading)."""

    def __init__(
        self,
        status: int | None,
        message: str,
        detail: Any = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(f"{status}: {message}" if status is not None else message)
        self.status = status
        self.message = message
        self.detail = detail
        self.retry_after_s = retry_after_s


def _timeout(timeout: float | httpx.Timeout) -> httpx.Timeout:
    if isinstance(timeout, httpx.Timeout):
        return timeout
    return httpx.Timeout(timeout, connect=min(CONNECT_TIMEOUT_S, timeout))


def _client_options(base_url: str, api_key: str | None, timeout: float | httpx.Timeout) -> dict[str, Any]:
    """What both clients are built with; a base URL without a scheme is refused here, not at the
    first request (httpx would otherwise fail with a less helpful message)."""
    if not base_url.startswith(("http://", "https://")):
        raise ValueError(
            f"base_url {base_url!r} must start with http:// or https://, e.g. http://127.0.0.1:8000"
        )
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    return {"base_url": base_url.rstrip("/"), "headers": headers, "timeout": _timeout(timeout)}


def _filters(filters: FiltersArg) -> dict[str, Any] | None:
    if filters is None:
        return None
    model = filters if isinstance(filters, Filters) else Filters.model_validate(filters)
    return model.model_dump(exclude_none=True)


def _body(**fields: Any) -> dict[str, Any]:
    """A request body without the fields left out, so the server's configured defaults apply."""
    return {name: value for name, value in fields.items() if value is not None}


def _search_body(query: str, top_k: int | None, mode: RetrievalMode | None, filters: FiltersArg) -> dict:
    return _body(query=query, top_k=top_k, mode=mode, filters=_filters(filters))


def _query_body(
    question: str,
    top_k: int | None,
    mode: RetrievalMode | None,
    filters: FiltersArg,
    generation: dict[str, Any] | None,
    cache: bool | None,
    history: History,
    stream: bool = False,
    draft: bool = False,
) -> dict:
    fields = {"top_k": top_k, "mode": mode, "filters": _filters(filters), "generation": generation}
    fields["history"] = list(history) if history is not None else None
    streamed = {"stream": stream or None, "stream_draft": draft or None}
    return _body(question=question, cache=cache, **streamed, **fields)


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return float(response.headers["Retry-After"])
    except (KeyError, ValueError):
        return None


def _error_of(response: httpx.Response) -> RagClientError:
    """The server's error body ``{"error", "detail"?}`` as an exception; a body of another shape
    (not this service, or a proxy in between) is quoted instead."""
    try:
        body = response.json()
        message, detail = str(body["error"]), body.get("detail")
    except (ValueError, KeyError, TypeError):
        text = response.text[:ERROR_TEXT_CHARS] or response.reason_phrase
        message, detail = f"{response.request.method} {response.request.url}: {text}", None
    return RagClientError(response.status_code, message, detail, _retry_after(response))


def _parse(response: httpx.Response, model: type[ModelT]) -> ModelT:
    if response.is_error:
        raise _error_of(response)
    try:
        return model.model_validate_json(response.content)
    except ValidationError as exc:
        raise RagClientError(
            response.status_code,
            f"{response.request.url} answered a body that is not a {model.__name__} "
            f"(is base_url the rag service?): {exc}",
        ) from exc


def _unreachable(exc: httpx.TransportError, base_url: httpx.URL) -> RagClientError:
    """No response (refused, timed out, broken off): the message names the request and the server."""
    try:
        where = f"{exc.request.method} {exc.request.url}"
    except RuntimeError:  # an error raised before httpx built the request
        where = str(base_url)
    kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "failed"
    return RagClientError(None, f"{where} {kind}: {exc!r}; is `rag serve` running at {base_url}?")


class SseParser:
    """Turns the lines of a text/event-stream into (event, data) pairs, one line at a time (so the
    sync and the async stream share it and each event is handed on as soon as it ends). Comments
    (the server's keep-alive pings) are skipped; multi-line data is joined with newlines, as the
    SSE specification says."""

    def __init__(self) -> None:
        self._event: str = DEFAULT_EVENT
        self._data: list[str] = []

    def feed(self, line: str) -> tuple[str, str] | None:
        """The event that ``line`` ends (a blank line ends one), else None."""
        if not line:
            return self._dispatch()
        if not line.startswith(":"):
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "event":
                self._event = value
            elif name == "data":
                self._data.append(value)
        return None

    def _dispatch(self) -> tuple[str, str] | None:
        event, data = self._event, self._data
        self._event, self._data = DEFAULT_EVENT, []
        return (event, "\n".join(data)) if data else None


def stream_item(event: str, data: str) -> StreamText | Answer | None:
    """One server-sent event of /v1/query as a model; an ``error`` event is raised; an event this
    client does not know is None (skipped), so a server that adds one does not break it."""
    if event == ANSWER_EVENT:
        return Answer.model_validate_json(data)
    if event == ERROR_EVENT:
        body = json.loads(data)
        raise RagClientError(body.get("status"), str(body.get("error", data)))
    if event in TEXT_EVENTS:
        return StreamText.model_validate({**json.loads(data), "event": event})
    return None


def _item(event: tuple[str, str] | None) -> StreamText | Answer | None:
    return None if event is None else stream_item(*event)


async def _lines(response: httpx.Response) -> AsyncIterator[str]:
    async for line in response.aiter_lines():
        yield line
    yield END_OF_STREAM


def _no_answer() -> RagClientError:
    return RagClientError(None, "the answer stream ended before its answer event (the connection broke off)")


def _upload_parts(paths: Sequence[str | PathLike[str]], stack: ExitStack) -> list[tuple[str, Any]]:
    """Multipart ``files`` parts, each file opened in ``stack`` and streamed, never read whole."""
    parts = []
    for path in map(Path, paths):
        parts.append(("files", (path.name, stack.enter_context(path.open("rb")))))
    return parts


class RagClient:
    """Synchronous client: ``RagClient("http://127.0.0.1:8000").search("...")``. ``api_key`` is the
    server's admin key, needed only to upload. Use it as a context manager, or ``close()`` it."""

    def __init__(
        self, base_url: str, api_key: str | None = None, timeout: float | httpx.Timeout = DEFAULT_TIMEOUT_S
    ) -> None:
        self._http = httpx.Client(**_client_options(base_url, api_key, timeout))

    def __enter__(self) -> RagClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    @contextmanager
    def _reaching(self) -> Iterator[None]:
        try:
            yield
        except httpx.TransportError as exc:
            raise _unreachable(exc, self._http.base_url) from exc

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        with self._reaching():
            return self._http.request(method, path, **kwargs)

    def search(
        self,
        query: str,
        top_k: int | None = None,
        mode: RetrievalMode | None = None,
        filters: FiltersArg = None,
    ) -> list[Hit]:
        """Ranked chunks for ``query`` (POST /v1/search); no generation, so it works before the
        server's generator has loaded. Left-out arguments take the server's configured defaults."""
        body = _search_body(query, top_k, mode, filters)
        return _parse(self._send("POST", SEARCH, json=body), SearchResponse).results

    def query(
        self,
        question: str,
        top_k: int | None = None,
        mode: RetrievalMode | None = None,
        filters: FiltersArg = None,
        generation: dict[str, Any] | None = None,
        cache: bool | None = None,
        history: History = None,
    ) -> Answer:
        """The grounded answer with citations, or a refusal (POST /v1/query, not streamed).
        ``generation`` holds sampling settings (max_tokens, temperature, seed, ...); ``history``
        the conversation before a follow-up, which the server rewrites into a standalone
        question (``Answer.standalone_question``) before retrieval."""
        body = _query_body(question, top_k, mode, filters, generation, cache, history)
        return _parse(self._send("POST", QUERY, json=body), Answer)

    def stream(
        self,
        question: str,
        top_k: int | None = None,
        mode: RetrievalMode | None = None,
        filters: FiltersArg = None,
        generation: dict[str, Any] | None = None,
        cache: bool | None = None,
        history: History = None,
        draft: bool = False,
    ) -> Iterator[StreamText | Answer]:
        """The answer as it is made: ``StreamText`` items, then the final ``Answer``. They are the
        checked ``sentence``s, or with ``draft=True`` the model's unchecked ``token``s (sooner, but
        they may hold what grounding withholds). Stopping the iteration closes the stream, which
        stops the generation."""
        body = _query_body(
            question, top_k, mode, filters, generation, cache, history, stream=True, draft=draft
        )
        with self._reaching(), self._http.stream("POST", QUERY, json=body) as response:
            if response.is_error:
                response.read()
                raise _error_of(response)
            parser = SseParser()
            for line in chain(response.iter_lines(), [END_OF_STREAM]):
                if (item := _item(parser.feed(line))) is not None:
                    yield item
                    if isinstance(item, Answer):
                        return
        raise _no_answer()

    def health(self) -> Health:
        """GET /healthz: whether questions can be answered now, and what the index holds."""
        return _parse(self._send("GET", HEALTH), Health)

    def upload(
        self, paths: Sequence[str | PathLike[str]], metadata: dict[str, dict[str, Any]] | None = None
    ) -> JobAccepted:
        """Upload files (each becomes ``uploads/<name>``) with optional metadata keyed by file
        name; needs the admin key. Indexing runs in a job: ``job()`` or ``wait_for_job()``."""
        with ExitStack() as stack:
            files = _upload_parts(paths, stack)
            data = {"metadata": json.dumps(metadata)} if metadata else None
            return _parse(self._send("POST", DOCUMENTS, files=files, data=data), JobAccepted)

    def job(self, job_id: str) -> Job:
        """GET /v1/jobs/{id}: an upload job's progress, or its outcome once finished."""
        return _parse(self._send("GET", f"{JOBS}/{job_id}"), Job)

    def wait_for_job(self, job_id: str, timeout_s: float = DEFAULT_JOB_WAIT_S) -> Job:
        """Poll the job until it has succeeded or failed; TimeoutError after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while not (job := self.job(job_id)).finished:
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job.status} after {timeout_s} s (stage {job.stage})")
            time.sleep(JOB_POLL_S)
        return job


class AsyncRagClient:
    """``RagClient``'s reading calls for asyncio (httpx.AsyncClient): search, query, stream,
    health, job. Use it as an async context manager, or ``await aclose()``."""

    def __init__(
        self, base_url: str, api_key: str | None = None, timeout: float | httpx.Timeout = DEFAULT_TIMEOUT_S
    ) -> None:
        self._http = httpx.AsyncClient(**_client_options(base_url, api_key, timeout))

    async def __aenter__(self) -> AsyncRagClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    @asynccontextmanager
    async def _reaching(self) -> AsyncIterator[None]:
        try:
            yield
        except httpx.TransportError as exc:
            raise _unreachable(exc, self._http.base_url) from exc

    async def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        async with self._reaching():
            return await self._http.request(method, path, **kwargs)

    async def search(
        self,
        query: str,
        top_k: int | None = None,
        mode: RetrievalMode | None = None,
        filters: FiltersArg = None,
    ) -> list[Hit]:
        """As ``RagClient.search``."""
        body = _search_body(query, top_k, mode, filters)
        return _parse(await self._send("POST", SEARCH, json=body), SearchResponse).results

    async def query(
        self,
        question: str,
        top_k: int | None = None,
        mode: RetrievalMode | None = None,
        filters: FiltersArg = None,
        generation: dict[str, Any] | None = None,
        cache: bool | None = None,
        history: History = None,
    ) -> Answer:
        """As ``RagClient.query``."""
        body = _query_body(question, top_k, mode, filters, generation, cache, history)
        return _parse(await self._send("POST", QUERY, json=body), Answer)

    async def stream(
        self,
        question: str,
        top_k: int | None = None,
        mode: RetrievalMode | None = None,
        filters: FiltersArg = None,
        generation: dict[str, Any] | None = None,
        cache: bool | None = None,
        history: History = None,
        draft: bool = False,
    ) -> AsyncIterator[StreamText | Answer]:
        """As ``RagClient.stream``."""
        body = _query_body(
            question, top_k, mode, filters, generation, cache, history, stream=True, draft=draft
        )
        async with self._reaching(), self._http.stream("POST", QUERY, json=body) as response:
            if response.is_error:
                await response.aread()
                raise _error_of(response)
            parser = SseParser()
            async for line in _lines(response):
                if (item := _item(parser.feed(line))) is not None:
                    yield item
                    if isinstance(item, Answer):
                        return
        raise _no_answer()

    async def health(self) -> Health:
        """As ``RagClient.health``."""
        return _parse(await self._send("GET", HEALTH), Health)

    async def job(self, job_id: str) -> Job:
        """As ``RagClient.job``."""
        return _parse(await self._send("GET", f"{JOBS}/{job_id}"), Job)
