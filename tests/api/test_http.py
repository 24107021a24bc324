"""HTTP behaviour that needs no LLM: validation, limits, search, health, OpenAPI."""

from __future__ import annotations

import httpx
import pytest

from tests.serving import running_server


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"question": ""},
        {"question": "   "},
        {"question": "ok?", "top_k": 0},
        {"question": "ok?", "top_k": "many"},
        {"question": 42},
        {"question": "x" * 2001},
    ],
)
def test_bad_query_bodies_get_422_with_a_message(light_server: httpx.Client, body: dict) -> None:
    r = light_server.post("/v1/query", json=body)
    assert r.status_code == 422
    assert r.json()["error"].startswith("invalid request")


def test_non_json_body_gets_422(light_server: httpx.Client) -> None:
    r = light_server.post("/v1/query", content=b"not json", headers={"content-type": "application/json"})
    assert r.status_code == 422


def test_a_one_megabyte_question_is_refused_before_parsing(light_server: httpx.Client) -> None:
    r = light_server.post("/v1/query", json={"question": "why " * 262144})
    assert r.status_code == 413
    assert "limit" in r.json()["error"]


def test_search_returns_ranked_chunks_with_provenance(light_server: httpx.Client) -> None:
    r = light_server.post(
        "/v1/search", json={"query": "In which directory does Zephyr store snapshots?", "top_k": 3}
    )
    assert r.status_code == 200
    results = r.json()["results"]
    assert [x["rank"] for x in results] == [1, 2, 3]
    assert results[0]["source"].endswith("overview.md")
    assert "/var/lib/zephyr/snapshots" in results[0]["text"]
    assert results[0]["score"] >= results[1]["score"] >= results[2]["score"]


def test_off_topic_question_is_refused_without_generation(light_server: httpx.Client) -> None:
    r = light_server.post("/v1/query", json={"question": "Who wrote the novel Pride and Prejudice?"})
    assert r.status_code == 200
    body = r.json()
    assert body["refused"] is True and body["citations"] == []
    assert body["timings"]["generate_ms"] == 0


def test_unreachable_generator_is_a_502_that_names_the_url(light_server: httpx.Client) -> None:
    r = light_server.post("/v1/query", json={"question": "Which port does the zephyr relay use?"})
    assert r.status_code == 502
    assert "127.0.0.1:9" in r.json()["error"]


def test_health_reports_index_and_an_unreachable_remote_generator(light_server: httpx.Client) -> None:
    """The light server's generator is an OpenAI URL where nothing listens: health must say so
    (it said `ready` before the check existed)."""
    h = light_server.get("/healthz").json()
    assert h["index"]["loaded"] and h["index"]["documents"] == 4 and h["index"]["error"] is None
    assert h["generator"].startswith("unreachable: http://127.0.0.1:9/v1/models")
    assert h["status"] == "degraded"
    assert h["queue"] == {"busy": False, "waiting": 0, "max_waiting": 8, "expected_wait_s": 0.0}


def test_openapi_documents_the_endpoints(light_server: httpx.Client) -> None:
    spec = light_server.get("/openapi.json").json()
    assert {"/v1/query", "/v1/search", "/healthz"} <= set(spec["paths"])
    query = spec["paths"]["/v1/query"]["post"]
    assert {"200", "422", "503"} <= set(query["responses"])


def test_without_an_index_searches_get_404_without_the_server_path(tmp_path) -> None:
    env = {"RAG_GENERATOR__BACKEND": "openai", "RAG_GENERATOR__BASE_URL": "http://127.0.0.1:9/v1"}
    with running_server(tmp_path / "empty-index", env=env) as client:
        r = client.post("/v1/search", json={"query": "anything"})
        assert r.status_code == 404
        assert "rag ingest" in r.json()["error"] and str(tmp_path) not in r.text
        assert client.get("/healthz").json()["status"] == "degraded"
