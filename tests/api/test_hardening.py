"""Regression tests for defects found by probing the running service (issue 9), over HTTP.

Each test failed on the code before its fix. The light server (tests/api/conftest.py) is a real
`rag serve` with the real embedder and index; its generator is an OpenAI URL where nothing listens.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from rag.config import Settings, load_settings
from rag.index import layout

DEAD_GENERATOR = {"generator.backend": "openai", "generator.base_url": "http://127.0.0.1:9/v1"}


def _chunked(payload: bytes, piece: int = 4096) -> Iterator[bytes]:
    """A body sent with Transfer-Encoding: chunked (httpx does so for an iterator): no
    Content-Length for the server to check up front."""
    for i in range(0, len(payload), piece):
        yield payload[i : i + piece]


@pytest.mark.parametrize("path", ["/v1/query", "/v1/search", "/v1/evaluate"])
def test_a_chunked_body_over_the_limit_gets_413(light_server: httpx.Client, path: str) -> None:
    big = json.dumps({"question": "why " * 400_000, "query": "x"}).encode()  # 1.6 MB > both limits
    r = light_server.post(path, content=_chunked(big), headers={"content-type": "application/json"})
    assert r.status_code == 413, r.text
    assert "limit" in r.json()["error"]


def test_evaluate_has_a_limit_by_content_length_too(light_server: httpx.Client) -> None:
    body = {"question": "q", "answer": "a", "contexts": ["c" * 19_000] * 50}  # ~1 MB, valid schema
    r = light_server.post(
        "/v1/evaluate",
        content=json.dumps(body).encode() + b" " * 200_000,
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 413


def test_a_small_chunked_body_still_works(light_server: httpx.Client) -> None:
    payload = json.dumps({"query": "Where does Zephyr store snapshots?", "top_k": 1}).encode()
    r = light_server.post(
        "/v1/search", content=_chunked(payload, 7), headers={"content-type": "application/json"}
    )
    assert r.status_code == 200 and len(r.json()["results"]) == 1


@pytest.mark.parametrize("offset", [2**63, 2**64, -1])
def test_out_of_range_offsets_are_422_not_500(light_server: httpx.Client, offset: int) -> None:
    r = light_server.get("/v1/documents", params={"offset": offset})
    assert r.status_code == 422, r.text
    assert r.json()["error"].startswith("invalid request")


@pytest.mark.parametrize(
    "body",
    [
        {"query": "   "},
        {"query": ""},
        {"query": "x", "top_k": "5"},
        {"query": "x", "top_k": True},
        {"query": "x", "topk": 3},
    ],
)
def test_search_validates_like_query(light_server: httpx.Client, body: dict) -> None:
    r = light_server.post("/v1/search", json=body)
    assert r.status_code == 422, r.text


@pytest.mark.parametrize("extra", [{"top_k": "5"}, {"top_k": True}, {"stream": "yes"}, {"stream": 1}])
def test_query_types_are_strict(light_server: httpx.Client, extra: dict) -> None:
    r = light_server.post("/v1/query", json={"question": "ok?", **extra})
    assert r.status_code == 422, r.text


def test_a_streaming_error_is_an_sse_error_event(light_server: httpx.Client) -> None:
    """The generator is unreachable: the stream must end with an `error` event carrying the JSON
    error body and its status (before: HTTP 200, an empty body and a reset connection)."""
    with light_server.stream(
        "POST", "/v1/query", json={"question": "Which port does the zephyr relay use?", "stream": True}
    ) as r:
        assert r.status_code == 200
        text = r.read().decode()
    events = [block for block in text.split("\r\n\r\n") if "event:" in block]
    assert events and "event: error" in events[-1], text
    data = json.loads(events[-1].split("data: ", 1)[1])
    assert data["status"] == 502 and "127.0.0.1:9" in data["error"]


def test_openapi_matches_the_error_bodies_the_server_sends(light_server: httpx.Client) -> None:
    spec = light_server.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    assert "HTTPValidationError" not in schemas
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            responses = op["responses"]
            assert "500" in responses, (method, path)
            if "requestBody" in op:
                assert "413" in responses, (method, path)
            if "422" in responses:
                ref = responses["422"]["content"]["application/json"]["schema"]["$ref"]
                assert ref.endswith("/ValidationErrorBody"), (method, path)
    real = light_server.post("/v1/search", json={}).json()
    assert set(real) == {"error", "detail"} and set(real["detail"][0]) == {"field", "problem"}
    assert {"400", "413", "422"} <= set(spec["paths"]["/v1/documents"]["post"]["responses"])
    assert "429" in spec["paths"]["/v1/query"]["post"]["responses"]


# ----------------------------------------------------------------- a damaged index, in process


@pytest.fixture
def index_copy(built_index: Settings, tmp_path: Path) -> Settings:
    shutil.copytree(built_index.index_dir, tmp_path / "idx")
    return load_settings(index_dir=tmp_path / "idx", **DEAD_GENERATOR)


def _live_file(settings: Settings, name: str) -> Path:
    """The store, the live manifest, or the first segment's vectors."""
    root = settings.index_dir
    if name == "manifest":
        return layout.current_manifest_path(root)
    if name == "segment":
        return next(p for p in (root / layout.SEGMENTS).iterdir() if p.suffix == ".faiss")
    return root / name


@pytest.mark.parametrize("name", [layout.STORE, "manifest", "segment"])
def test_health_names_a_damaged_index_file(index_copy: Settings, name: str) -> None:
    """Before: a corrupt SQLite store gave `ok` while reads failed, a corrupt manifest a 500."""
    path = _live_file(index_copy, name)
    path.chmod(0o644)
    path.write_bytes(b"this is not what the file should hold" * 100)
    with TestClient(create_app(index_copy), base_url="http://127.0.0.1") as client:
        r = client.get("/healthz")
        assert r.status_code == 200, r.text
        h = r.json()
        assert h["status"] == "degraded"
        assert "IndexCorruptError" in h["index"]["error"] and path.name in h["index"]["error"], h
        search = client.post("/v1/search", json={"query": "zephyr"})
        assert search.status_code == 503 and "damaged" in search.json()["error"]


def test_an_unexpected_error_is_a_json_500(index_copy: Settings) -> None:
    app = create_app(index_copy)

    @app.get("/boom")
    def boom() -> None:  # a stand-in for any bug: the handler, not the route, is under test
        raise RuntimeError("secret internals")

    with TestClient(app, raise_server_exceptions=False, base_url="http://127.0.0.1") as client:
        r = client.get("/boom")
    assert r.status_code == 500
    assert r.json() == {"error": "internal server error; the server log has the details"}
