"""OpenAIGenerator against a tiny real HTTP server on 127.0.0.1.

Why a stand-in server: no OpenAI-compatible server (vLLM, llama.cpp server, Ollama) is available
offline or in CI, and these tests check our client's handling of the chat-completions protocol
(request body, auth header, JSON and SSE parsing, error translation) over a real socket, not a
model's answers. The server below follows the OpenAI wire format, including streaming.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

from rag.config import GeneratorSettings
from rag.errors import GenerationError
from rag.generation.openai_backend import OpenAIGenerator
from rag.protocols import GenerationParams, Message
from tests.serving import uvicorn_in_thread

PIECES = ["Par", "is", " is the capital."]
MESSAGES: list[Message] = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Capital of France?"},
]


def _completion(body: dict[str, Any]) -> dict[str, Any]:
    text = "".join(PIECES)
    finish = "length" if body.get("max_tokens", 100) < 3 else "stop"
    return {
        "id": "cmpl-1",
        "object": "chat.completion",
        "model": body["model"],
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15},
    }


async def _sse(body: dict[str, Any]) -> AsyncIterator[str]:
    """Role-only first delta, a keep-alive comment, content deltas, a usage-only chunk, [DONE]."""
    yield 'data: {"choices":[{"index":0,"delta":{"role":"assistant"}}]}\n\n'
    yield ": keep-alive\n\n"
    for piece in PIECES:
        chunk = {"choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
        yield f"data: {json.dumps(chunk)}\n\n"
    yield 'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
    yield 'data: {"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":3}}\n\n'
    yield "data: [DONE]\n\n"
    yield 'data: {"choices":[{"index":0,"delta":{"content":"after done"}}]}\n\n'


def _make_app(seen: list[dict[str, Any]]) -> FastAPI:
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        body = await request.json()
        seen.append({"headers": dict(request.headers), "body": body})
        special = {
            "fail-500": lambda: PlainTextResponse("engine crashed", status_code=500),
            "fail-401": lambda: JSONResponse({"error": {"message": "bad key"}}, status_code=401),
            "not-json": lambda: PlainTextResponse("<html>proxy page</html>"),
            "wrong-shape": lambda: JSONResponse({"result": "no choices here"}),
        }
        if body["model"] in special:
            return special[body["model"]]()
        if body["model"] == "slow":
            await asyncio.sleep(2)
        if body.get("stream"):
            return StreamingResponse(_sse(body), media_type="text/event-stream")
        return JSONResponse(_completion(body))

    return app


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """uvicorn in a thread on a kernel-chosen free port; yields (base_url, recorded requests)."""
    seen: list[dict[str, Any]] = []
    with uvicorn_in_thread(_make_app(seen), lifespan="off") as (url, _thread):
        yield f"{url}/v1", seen


def _gen(base_url: str, model: str = "test-model", **extra: Any) -> OpenAIGenerator:
    return OpenAIGenerator(GeneratorSettings(backend="openai", model=model, base_url=base_url, **extra))


def test_generate_sends_openai_body_and_reads_usage(server: tuple[str, list]) -> None:
    base_url, seen = server
    params = GenerationParams(max_tokens=20, temperature=0.3, top_p=0.9, stop=("\n\n",))
    result = _gen(base_url + "/").generate(MESSAGES, params)  # trailing slash is tolerated
    assert result.text == "Paris is the capital."
    assert (result.prompt_tokens, result.completion_tokens, result.finish_reason) == (12, 3, "stop")
    body = seen[-1]["body"]
    assert body == {
        "model": "test-model",
        "messages": MESSAGES,
        "max_tokens": 20,
        "temperature": 0.3,
        "top_p": 0.9,
        "stream": False,
        "stop": ["\n\n"],
    }


def test_generate_reports_length_finish_and_omits_empty_stop(server: tuple[str, list]) -> None:
    base_url, seen = server
    result = _gen(base_url).generate(MESSAGES, GenerationParams(max_tokens=2))
    assert result.finish_reason == "length"
    assert "stop" not in seen[-1]["body"]


def test_stream_yields_deltas_until_done(server: tuple[str, list]) -> None:
    base_url, seen = server
    pieces = list(_gen(base_url).stream(MESSAGES, GenerationParams(max_tokens=20)))
    assert pieces == PIECES
    assert seen[-1]["body"]["stream"] is True


def test_auth_header_only_when_key_set(server: tuple[str, list]) -> None:
    base_url, seen = server
    _gen(base_url, api_key="sk-test-123").generate(MESSAGES, GenerationParams())
    assert seen[-1]["headers"]["authorization"] == "Bearer sk-test-123"
    _gen(base_url).generate(MESSAGES, GenerationParams())
    assert "authorization" not in seen[-1]["headers"]


def test_non_2xx_names_url_status_and_body(server: tuple[str, list]) -> None:
    base_url, _ = server
    with pytest.raises(GenerationError) as info:
        _gen(base_url, model="fail-500").generate(MESSAGES, GenerationParams())
    message = str(info.value)
    assert f"{base_url}/chat/completions" in message
    assert "HTTP 500" in message and "engine crashed" in message and "see its log" in message


def test_401_hints_at_api_key(server: tuple[str, list]) -> None:
    base_url, _ = server
    with pytest.raises(GenerationError, match=r"HTTP 401.*RAG_GENERATOR__API_KEY"):
        _gen(base_url, model="fail-401").generate(MESSAGES, GenerationParams())


def test_non_2xx_while_streaming(server: tuple[str, list]) -> None:
    base_url, _ = server
    with pytest.raises(GenerationError, match="HTTP 500"):
        list(_gen(base_url, model="fail-500").stream(MESSAGES, GenerationParams()))


@pytest.mark.parametrize("model", ["not-json", "wrong-shape"])
def test_malformed_response(server: tuple[str, list], model: str) -> None:
    base_url, _ = server
    with pytest.raises(GenerationError, match=r"not OpenAI chat-completions JSON.*/v1"):
        _gen(base_url, model=model).generate(MESSAGES, GenerationParams())


def test_timeout_names_setting(server: tuple[str, list]) -> None:
    base_url, _ = server
    with pytest.raises(GenerationError, match=r"did not answer within 0\.3 s.*RAG_GENERATOR__TIMEOUT_S"):
        _gen(base_url, model="slow", timeout_s=0.3).generate(MESSAGES, GenerationParams())


def test_connection_refused_names_url_and_fix() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens on this port now
    url = f"http://127.0.0.1:{port}/v1"
    for call in (
        lambda g: g.generate(MESSAGES, GenerationParams()),
        lambda g: list(g.stream(MESSAGES, GenerationParams())),
    ):
        with pytest.raises(GenerationError) as info:
            call(_gen(url))
        message = str(info.value)
        assert f"Cannot connect to {url}/chat/completions" in message
        assert "RAG_GENERATOR__BASE_URL" in message


# ---------------------------------------------------------------------------------------- retries
# A second stand-in server that fails on purpose: the model name says how ("<kind>-<failures>-<id>":
# the first <failures> requests of that name fail, the next ones answer), and it counts the
# requests each name received, so a test sees exactly how many attempts our client made.


def _flaky_app(arrivals: dict[str, list[float]]) -> FastAPI:
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        body = await request.json()
        name = body["model"]
        arrivals.setdefault(name, []).append(time.monotonic())
        kind, failures, _ = name.split("-", 2)
        if len(arrivals[name]) <= int(failures):
            return _failure(kind)
        if kind == "midstream":  # the first token, then the connection drops: never retried
            return StreamingResponse(_dropped_after_first_token(), media_type="text/event-stream")
        if body.get("stream"):
            return StreamingResponse(_sse(body), media_type="text/event-stream")
        return JSONResponse(_completion(body))

    return app


def _failure(kind: str) -> Response:
    if kind == "ratelimited":
        return JSONResponse(
            {"error": {"message": "slow down"}}, status_code=429, headers={"Retry-After": "1"}
        )
    if kind == "waitlong":
        return JSONResponse(
            {"error": {"message": "slow down"}}, status_code=429, headers={"Retry-After": "60"}
        )
    if kind == "badrequest":
        return JSONResponse({"error": {"message": "bad max_tokens"}}, status_code=400)
    return PlainTextResponse("overloaded", status_code=503)


async def _dropped_after_first_token() -> AsyncIterator[str]:
    yield f"data: {json.dumps({'choices': [{'index': 0, 'delta': {'content': PIECES[0]}}]})}\n\n"
    raise RuntimeError("engine died mid-answer")  # uvicorn drops the connection mid-body


@pytest.fixture(scope="module")
def flaky() -> Iterator[tuple[str, dict[str, list[float]]]]:
    arrivals: dict[str, list[float]] = {}
    with uvicorn_in_thread(_flaky_app(arrivals), log_level="critical", lifespan="off") as (url, _thread):
        yield f"{url}/v1", arrivals


_names = iter(range(10**6))


def _name(kind: str, failures: int) -> str:
    return f"{kind}-{failures}-{next(_names)}"


def _retrying(base_url: str, model: str, **extra: Any) -> OpenAIGenerator:
    settings = {"retry_attempts": 3, "retry_backoff_s": 0.05, "retry_total_s": 10.0} | extra
    return _gen(base_url, model=model, **settings)


@pytest.mark.parametrize("call", ["generate", "stream"])
def test_503s_are_retried_until_the_server_answers(flaky: tuple[str, dict], call: str) -> None:
    base_url, arrivals = flaky
    model = _name("overloaded", 2)
    gen = _retrying(base_url, model)
    if call == "generate":
        assert gen.generate(MESSAGES, GenerationParams()).text == "".join(PIECES)
    else:
        assert list(gen.stream(MESSAGES, GenerationParams())) == PIECES
    assert len(arrivals[model]) == 3


def test_attempts_are_bounded_and_the_error_says_how_many(flaky: tuple[str, dict]) -> None:
    base_url, arrivals = flaky
    model = _name("overloaded", 99)
    with pytest.raises(GenerationError, match=r"HTTP 503 \(gave up after 3 attempts in .*retry_attempts"):
        _retrying(base_url, model).generate(MESSAGES, GenerationParams())
    assert len(arrivals[model]) == 3


def test_429_waits_as_long_as_retry_after_says(flaky: tuple[str, dict]) -> None:
    base_url, arrivals = flaky
    model = _name("ratelimited", 1)
    assert _retrying(base_url, model).generate(MESSAGES, GenerationParams()).text
    first, second = arrivals[model]
    assert second - first >= 0.95  # Retry-After: 1, not the 0.05 s backoff


def test_a_retry_after_beyond_the_time_budget_gives_up_at_once(flaky: tuple[str, dict]) -> None:
    base_url, arrivals = flaky
    model = _name("waitlong", 1)
    t0 = time.monotonic()
    with pytest.raises(GenerationError, match=r"HTTP 429.*rate-limiting"):
        _retrying(base_url, model, retry_total_s=5.0).generate(MESSAGES, GenerationParams())
    assert time.monotonic() - t0 < 3.0 and len(arrivals[model]) == 1


@pytest.mark.parametrize("extra", [{}, {"retry_attempts": 1}])
def test_client_errors_and_one_attempt_settings_are_not_retried(flaky: tuple[str, dict], extra: dict) -> None:
    base_url, arrivals = flaky
    kind = "badrequest" if not extra else "overloaded"
    model = _name(kind, 1)
    with pytest.raises(GenerationError, match=r"HTTP (400|503): ") as info:
        _retrying(base_url, model, **extra).generate(MESSAGES, GenerationParams())
    assert "gave up" not in str(info.value)
    assert len(arrivals[model]) == 1


def test_a_stream_is_not_retried_after_its_first_token(flaky: tuple[str, dict]) -> None:
    base_url, arrivals = flaky
    model = _name("midstream", 0)
    got: list[str] = []
    with pytest.raises(GenerationError, match="failed"):
        for piece in _retrying(base_url, model).stream(MESSAGES, GenerationParams()):
            got.append(piece)
    assert got == PIECES[:1]  # the client saw the first token, so no second attempt repeats it
    assert len(arrivals[model]) == 1


class _ResettingServer:
    """A raw HTTP/1.1 server on loopback that resets (TCP RST) its first ``resets`` connections
    and answers the next ones with a completion: what a crashing or restarting engine looks like
    on the wire, which uvicorn cannot be made to do."""

    def __init__(self, resets: int) -> None:
        self.resets = resets
        self.connections = 0
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/v1"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return  # closed by the test
            self.connections += 1
            with conn:
                request = conn.recv(65536)
                if self.connections <= self.resets:
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    continue  # closing with linger 0 sends RST
                assert request.startswith(b"POST /v1/chat/completions")
                payload = json.dumps(_completion({"model": "m"})).encode()
                head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(payload)}"
                conn.sendall(head.encode() + b"\r\nConnection: close\r\n\r\n" + payload)

    def close(self) -> None:
        self.sock.close()


def test_connection_resets_are_retried() -> None:
    server = _ResettingServer(resets=2)
    try:
        result = _retrying(server.url, "m").generate(MESSAGES, GenerationParams())
    finally:
        server.close()
    assert result.text == "".join(PIECES)
    assert server.connections == 3
