"""Retrieval modes over HTTP (issue 12), against `rag serve` as a real process (light_server)."""

from __future__ import annotations

import httpx
import pytest

QUESTION = "Which TCP port does the relay daemon listen on?"


@pytest.mark.parametrize("mode", ["dense", "keyword", "hybrid"])
def test_every_mode_reports_each_hits_dense_and_keyword_scores(light_server: httpx.Client, mode: str) -> None:
    r = light_server.post("/v1/search", json={"query": QUESTION, "top_k": 3, "mode": mode})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert results and "7341" in results[0]["text"]
    for hit in results:
        assert isinstance(hit["dense_score"], float) and isinstance(hit["keyword_score"], float)
        assert hit["rerank_score"] is None  # no reranker by default
    scores = [h["score"] for h in results]
    assert scores == sorted(scores, reverse=True)
    if mode == "dense":
        assert all(h["score"] == h["dense_score"] for h in results)
    if mode == "keyword":
        assert all(h["score"] == h["keyword_score"] > 0 for h in results)
    if mode == "hybrid":
        assert all(0.0 <= s <= 1.0 for s in scores)


def test_the_default_mode_is_hybrid(light_server: httpx.Client) -> None:
    default = light_server.post("/v1/search", json={"query": QUESTION, "top_k": 3}).json()["results"]
    hybrid = light_server.post("/v1/search", json={"query": QUESTION, "top_k": 3, "mode": "hybrid"}).json()
    assert default == hybrid["results"]


@pytest.mark.parametrize("route,field", [("/v1/search", "query"), ("/v1/query", "question")])
@pytest.mark.parametrize("mode", ["semantic", "Dense", "", 1])
def test_an_unknown_mode_is_a_422(light_server: httpx.Client, route: str, field: str, mode: object) -> None:
    r = light_server.post(route, json={field: QUESTION, "mode": mode})
    assert r.status_code == 422, r.text
    assert "mode" in r.text


def test_the_query_route_takes_a_mode_and_its_gate_still_refuses_off_topic(
    light_server: httpx.Client,
) -> None:
    """/v1/query takes the mode too: an off-topic question is still refused in keyword mode by
    the dense-cosine gate (every hit carries its cosine)."""
    r = light_server.post("/v1/query", json={"question": "Who wrote Pride and Prejudice?", "mode": "keyword"})
    assert r.status_code == 200, r.text
    assert r.json()["refused"] is True


def test_openapi_documents_the_modes_and_the_scores(light_server: httpx.Client) -> None:
    spec = light_server.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    for request in ("SearchRequest", "QueryRequest"):
        mode = schemas[request]["properties"]["mode"]
        assert "hybrid" in str(mode) and "keyword" in str(mode) and "dense" in str(mode)
    for field in ("dense_score", "keyword_score", "rerank_score"):
        assert field in schemas["ChunkOut"]["properties"] and field in schemas["Citation"]["properties"]
