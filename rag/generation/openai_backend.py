"""Generator over any OpenAI-compatible chat-completions endpoint (vLLM, llama.cpp server,
Ollama, OpenAI). This is how a GPU server or a faster engine plugs in without code changes.

Transient failures (connect errors, timeouts, dropped connections, 429 and 5xx) are retried with
tenacity: ``generator.retry_attempts`` attempts, waits from ``generator.retry_backoff_s`` doubling
with jitter or the server's ``Retry-After``, and no attempt started after
``generator.retry_total_s``. A streamed answer is retried only until its first token: after that
the client has shown text that a second attempt could contradict.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import httpx
import tenacity

from rag.config import GeneratorSettings
from rag.errors import GenerationError
from rag.protocols import Generation, GenerationParams, Message

_BODY_EXCERPT = 300  # enough of an error body to see the server's reason, not a whole HTML page
_HEALTH_TIMEOUT_S = 2.0  # the health check must stay cheap, whatever generator.timeout_s is
# Statuses that say "try again": request timeout, rate limit, and the transient server errors (not
# 501 Not Implemented or 505, which no retry fixes).
RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
# Transport failures worth another attempt: refused or reset connections, timeouts, a server that
# closed the connection without answering. Not a bad URL scheme or a local protocol misuse.
_RETRYABLE_ERRORS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)
T = TypeVar("T")


class _HttpStatus(Exception):
    """A non-2xx answer, raised inside an attempt so the retry policy can see its status."""

    def __init__(self, status: int, body: str, retry_after_s: float | None) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.body = body
        self.retry_after_s = retry_after_s


class OpenAIGenerator:
    """Chat completions over HTTP; one pooled httpx client, safe to share between threads."""

    def __init__(self, settings: GeneratorSettings, transport: httpx.BaseTransport | None = None) -> None:
        self.settings = settings
        self.name = f"openai:{settings.model}"
        self.url = settings.base_url.rstrip("/") + "/chat/completions"
        headers = {"Accept": "application/json"}
        if settings.api_key is not None and settings.api_key.get_secret_value():
            headers["Authorization"] = f"Bearer {settings.api_key.get_secret_value()}"
        self._client = httpx.Client(headers=headers, timeout=settings.timeout_s, transport=transport)

    def close(self) -> None:
        self._client.close()

    def health_problem(self) -> str | None:
        """GET {base_url}/models: any HTTP answer but an auth failure means the server is there
        (some servers do not implement /models and say 404, which still proves they listen)."""
        url = self.settings.base_url.rstrip("/") + "/models"
        try:
            timeout = min(_HEALTH_TIMEOUT_S, self.settings.timeout_s)
            status = self._client.get(url, timeout=timeout).status_code
        except httpx.HTTPError as exc:
            return f"{url}: {type(exc).__name__}: {exc}"
        if status in (401, 403):
            return f"{url} refused the API key (HTTP {status}); {_status_hint(status)}"
        if status >= 500:
            return f"{url} returned HTTP {status}; {_status_hint(status)}"
        return None

    def generate(self, messages: list[Message], params: GenerationParams) -> Generation:
        body = self._payload(messages, params, stream=False)

        def attempt() -> httpx.Response:
            response = self._client.post(self.url, json=body)
            _check_status(response)
            return response

        return self._parse_completion(self._with_retries(attempt))

    def stream(self, messages: list[Message], params: GenerationParams) -> Iterator[str]:
        """Yield each delta's content from the server-sent events until ``data: [DONE]``.

        Connecting, the status and everything up to the first piece of text are retried; a failure
        after it ends the stream with a GenerationError."""
        body = self._payload(messages, params, stream=True)
        stack, first, pieces = self._with_retries(lambda: self._open_stream(body))
        with stack, self._errors():
            if first is None:
                return
            yield first
            yield from pieces

    def _open_stream(self, body: dict[str, Any]) -> tuple[ExitStack, str | None, Iterator[str]]:
        """One attempt at a stream: the open response, its first piece of text (None when it ended
        without any) and an iterator over the rest. The response is closed if the attempt fails."""
        with ExitStack() as stack:
            response = stack.enter_context(self._client.stream("POST", self.url, json=body))
            if response.status_code >= 300:
                response.read()
                _check_status(response)
            pieces = self._pieces(response)
            first = next(pieces, None)
            return stack.pop_all(), first, pieces
        raise AssertionError("unreachable")  # for type checkers: the with block returns or raises

    def _pieces(self, response: httpx.Response) -> Iterator[str]:
        for line in response.iter_lines():
            piece = self._parse_event(line)
            if piece is None:
                return
            if piece:
                yield piece

    # ------------------------------------------------------------------ retries
    def _with_retries(self, attempt: Callable[[], T]) -> T:
        """Run ``attempt`` under the retry policy; the last failure becomes a GenerationError that
        says how many attempts were made."""
        retrying = tenacity.Retrying(
            stop=self._stop,
            wait=self._wait,
            retry=tenacity.retry_if_exception(_is_retryable),
            reraise=True,
        )
        started = time.monotonic()
        try:
            return retrying(attempt)
        except (httpx.HTTPError, _HttpStatus) as exc:
            attempts = retrying.statistics.get("attempt_number", 1)
            raise self._translate(exc, attempts, time.monotonic() - started) from exc

    def _stop(self, state: tenacity.RetryCallState) -> bool:
        """Stop after retry_attempts, or when the next attempt would start after retry_total_s."""
        settings = self.settings
        upcoming = state.upcoming_sleep or 0.0
        elapsed = state.seconds_since_start or 0.0
        return state.attempt_number >= settings.retry_attempts or elapsed + upcoming > settings.retry_total_s

    def _wait(self, state: tenacity.RetryCallState) -> float:
        """The server's Retry-After when it sent one, else exponential backoff with full jitter."""
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _HttpStatus) and exc.retry_after_s is not None:
            return exc.retry_after_s
        backoff = tenacity.wait_random_exponential(
            multiplier=self.settings.retry_backoff_s, max=self.settings.retry_total_s
        )
        return backoff(state)

    # ------------------------------------------------------------------ request / response
    def _payload(self, messages: list[Message], params: GenerationParams, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.settings.model,
            "messages": [{"role": m["role"], "content": m["content"]} for m in messages],
            "max_tokens": params.max_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "stream": stream,
        }
        if params.stop:  # some servers reject an empty list
            body["stop"] = list(params.stop)
        return body

    def _parse_completion(self, response: httpx.Response) -> Generation:
        try:
            data = response.json()
            choice = data["choices"][0]
            text = choice["message"].get("content") or ""
            finish = "length" if choice.get("finish_reason") == "length" else "stop"
            usage = data.get("usage") or {}
            return Generation(
                text, int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0)), finish
            )
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            raise self._malformed(response.text, exc) from exc

    def _parse_event(self, line: str) -> str | None:
        """Content of one SSE line: "" for lines without text, None at the end of the stream."""
        if not line.startswith("data:"):
            return ""  # blank separators, comments (": ping"), "event:" lines
        payload = line[len("data:") :].strip()
        if payload == "[DONE]":
            return None
        try:
            data = json.loads(payload)
        except ValueError as exc:
            raise self._malformed(payload, exc) from exc
        if isinstance(data, dict) and "error" in data:
            raise GenerationError(f"{self.url} reported an error mid-stream: {data['error']}")
        try:
            choices = data["choices"]
            if not choices:  # e.g. the final usage-only chunk
                return ""
            delta = choices[0].get("delta") or {}
            return delta.get("content") or ""
        except (KeyError, IndexError, TypeError, AttributeError) as exc:
            raise self._malformed(payload, exc) from exc

    # ------------------------------------------------------------------ errors
    def _errors(self) -> _TranslateHttpErrors:
        """For a stream's text after its first piece: translated, never retried."""
        return _TranslateHttpErrors(lambda exc: self._translate(exc, attempts=1, elapsed_s=0.0))

    def _translate(self, exc: Exception, attempts: int, elapsed_s: float) -> GenerationError:
        """A GenerationError with the URL, what happened, how many attempts were made (when more
        than one) and the fix."""
        tried = (
            f" (gave up after {attempts} attempts in {elapsed_s:.1f} s; see generator.retry_attempts "
            "and generator.retry_total_s)"
            if attempts > 1
            else ""
        )
        if isinstance(exc, _HttpStatus):
            return GenerationError(
                f"{self.url} returned HTTP {exc.status}{tried}: {exc.body[:_BODY_EXCERPT]!r}. "
                f"{_status_hint(exc.status)}"
            )
        if isinstance(exc, httpx.TimeoutException):
            return GenerationError(
                f"{self.url} did not answer within {self.settings.timeout_s:g} s "
                f"({type(exc).__name__}){tried}. Raise generator.timeout_s (RAG_GENERATOR__TIMEOUT_S) "
                "or check the server's load."
            )
        if isinstance(exc, httpx.ConnectError):
            return GenerationError(
                f"Cannot connect to {self.url}: {exc}{tried}. Start the OpenAI-compatible server or "
                "set generator.base_url (RAG_GENERATOR__BASE_URL) to where it listens."
            )
        return GenerationError(f"Request to {self.url} failed: {type(exc).__name__}: {exc}{tried}")

    def _malformed(self, body: str, exc: Exception) -> GenerationError:
        return GenerationError(
            f"{self.url} returned a response that is not OpenAI chat-completions JSON ({exc!r}): "
            f"{body[:_BODY_EXCERPT]!r}. Check that generator.base_url points at an OpenAI-compatible "
            "API (usually ending in /v1)."
        )


def _check_status(response: httpx.Response) -> None:
    if not 200 <= response.status_code < 300:
        retry_after = _retry_after_s(response.headers.get("Retry-After"))
        raise _HttpStatus(response.status_code, response.text, retry_after)


def _retry_after_s(value: str | None) -> float | None:
    """Seconds from a Retry-After header: a number of seconds or an HTTP date (RFC 9110)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None  # unparsable: fall back to our own backoff


def _is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, _HttpStatus):
        return exc.status in RETRYABLE_STATUS
    return isinstance(exc, _RETRYABLE_ERRORS)


class _TranslateHttpErrors:
    """Re-raises an httpx error inside the block as the GenerationError ``translate`` makes."""

    def __init__(self, translate: Callable[[Exception], GenerationError]) -> None:
        self.translate = translate

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: object) -> None:
        if isinstance(exc, httpx.HTTPError | _HttpStatus):
            raise self.translate(exc) from exc


def _status_hint(status: int) -> str:
    if status in (401, 403):
        return "Set a valid key in RAG_GENERATOR__API_KEY."
    if status == 404:
        return "Check generator.base_url (usually ends in /v1) and that generator.model is served there."
    if status == 429:
        return "The server is rate-limiting; retry later or lower the request rate."
    if status >= 500:
        return "The server failed; see its log."
    return "Check generator.model and the request parameters against the server's documentation."
