"""The generation gate against the real server and the real default generator (slow tier).

Regression tests for two defects (issue 9): a streaming client that disconnected left the
generation lock held for ever, and questions waiting for the generator held one pool thread each,
so beyond ~40 of them /healthz and /v1/search hung and nothing answered 429.
"""

from __future__ import annotations

import json
import socket
import time

import httpx
import pytest

from tests.api.conftest import WAITING_BOUND

pytestmark = pytest.mark.slow

LONG = "Describe everything the documents say about Zephyr: snapshots, retention, relay and restore."
QUICK = "Which TCP port does the zephyr-relay daemon listen on?"


def _wait_until(predicate, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.2)


def _queue(client: httpx.Client) -> dict:
    """The generation queue as /healthz reports it (a timeout here is the starvation bug)."""
    return client.get("/healthz", timeout=10).json()["queue"]


@pytest.mark.parametrize("when", ["at once", "after the first event"])
def test_a_client_that_closes_its_stream_frees_the_generator(llm_server: httpx.Client, when: str) -> None:
    """After the stream is closed, the next question must not wait for the abandoned generation
    (before the fix it ran to its end, or held the lock for ever)."""
    # The abandoned answer may run to 400 tokens: tens of seconds on CPU with any backend, so a
    # generation that kept running would be plain in the follow-up's wait.
    abandoned = {"question": LONG, "stream": True, "generation": {"max_tokens": 400}, "cache": False}
    with llm_server.stream("POST", "/v1/query", json=abandoned) as r:
        assert r.status_code == 200
        if when == "after the first event":
            next(line for line in r.iter_lines() if line.startswith("event:"))
    t0 = time.monotonic()
    r = llm_server.post("/v1/query", json={"question": QUICK}, timeout=180)
    wall_s = time.monotonic() - t0
    assert r.status_code == 200 and "7341" in r.json()["answer"]
    worked_s = sum(r.json()["timings"].values()) / 1000
    # What the follow-up spent waiting for the generator: at most the abandoned prompt's prefill
    # (not interruptible mid-batch), never its 400-token answer.
    assert wall_s - worked_s < 20.0, (wall_s, worked_s)
    assert not _queue(llm_server)["busy"]


def _raw_question(base_url: str, question: str) -> socket.socket:
    """Send a /v1/query request on a raw socket and leave it waiting: closing the socket really
    closes the connection (an httpx client closed from another thread may keep it open)."""
    url = httpx.URL(base_url)
    body = json.dumps({"question": question}).encode()
    head = (
        f"POST /v1/query HTTP/1.1\r\nHost: {url.host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    sock = socket.create_connection((url.host, url.port), timeout=10)
    sock.sendall(head + body)
    return sock


def test_waiting_questions_neither_starve_health_nor_search_and_overflow_gets_429(
    llm_server: httpx.Client,
) -> None:
    base = str(llm_server.base_url)
    holder = httpx.Client(base_url=base, timeout=600)
    stream = holder.stream("POST", "/v1/query", json={"question": LONG, "stream": True})
    stream.__enter__()
    waiters: list[socket.socket] = []
    try:
        _wait_until(lambda: _queue(llm_server)["busy"])
        waiters = [_raw_question(base, QUICK) for _ in range(WAITING_BOUND)]
        # More questions wait than the server's pool has threads (40).
        _wait_until(lambda: _queue(llm_server)["waiting"] >= WAITING_BOUND)
        for _ in range(5):
            t0 = time.monotonic()
            assert llm_server.get("/healthz", timeout=10).status_code == 200
            found = llm_server.post("/v1/search", json={"query": "zephyr relay port"}, timeout=10)
            assert found.status_code == 200
            assert time.monotonic() - t0 < 3.0
        over = llm_server.post("/v1/query", json={"question": QUICK}, timeout=10)
        assert over.status_code == 429, over.text
        assert int(over.headers["Retry-After"]) >= 1
        assert "busy" in over.json()["error"]
    finally:
        stream.__exit__(None, None, None)
        holder.close()
        for sock in waiters:
            sock.close()
    # Every waiter left: each gives its turn back without generating, so the line drains fast.
    idle = {"busy": False, "waiting": 0, "max_waiting": WAITING_BOUND, "expected_wait_s": 0.0}
    _wait_until(lambda: _queue(llm_server) == idle, timeout_s=120)
