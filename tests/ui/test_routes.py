"""The page's own routes without a browser: who may read evaluation runs, names that cannot leave
the runs directory, folders that are not runs, and the page's files outside the schema."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from api.app import create_app
from rag.config import load_settings

ADMIN = "routes-admin-key-0123456789abcdef"
READER = "routes-reader-key-0123456789abcdef"


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    runs = tmp_path / "runs"
    (runs / "good").mkdir(parents=True)
    results = {"created": "2026-12-02T10:00:00+00:00", "aggregates": {"n_samples": 2, "metrics": {}}}
    (runs / "good" / "results.json").write_text(json.dumps(results))
    (runs / "good" / "report.html").write_text("<p>report</p>")
    (runs / "broken").mkdir()
    (runs / "broken" / "results.json").write_text("{not json")
    (runs / "empty").mkdir()
    (tmp_path / "secret.html").write_text("outside")
    keys = json.dumps([{"key": READER, "scopes": ["default:read"], "name": "reader"}])
    settings = load_settings(
        index_dir=tmp_path / "index",
        **{
            "server.admin_api_key": ADMIN,
            "server.api_keys": SecretStr(keys),
            "server.eval_runs_dir": str(runs),
            "generator.backend": "openai",
            "generator.base_url": "http://127.0.0.1:9/v1",
        },
    )
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as c:
        yield c


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_runs_need_read_on_every_collection(client: TestClient) -> None:
    assert client.get("/v1/eval/runs").status_code == 401
    assert client.get("/v1/eval/runs", headers=auth(READER)).status_code == 403
    assert client.get("/v1/eval/runs/good/report", headers=auth(READER)).status_code == 403
    body = client.get("/v1/eval/runs", headers=auth(ADMIN)).json()
    assert body["enabled"] and [r["name"] for r in body["runs"]] == ["good"]  # broken, empty skipped
    assert body["runs"][0]["samples"] == 2 and body["runs"][0]["has_report"]


def test_a_report_is_served_without_scripts_and_names_stay_inside(client: TestClient) -> None:
    r = client.get("/v1/eval/runs/good/report", headers=auth(ADMIN))
    assert r.status_code == 200 and r.text == "<p>report</p>"
    assert "sandbox" in r.headers["content-security-policy"]
    for name in ("..", ".hidden", "..%2Fsecret.html", "empty", "nope"):
        assert client.get(f"/v1/eval/runs/{name}/report", headers=auth(ADMIN)).status_code == 404, name


def test_the_page_is_not_in_the_schema(client: TestClient) -> None:
    paths = client.get("/openapi.json", headers=auth(ADMIN)).json()["paths"]
    assert not [p for p in paths if p.startswith(("/ui", "/v1/eval/", "/v1/files")) or "/files/" in p]
    assert "/" not in paths
