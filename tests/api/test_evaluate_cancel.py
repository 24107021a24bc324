"""POST /v1/evaluate against a real `rag serve` process: its work is bounded, it stops when the
client leaves, and SIGTERM ends it after `server.graceful_shutdown_s`.

The servers' generator is an OpenAI-compatible URL where nothing listens (no LLM loads; evaluate
does not need one). The server of the long-request tests raises the `evaluate:` sentence and
character bounds so that one request runs for minutes rather than the seconds the defaults allow:
a server that kept working after the client left, or ignored SIGTERM, is then unmistakable.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from rag.config import EvaluateSettings, Settings
from tests.serving import serve_process

DEAD_GENERATOR = {"RAG_GENERATOR__BACKEND": "openai", "RAG_GENERATOR__BASE_URL": "http://127.0.0.1:9/v1"}
# Bounds for a request of minutes: every context at the schema's per-item maximum.
LIMITS = EvaluateSettings()
LONG_LIMITS = {
    "RAG_EVALUATE__MAX_CONTEXT_CHARS": str(LIMITS.max_contexts * LIMITS.max_context_chars),
    "RAG_EVALUATE__MAX_CONTEXT_SENTENCES": "1000000",
}
WORDS = (
    "zephyr relay daemon snapshot port retention weekly daily prune catalog server remote host allow "
    "connection transfer resume restore target path log"
).split()
SMALL = {
    "question": "Which port does the relay listen on?",
    "answer": "The relay listens on TCP port 7341.",
    "contexts": ["The zephyr-relay daemon listens on TCP port 7341."],
}


def _sentence(i: int, n: int = 8) -> str:
    words = " ".join(WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(n))
    return f"{words.capitalize()} {i}."


def _text(chars: int, start: int = 0, n: int = 8) -> str:
    parts, size, i = [], 0, start
    while size + 80 < chars:
        parts.append(_sentence(i, n))
        size += len(parts[-1]) + 1
        i += 1
    return " ".join(parts)


def _long_body() -> dict:
    """The largest body the schema accepts, in short sentences: minutes of work on this server."""
    contexts = [_text(LIMITS.max_context_chars, start=k * 1000) for k in range(LIMITS.max_contexts)]
    answer = " ".join(_sentence(i * 13, 14) for i in range(LIMITS.max_answer_sentences))
    return {
        "question": "Which port does the relay use?",
        "answer": answer[: LIMITS.max_answer_chars],
        "contexts": contexts,
    }


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def _serve(index_dir: Path, env: dict[str, str]) -> Iterator[tuple[subprocess.Popen, httpx.Client]]:
    """`rag serve` with the test's limits; the test also gets the process (its CPU time, signals)."""
    with serve_process(index_dir, DEAD_GENERATOR | env, timeout_s=300, client_timeout_s=60) as served:
        yield served


@pytest.fixture(scope="module")
def long_server(built_index: Settings) -> Iterator[tuple[subprocess.Popen, httpx.Client]]:
    with _serve(built_index.index_dir, LONG_LIMITS) as served:
        yield served


def test_work_stops_when_the_client_disconnects(long_server) -> None:
    proc, client = long_server
    with httpx.Client(base_url=client.base_url, timeout=1.0) as impatient, pytest.raises(httpx.ReadTimeout):
        impatient.post("/v1/evaluate", json=_long_body())  # gives up after 1 s and disconnects
    time.sleep(1.5)  # the server checks the connection every 0.2 s, the work checks often
    before = _cpu_s(proc.pid)
    time.sleep(3)
    burnt = _cpu_s(proc.pid) - before
    assert burnt < 0.5, f"the server used {burnt:.1f} s of CPU in 3 s after the client left"
    started = time.monotonic()
    r = client.post("/v1/evaluate", json=SMALL)
    assert r.status_code == 200, r.text
    assert time.monotonic() - started < 5


def test_a_finished_evaluation_is_unaffected_by_the_watcher(long_server) -> None:
    _, client = long_server
    r = client.post("/v1/evaluate", json=SMALL)
    assert r.status_code == 200, r.text
    assert r.json()["faithfulness"] == 1.0


def test_sigterm_ends_a_long_evaluation_after_the_grace_period(built_index: Settings) -> None:
    grace_s = 2
    env = LONG_LIMITS | {"RAG_SERVER__GRACEFUL_SHUTDOWN_S": str(grace_s)}
    with _serve(built_index.index_dir, env) as (proc, client):
        errors: list[BaseException] = []

        def post() -> None:
            try:
                client.post("/v1/evaluate", json=_long_body(), timeout=600)
            except httpx.HTTPError as exc:  # the server ends the connection: expected
                errors.append(exc)

        poster = threading.Thread(target=post, daemon=True)
        poster.start()
        time.sleep(2)  # the evaluation is under way
        assert poster.is_alive(), "the long evaluation ended by itself; make it longer"
        signalled = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace_s + 8)
        except subprocess.TimeoutExpired:
            pytest.fail(f"rag serve still running {grace_s + 8} s after SIGTERM (grace {grace_s} s)")
        assert time.monotonic() - signalled < grace_s + 8
        poster.join(timeout=10)


def test_over_limit_requests_get_422_naming_the_limit(light_server: httpx.Client) -> None:
    too_many_sentences = " ".join(_sentence(i) for i in range(LIMITS.max_answer_sentences + 1))
    r = light_server.post(
        "/v1/evaluate", json=SMALL | {"answer": too_many_sentences[: LIMITS.max_answer_chars]}
    )
    assert r.status_code == 422, r.text
    assert "evaluate.max_answer_sentences" in r.json()["error"]
    r = light_server.post("/v1/evaluate", json=SMALL | {"contexts": ["x."] * (LIMITS.max_contexts + 1)})
    assert r.status_code == 422 and "contexts" in r.json()["error"]
    total = [_text(LIMITS.max_context_chars // 2 + 100)] * 3
    r = light_server.post("/v1/evaluate", json=SMALL | {"contexts": total})
    assert r.status_code == 422 and "evaluate.max_context_chars" in r.json()["error"], r.text
