"""Grounded streaming with the real default generator through a real server on loopback (slow
tier): every `sentence` event is checked text that the final answer holds, an unsupported answer
streams no sentence, and keep-alive comments flow while the model works.

The disconnect tests of the default stream (a client that leaves stops its generation) are in
test_gate_e2e.py.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from api.app import create_app
from rag.components import build_components
from rag.config import Settings, load_settings
from rag.protocols import Embedder, Generator
from tests.api.test_streaming import read_events
from tests.serving import serving_in_thread

pytestmark = pytest.mark.slow

WEEKLY = "How long does Zephyr keep daily and weekly snapshots by default?"
CIPHER = "Which encryption cipher does Zephyr use to protect snapshots?"  # the corpus does not say
OFF_TOPIC = "Who wrote the novel Pride and Prejudice?"


def ask(client: httpx.Client, question: str) -> tuple[list[tuple[str, dict, float]], float]:
    """The stream's events, each with the seconds since the request was sent."""
    t0 = time.monotonic()
    timed = []
    body = {"question": question, "stream": True}
    with client.stream("POST", "/v1/query", json=body) as r:
        assert r.status_code == 200, r.read()
        for event, data in read_events(r):
            timed.append((event, data, time.monotonic() - t0))
    return timed, time.monotonic() - t0


def test_every_sentence_shown_is_checked_and_they_make_up_the_answer(llm_server: httpx.Client) -> None:
    events, total_s = ask(llm_server, WEEKLY)
    kinds = [e for e, _, _ in events]
    assert kinds[-1] == "answer" and set(kinds[:-1]) == {"sentence"}, kinds
    final = events[-1][1]
    assert not final["refused"], final
    assert "8 weeks" in final["answer"] or "eight weeks" in final["answer"].lower()
    sentences = [d for e, d, _ in events if e == "sentence"]
    for s in sentences:
        assert s["text"].strip() in final["answer"]  # only what the grounded answer holds
        assert {c["n"] for c in s["citations"]} <= {c["n"] for c in final["citations"]}
    assert "".join(s["text"] for s in sentences) == final["answer"]
    assert events[0][2] <= events[-1][2] <= total_s


def test_an_unsupported_answer_streams_no_sentence_only_the_refusal(llm_server: httpx.Client) -> None:
    for question in (CIPHER, OFF_TOPIC):
        events, _ = ask(llm_server, question)
        assert [e for e, _, _ in events] == ["answer"], (question, events)
        assert events[0][1]["refused"] and events[0][1]["citations"] == []


@pytest.fixture
def pinging_server(built_index: Settings, embedder: Embedder, generator: Generator) -> Iterator[httpx.Client]:
    """A second app over the session's generator (no second load) with a keep-alive comment every
    0.2 s, so an answer's prompt processing spans several of them."""
    settings = load_settings(
        index_dir=built_index.index_dir, **{"server.sse_ping_s": 0.2, "cache.enabled": False}
    )
    components = build_components(settings, embedder=embedder, generator=generator)
    with serving_in_thread(create_app(settings, components=components)) as client:
        yield client


def test_keep_alive_comments_flow_before_the_first_sentence(pinging_server: httpx.Client) -> None:
    """Read to the end: the generator is shared with llm_server, so this answer must be over
    before the next test asks there."""
    with pinging_server.stream("POST", "/v1/query", json={"question": WEEKLY, "stream": True}) as r:
        lines = list(r.iter_lines())
    first_event = next(i for i, line in enumerate(lines) if line.startswith("event:"))
    comments = [line for line in lines[:first_event] if line.startswith(":")]
    assert len(comments) >= 2, lines[: first_event + 1]
    assert any(line == "event: answer" for line in lines)
