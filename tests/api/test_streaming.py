"""POST /v1/query with `stream: true`: `sentence` events with checked text only, the opt-in
unchecked `token` stream, and the validation of the stream fields. In process with the real
embedder, index and support judge and the declared scripted generator of tests/rag/test_pipeline.py
(a fixed draft, so the events are known; the real model runs in test_streaming_e2e.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from rag.components import build_components
from rag.config import Settings
from rag.protocols import Embedder
from tests.rag.test_pipeline import ScriptedGenerator

WEEKLY = "How long does Zephyr keep weekly and daily snapshots?"
DRAFT = [
    "Zephyr keeps daily snapshots for 14 days. ",
    "Snapshots are encrypted with AES-256 by default. ",
    "Weekly snapshots are kept for 8 weeks. ",
    "Older snapshots are pruned by zephyr prune.",
]


def read_events(response: httpx.Response) -> list[tuple[str, dict]]:
    """The (event, data) pairs of a server-sent event stream."""
    events, event = [], "message"
    for line in response.iter_lines():
        if line.startswith("event:"):
            event = line.split(":", 1)[1].strip()
        elif line.startswith("data:"):
            events.append((event, json.loads(line.split(":", 1)[1])))
    return events


@pytest.fixture
def client(built_index: Settings, embedder: Embedder) -> Iterator[TestClient]:
    components = build_components(built_index, embedder=embedder, generator=ScriptedGenerator(*DRAFT))
    with TestClient(create_app(built_index, components=components), base_url="http://127.0.0.1") as c:
        yield c


def stream(client: TestClient, **extra: object) -> list[tuple[str, dict]]:
    body = {"question": WEEKLY, "stream": True, "cache": False, **extra}
    with client.stream("POST", "/v1/query", json=body) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        return read_events(r)


def test_the_stream_sends_checked_sentences_then_the_answer_and_never_the_draft(client: TestClient) -> None:
    events = stream(client)
    kinds = [k for k, _ in events]
    assert kinds == ["sentence"] * 3 + ["answer"], kinds
    sentences, final = [d for _, d in events[:-1]], events[-1][1]
    assert not final["refused"]
    assert "".join(s["text"] for s in sentences) == final["answer"]
    assert all("AES" not in s["text"] for s in sentences)  # unsupported: withheld
    cited = {c["n"]: c["chunk_id"] for s in sentences for c in s["citations"]}
    assert cited == {c["n"]: c["chunk_id"] for c in final["citations"]}
    assert all(f"[{c['n']}]" in s["text"] for s in sentences for c in s["citations"])


def test_the_unchecked_draft_is_streamed_only_on_request(client: TestClient) -> None:
    events = stream(client, stream_draft=True)
    kinds = [k for k, _ in events]
    assert kinds == ["token"] * len(DRAFT) + ["answer"], kinds
    assert "".join(d["text"] for k, d in events if k == "token") == "".join(DRAFT)
    assert "AES" not in events[-1][1]["answer"]  # the answer is checked all the same


def test_the_non_streamed_answer_is_the_streamed_one(client: TestClient) -> None:
    streamed = stream(client)[-1][1]
    plain = client.post("/v1/query", json={"question": WEEKLY, "cache": False}).json()
    assert plain["answer"] == streamed["answer"] and plain["citations"] == streamed["citations"]


def test_stream_draft_without_stream_is_a_422_that_says_so(client: TestClient) -> None:
    r = client.post("/v1/query", json={"question": WEEKLY, "stream_draft": True})
    assert r.status_code == 422
    assert "stream_draft needs stream: true" in r.text


def test_an_off_topic_question_streams_only_the_refusal(client: TestClient) -> None:
    with client.stream(
        "POST", "/v1/query", json={"question": "Who wrote Pride and Prejudice?", "stream": True}
    ) as r:
        events = read_events(r)
    assert [k for k, _ in events] == ["answer"] and events[0][1]["refused"]
