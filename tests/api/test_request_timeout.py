"""server.request_timeout_s and the queue headers, against the real app on loopback.

Why a stand-in generator: the fault under test is a generation that does not end (a runaway
model, a stuck remote engine), which the real model cannot be made to do on cue, and these tests
must not load a second model. The stand-in writes one token every few milliseconds for as long as
it is read; everything else (the gate, the pipeline, retrieval over the session's index, uvicorn)
is the real thing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from api.app import create_app
from api.gate import POSITION_HEADER, WAIT_HEADER
from rag.components import build_components
from rag.config import Settings, load_settings
from rag.protocols import Embedder, Generation, GenerationParams, Message
from tests.serving import serving_in_thread

TIMEOUT_S = 1.5  # server.request_timeout_s of this app
RUNAWAY = "Describe everything the documents say about Zephyr snapshots."
QUICK = "Which TCP port does the zephyr-relay daemon listen on?"
TOKEN_S = 0.005
SAFETY_S = 60.0  # a stand-in stream left running by a broken gate still ends


class RunawayGenerator:
    """Answers QUICK at once; for any question with "everything" in it writes tokens until it is
    closed. Records when each endless stream was closed (the cancel reached the model)."""

    name = "test:runaway"

    def __init__(self) -> None:
        self.closed: list[float] = []

    def generate(self, messages: list[Message], params: GenerationParams) -> Generation:
        return Generation("".join(self.stream(messages, params)), 0, 0, "stop")

    def stream(self, messages: list[Message], params: GenerationParams) -> Iterator[str]:
        if "everything" not in messages[-1]["content"]:
            yield "The zephyr-relay daemon listens on TCP port 7341 [1]."
            return
        deadline = time.monotonic() + SAFETY_S
        try:
            while time.monotonic() < deadline:
                time.sleep(TOKEN_S)
                yield " zephyr"
        finally:
            self.closed.append(time.monotonic())


@pytest.fixture(scope="module")
def runaway() -> RunawayGenerator:
    return RunawayGenerator()


@pytest.fixture(scope="module")
def server(built_index: Settings, embedder: Embedder, runaway: RunawayGenerator) -> Iterator[httpx.Client]:
    overrides = {"server.request_timeout_s": TIMEOUT_S, "cache.enabled": False}
    settings = load_settings(index_dir=built_index.index_dir, **overrides)
    components = build_components(settings, embedder=embedder, generator=runaway)
    with serving_in_thread(create_app(settings, components=components), client_timeout_s=30) as client:
        yield client


def _queue(client: httpx.Client) -> dict:
    return client.get("/healthz", timeout=5).json()["queue"]


def test_a_runaway_generation_is_stopped_and_answered_504(
    server: httpx.Client, runaway: RunawayGenerator
) -> None:
    t0 = time.monotonic()
    r = server.post("/v1/query", json={"question": RUNAWAY})
    elapsed = time.monotonic() - t0
    assert r.status_code == 504, r.text
    assert "server.request_timeout_s (1.5 s)" in r.json()["error"]
    assert "RAG_SERVER__REQUEST_TIMEOUT_S" in r.json()["error"]
    assert TIMEOUT_S <= elapsed < TIMEOUT_S + 2.0
    assert runaway.closed and runaway.closed[-1] - t0 < TIMEOUT_S + 2.0  # the model was stopped too
    assert r.headers[POSITION_HEADER] == "0"
    assert not _queue(server)["busy"]


def test_a_runaway_streamed_answer_ends_with_a_504_error_event(
    server: httpx.Client, runaway: RunawayGenerator
) -> None:
    """The stream's own loop checks the deadline between items: an `error` event with status 504,
    no sentence of the unchecked runaway draft, and the model stopped."""
    t0 = time.monotonic()
    with server.stream("POST", "/v1/query", json={"question": RUNAWAY, "stream": True}) as r:
        assert r.status_code == 200
        text = "".join(r.iter_text())
    elapsed = time.monotonic() - t0
    assert "event: error" in text and '"status": 504' in text, text[-500:]
    assert "server.request_timeout_s" in text
    assert "event: sentence" not in text and "event: token" not in text
    assert TIMEOUT_S <= elapsed < TIMEOUT_S + 3.0
    assert runaway.closed and runaway.closed[-1] - t0 < TIMEOUT_S + 3.0
    assert not _queue(server)["busy"]


def test_the_next_question_proceeds_and_sees_its_place_and_wait(server: httpx.Client) -> None:
    results: dict[str, httpx.Response] = {}

    def ask(key: str, question: str) -> None:
        with httpx.Client(base_url=server.base_url, timeout=30) as client:
            results[key] = client.post("/v1/query", json={"question": question})

    first = threading.Thread(target=ask, args=("runaway", RUNAWAY))
    first.start()
    deadline = time.monotonic() + 10
    while not _queue(server)["busy"]:
        assert time.monotonic() < deadline, "the runaway question never reached the generator"
        time.sleep(0.02)
    queue = _queue(server)
    assert queue["expected_wait_s"] > 0  # what a question sent now would wait, for waiting clients
    t0 = time.monotonic()
    ask("quick", QUICK)
    first.join(timeout=30)
    assert results["runaway"].status_code == 504
    quick = results["quick"]
    assert quick.status_code == 200, quick.text
    assert "7341" in quick.json()["answer"]
    assert quick.headers[POSITION_HEADER] == "1"  # one question (the runaway) was ahead of it
    waited_ms = int(quick.headers[WAIT_HEADER])
    assert 0 < waited_ms <= TIMEOUT_S * 1000 + 500
    assert time.monotonic() - t0 < TIMEOUT_S + 5.0
    assert _queue(server) == {"busy": False, "waiting": 0, "max_waiting": 8, "expected_wait_s": 0.0}


def test_search_and_health_carry_no_queue_headers(server: httpx.Client) -> None:
    for r in (server.get("/healthz"), server.post("/v1/search", json={"query": "zephyr relay port"})):
        assert r.status_code == 200
        assert POSITION_HEADER not in r.headers and WAIT_HEADER not in r.headers
