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
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

from rag.config import GeneratorSettings
from rag.errors import GenerationError
from rag.generation.openai_backend import OpenAIGenerator
from rag.protocols import GenerationParams, Message

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
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(_make_app(seen), log_level="warning", lifespan="off")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert srv.started, "test server did not start"
    yield f"http://127.0.0.1:{port}/v1", seen
    srv.should_exit = True
    thread.join(timeout=10)
    sock.close()


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
