"""POST /v1/evaluate with FastAPI's TestClient.

The real app's lifespan starts loading the generator LLM (7 GB, ~70 s) in a background thread,
which this endpoint does not need. So the test mounts only the evaluate router on a tiny app and
sets ``app.state.rag`` to a stand-in with the two attributes the route reads (``embedder``
and ``settings``); the embedder itself is the real MiniLM."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.routes import evaluate
from rag.config import EvaluateSettings, Settings
from tests.api.conftest import stand_in_state

CONTEXTS = [
    "The zephyr-relay daemon sends snapshots to a remote site. It listens on TCP port 7341 and "
    "accepts connections only from hosts listed in /etc/zephyr/relay.allow.",
    "By default Zephyr keeps daily snapshots for 14 days and weekly snapshots for 8 weeks.",
]


@pytest.fixture(scope="module")
def client(embedder) -> TestClient:
    app = FastAPI()
    app.include_router(evaluate.router)
    app.state.rag = stand_in_state(Settings(), embedder=embedder)
    return TestClient(app)


def test_supported_answer(client: TestClient) -> None:
    r = client.post(
        "/v1/evaluate",
        json={
            "question": "Which port does the relay listen on?",
            "answer": "The zephyr-relay daemon listens on TCP port 7341 [1].",
            "contexts": CONTEXTS,
            "reference": "The zephyr-relay daemon listens on TCP port 7341.",
        },
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["refused"] is False and body["faithfulness"] == 1.0
    assert body["statements"][0]["context_index"] == 0
    assert body["answer_correctness"] > 0.75
    assert body["context_precision"] == 1.0 and body["context_recall"] == 1.0
    assert body["answer_relevance"] > 0.5


def test_fabricated_detail_is_named(client: TestClient) -> None:
    r = client.post(
        "/v1/evaluate",
        json={
            "question": "Which port does the relay listen on?",
            "answer": "The relay listens on TCP port 8080.",
            "contexts": CONTEXTS,
        },
    )
    body = r.json()
    assert body["faithfulness"] == 0.0
    assert "8080" in body["statements"][0]["missing"]
    assert body["context_precision"] is None and body["answer_correctness"] is None


def test_refusal_is_flagged_not_scored(client: TestClient) -> None:
    r = client.post(
        "/v1/evaluate",
        json={
            "question": "Does Zephyr support S3?",
            "answer": "The documents do not contain the answer to this question.",
            "contexts": CONTEXTS,
        },
    )
    body = r.json()
    assert body["refused"] is True and body["faithfulness"] is None and body["answer_relevance"] is None


def test_validation_error(client: TestClient) -> None:
    r = client.post("/v1/evaluate", json={"question": "q", "answer": "a", "contexts": []})
    assert r.status_code == 422


def test_a_lowered_config_bound_is_enforced_and_named(embedder) -> None:
    """The schema holds the default bounds; `evaluate.*` in the config may lower them."""
    app = FastAPI()
    app.include_router(evaluate.router)
    settings = Settings(evaluate=EvaluateSettings(max_contexts=1, max_context_sentences=2))
    app.state.rag = stand_in_state(settings, embedder=embedder)
    lowered = TestClient(app)
    body = {"question": "Which port?", "answer": "Port 7341.", "contexts": CONTEXTS}
    r = lowered.post("/v1/evaluate", json=body)
    assert r.status_code == 422
    assert "evaluate.max_contexts" in r.json()["detail"] and "2 contexts" in r.json()["detail"]
    r = lowered.post("/v1/evaluate", json=body | {"contexts": [CONTEXTS[0] + " " + CONTEXTS[1]]})
    assert r.status_code == 422
    assert "evaluate.max_context_sentences" in r.json()["detail"] and "3 sentences" in r.json()["detail"]
    assert lowered.post("/v1/evaluate", json=body | {"contexts": [CONTEXTS[1]]}).status_code == 200


def test_the_schema_bounds_are_the_config_defaults(client: TestClient) -> None:
    limits = EvaluateSettings()
    r = client.post(
        "/v1/evaluate",
        json={"question": "q", "answer": "x" * (limits.max_answer_chars + 1), "contexts": CONTEXTS},
    )
    assert r.status_code == 422
    schema = client.get("/openapi.json").json()["components"]["schemas"]["EvaluateRequest"]["properties"]
    assert schema["answer"]["maxLength"] == limits.max_answer_chars
    assert schema["contexts"]["maxItems"] == limits.max_contexts
    assert schema["contexts"]["items"]["maxLength"] == limits.max_context_chars
