"""`history` on POST /v1/query (issue 13): a follow-up is rewritten into a standalone question
from the conversation before retrieval, and the response says what was searched."""

from __future__ import annotations

import httpx
import pytest

OFF_TOPIC = [{"role": "user", "content": "Who wrote the novel Pride and Prejudice?"}]


def test_a_one_message_history_is_concatenated_and_returned(light_server: httpx.Client) -> None:
    """One earlier message needs no model call (rag.conversation concatenates it): the refusal
    before generation shows the standalone question that was searched."""
    r = light_server.post("/v1/query", json={"question": "And when was it published?", "history": OFF_TOPIC})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["refused"] is True
    assert "Pride and Prejudice" in body["standalone_question"]
    assert "published" in body["standalone_question"]


def test_without_history_there_is_no_standalone_question(light_server: httpx.Client) -> None:
    r = light_server.post("/v1/query", json={"question": "Who wrote the novel Pride and Prejudice?"})
    assert r.status_code == 200 and r.json()["standalone_question"] is None


@pytest.mark.parametrize(
    "history",
    [
        [{"role": "system", "content": "be brief"}],  # only user and assistant turns
        [{"role": "user", "content": ""}],
        [{"role": "user"}],
        [{"role": "user", "content": "hi", "name": "x"}],  # unknown field
        "not a list",
    ],
)
def test_a_malformed_history_is_a_422(light_server: httpx.Client, history: object) -> None:
    r = light_server.post("/v1/query", json={"question": "And its port?", "history": history})
    assert r.status_code == 422, r.text


def test_a_history_over_the_message_bound_is_a_422_naming_the_setting(light_server: httpx.Client) -> None:
    history = [{"role": "user", "content": "x"}] * 256  # + the question > conversation.max_messages 256
    r = light_server.post("/v1/query", json={"question": "And its port?", "history": history})
    assert r.status_code == 422, r.text
    assert "conversation.max_messages" in r.text


@pytest.mark.slow
def test_a_follow_up_is_answered_from_the_conversation(llm_server: httpx.Client) -> None:
    """The follow-up alone ("it") names no daemon; rewritten by the real generator from the
    history it does, and the answer is the relay's port from the right document."""
    history = [
        {"role": "user", "content": "What does the zephyr-relay daemon do?"},
        {"role": "assistant", "content": "It sends snapshots to a remote site."},
    ]
    r = llm_server.post(
        "/v1/query", json={"question": "Which TCP port does it listen on?", "history": history}, timeout=300
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert "relay" in body["standalone_question"].lower(), body["standalone_question"]
    assert not body["refused"], body
    assert "7341" in body["answer"]
