"""Question length has one source, server.max_question_chars: the schema's bound is its default,
and every route that takes a question checks the configured value (422 naming the setting).

Only the routers under test are mounted on a tiny app (as tests/api/test_evaluate.py does): the
check comes before any model or index is touched, so the stand-in state holds no models."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.routes import evaluate, search
from api.schemas import MAX_QUESTION_CHARS
from rag.config import ServerSettings, load_settings
from tests.api.conftest import stand_in_state


def _client(max_question_chars: int) -> TestClient:
    app = FastAPI()
    app.include_router(evaluate.router)
    app.include_router(search.router.default)
    settings = load_settings(**{"server.max_question_chars": max_question_chars})
    app.state.rag = stand_in_state(settings)
    return TestClient(app)


def test_the_schema_bound_is_the_setting_default() -> None:
    assert ServerSettings().max_question_chars == MAX_QUESTION_CHARS
    schema = _client(10).get("/openapi.json").json()["components"]["schemas"]
    assert schema["EvaluateRequest"]["properties"]["question"]["maxLength"] == MAX_QUESTION_CHARS
    assert schema["SearchRequest"]["properties"]["query"]["maxLength"] == MAX_QUESTION_CHARS


def test_search_checks_the_configured_bound() -> None:
    r = _client(10).post("/v1/search", json={"query": "x" * 11})
    assert r.status_code == 422
    assert "server.max_question_chars" in r.text and "11 characters" in r.text


def test_evaluate_checks_the_configured_bound() -> None:
    body = {"question": "x" * 11, "answer": "Port 7341.", "contexts": ["It listens on port 7341."]}
    r = _client(10).post("/v1/evaluate", json=body)
    assert r.status_code == 422
    assert "server.max_question_chars" in r.text and "limit is 10" in r.text


def test_evaluate_refuses_a_blank_question_like_query_and_search() -> None:
    body = {"question": "   ", "answer": "Port 7341.", "contexts": ["It listens on port 7341."]}
    assert _client(10).post("/v1/evaluate", json=body).status_code == 422
