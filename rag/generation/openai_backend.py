"""Generator over any OpenAI-compatible chat-completions endpoint (vLLM, llama.cpp server,
Ollama, OpenAI). This is how a GPU server or a faster engine plugs in without code changes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx

from rag.config import GeneratorSettings
from rag.errors import GenerationError
from rag.protocols import Generation, GenerationParams, Message

_BODY_EXCERPT = 300  # enough of an error body to see the server's reason, not a whole HTML page
_HEALTH_TIMEOUT_S = 2.0  # the health check must stay cheap, whatever generator.timeout_s is


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
        with self._errors():
            response = self._client.post(self.url, json=body)
        self._raise_for_status(response.status_code, response.text)
        return self._parse_completion(response)

    def stream(self, messages: list[Message], params: GenerationParams) -> Iterator[str]:
        """Yield each delta's content from the server-sent events until ``data: [DONE]``."""
        body = self._payload(messages, params, stream=True)
        with self._errors(), self._client.stream("POST", self.url, json=body) as response:
            if response.status_code >= 300:
                response.read()
                self._raise_for_status(response.status_code, response.text)
            for line in response.iter_lines():
                piece = self._parse_event(line)
                if piece is None:
                    return
                if piece:
                    yield piece

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
        return _TranslateHttpErrors(self.url, self.settings.timeout_s)

    def _raise_for_status(self, status: int, body: str) -> None:
        if 200 <= status < 300:
            return
        raise GenerationError(
            f"{self.url} returned HTTP {status}: {body[:_BODY_EXCERPT]!r}. {_status_hint(status)}"
        )

    def _malformed(self, body: str, exc: Exception) -> GenerationError:
        return GenerationError(
            f"{self.url} returned a response that is not OpenAI chat-completions JSON ({exc!r}): "
            f"{body[:_BODY_EXCERPT]!r}. Check that generator.base_url points at an OpenAI-compatible "
            "API (usually ending in /v1)."
        )


class _TranslateHttpErrors:
    """Turns httpx transport errors into GenerationError with the URL and the fix."""

    def __init__(self, url: str, timeout_s: float) -> None:
        self.url = url
        self.timeout_s = timeout_s

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: object) -> None:
        if exc is None or not isinstance(exc, httpx.HTTPError):
            return
        if isinstance(exc, httpx.TimeoutException):
            raise GenerationError(
                f"{self.url} did not answer within {self.timeout_s:g} s ({type(exc).__name__}). "
                "Raise generator.timeout_s (RAG_GENERATOR__TIMEOUT_S) or check the server's load."
            ) from exc
        if isinstance(exc, httpx.ConnectError):
            raise GenerationError(
                f"Cannot connect to {self.url}: {exc}. Start the OpenAI-compatible server or set "
                "generator.base_url (RAG_GENERATOR__BASE_URL) to where it listens."
            ) from exc
        raise GenerationError(f"Request to {self.url} failed: {type(exc).__name__}: {exc}") from exc


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
