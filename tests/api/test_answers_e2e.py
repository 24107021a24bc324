"""Answers from the real default generator through the real server (the slow tier).

All tests share one server process (tests/api/conftest.py::llm_server), so the model loads once.
"""

from __future__ import annotations

import json

import httpx
import pytest

pytestmark = pytest.mark.slow


def ask(client: httpx.Client, question: str) -> dict:
    r = client.post("/v1/query", json={"question": question})
    assert r.status_code == 200, r.text
    return r.json()


def test_answer_contains_the_fact_and_cites_the_chunk_holding_it(llm_server: httpx.Client) -> None:
    body = ask(llm_server, "Which TCP port does the zephyr-relay daemon listen on?")
    assert not body["refused"], body
    assert "7341" in body["answer"]
    cited = [c for c in body["citations"] if "7341" in c["text"]]
    assert cited and cited[0]["source"].endswith("network.html")
    assert f"[{cited[0]['n']}]" in body["answer"]
    assert body["timings"]["generate_ms"] > 0


def test_answer_from_a_pdf_cites_its_page(llm_server: httpx.Client) -> None:
    body = ask(llm_server, "Where are restored files written by default?")
    assert not body["refused"], body
    assert "/srv/zephyr-restore" in body["answer"]
    assert any(c["source"].endswith("restore-guide.pdf") and c["page"] == 2 for c in body["citations"])


def test_topic_present_but_answer_absent_is_refused(llm_server: httpx.Client) -> None:
    body = ask(llm_server, "Which encryption cipher does Zephyr use to protect snapshots?")
    assert body["refused"] is True, body
    assert body["citations"] == []


def test_the_draft_stream_sends_tokens_then_the_grounded_answer(llm_server: httpx.Client) -> None:
    """The opt-in unchecked stream (`stream_draft`); the default, checked stream is tested in
    test_streaming_e2e.py."""
    events = []
    question = "How long does Zephyr keep weekly snapshots by default?"
    payload = {"question": question, "stream": True, "stream_draft": True}
    with llm_server.stream("POST", "/v1/query", json=payload) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        event = None
        for line in r.iter_lines():
            if line.startswith("event: "):
                event = line[len("event: ") :]
            elif line.startswith("data: "):
                events.append((event, json.loads(line[len("data: ") :])))
    kinds = [e for e, _ in events]
    assert kinds[-1] == "answer" and kinds.count("token") >= 2
    final = events[-1][1]
    assert not final["refused"], final
    assert "8 weeks" in final["answer"] or "eight weeks" in final["answer"].lower()
