"""Per-request bounds of issue 14, each a setting with an error naming it: filter conditions
(server.max_filters), conversation message length (server.max_message_chars), and top_k on every
route that retrieves. In process with the real embedder and index and a scripted generator (each
request is refused before it would generate)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.routes.chat import model_ids
from api.schemas import Filters, filters_over_limit
from rag.components import build_components
from rag.config import ServerSettings, Settings, load_settings
from rag.protocols import Embedder
from tests.rag.test_pipeline import ScriptedGenerator

MAX_FILTERS = 3
MAX_MESSAGE_CHARS = 50
QUESTION = "Which port does the relay use?"
TOO_MANY = {"metadata": {"team": ["ops", "dev"], "lang": "en"}}  # 2 fields + 2 items = 4
WITHIN = {"metadata": {"team": ["ops", "dev"]}}  # 1 field + 2 items = 3


@pytest.fixture(scope="module")
def settings(built_index: Settings) -> Settings:
    limits = {"server.max_filters": MAX_FILTERS, "server.max_message_chars": MAX_MESSAGE_CHARS}
    return load_settings(index_dir=built_index.index_dir, **limits)


@pytest.fixture(scope="module")
def client(settings: Settings, embedder: Embedder) -> Iterator[TestClient]:
    components = build_components(settings, embedder=embedder, generator=ScriptedGenerator("Port 7341."))
    with TestClient(create_app(settings, components=components), base_url="http://127.0.0.1") as c:
        yield c


def _chat(client: TestClient, settings: Settings, messages: list[dict], **extra: object):
    body = {"model": model_ids(settings)[0], "messages": messages, **extra}
    return client.post("/v1/chat/completions", json=body)


# ---------------------------------------------------------------------------------- filters


@pytest.mark.parametrize(
    ("metadata", "over"),
    [
        ({"a": 1, "b": 2, "c": 3}, False),
        ({"a": 1, "b": 2, "c": 3, "d": 4}, True),
        ({"a": [1, 2]}, False),
        ({"a": [1, 2, 3]}, True),
        ({"a": {"b": 1}}, False),
        ({"a": {"b": [1, 2]}}, True),
        ({}, False),
    ],
)
def test_conditions_are_fields_list_items_and_nested_values(metadata: dict, over: bool) -> None:
    server = ServerSettings(max_filters=MAX_FILTERS)
    problem = filters_over_limit(Filters(metadata=metadata), server)
    assert (problem is not None) is over
    if over:
        assert "server.max_filters" in problem and "RAG_SERVER__MAX_FILTERS" in problem


def test_a_deeply_nested_filter_is_counted_without_recursion() -> None:
    deep: list = []
    node = deep
    for _ in range(100_000):
        node.append([])
        node = node[0]
    filters = Filters.model_construct(metadata={"a": deep}, source_prefix=None)
    assert filters_over_limit(filters, ServerSettings(max_filters=MAX_FILTERS)) is not None
    assert filters_over_limit(None, ServerSettings()) is None


@pytest.mark.parametrize("path", ["/v1/search", "/v1/query"])
def test_too_many_filter_conditions_are_a_422(client: TestClient, path: str) -> None:
    body = {"query" if path == "/v1/search" else "question": QUESTION}
    r = client.post(path, json=body | {"filters": TOO_MANY})
    assert r.status_code == 422, r.text
    assert "server.max_filters" in r.json()["error"]
    assert client.post("/v1/search", json={"query": QUESTION, "filters": WITHIN}).status_code == 200


def test_too_many_filter_conditions_in_a_chat_are_a_400(client: TestClient, settings: Settings) -> None:
    r = _chat(client, settings, [{"role": "user", "content": QUESTION}], filters=TOO_MANY)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["param"] == "filters" and "server.max_filters" in error["message"]


# --------------------------------------------------------------------------------- messages


def test_an_over_long_chat_message_is_a_400(client: TestClient, settings: Settings) -> None:
    messages = [
        {"role": "user", "content": "Tell me about Zephyr."},
        {"role": "assistant", "content": "x" * (MAX_MESSAGE_CHARS + 1)},
        {"role": "user", "content": QUESTION},
    ]
    r = _chat(client, settings, messages)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["param"] == "messages[1]" and error["code"] == "message_too_long"
    assert f"{MAX_MESSAGE_CHARS + 1} characters" in error["message"]
    assert "RAG_SERVER__MAX_MESSAGE_CHARS" in error["message"]


def test_an_over_long_history_message_is_a_422(client: TestClient) -> None:
    history = [{"role": "user", "content": "y" * (MAX_MESSAGE_CHARS + 1)}]
    r = client.post("/v1/query", json={"question": QUESTION, "history": history})
    assert r.status_code == 422, r.text
    assert "history[0].content" in r.json()["error"] and "server.max_message_chars" in r.json()["error"]


# ------------------------------------------------------------------------------------ top_k


@pytest.mark.parametrize(("path", "bound"), [("/v1/search", 100), ("/v1/query", 50)])
def test_top_k_is_bounded(client: TestClient, path: str, bound: int) -> None:
    key = "query" if path == "/v1/search" else "question"
    for top_k in (0, bound + 1):
        r = client.post(path, json={key: QUESTION, "top_k": top_k})
        assert r.status_code == 422 and "top_k" in r.text, r.text


def test_top_k_is_bounded_in_a_chat(client: TestClient, settings: Settings) -> None:
    for top_k in (0, 51):
        r = _chat(client, settings, [{"role": "user", "content": QUESTION}], top_k=top_k)
        assert r.status_code == 400 and r.json()["error"]["param"] == "top_k", r.text
