"""Collections held open are bounded (collections.max_loaded, least recently used closed first),
a collection with an unfinished upload job is never closed, and a collection is created by its
first upload (and not by a refused one). Real embedder, real indexes, real HTTP on loopback; no
key is configured, so reads are open (writes use the admin key)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.app import create_app
from ingest.pipeline import ingest
from rag.collections import collection_dir, names, settings_for
from rag.components import build_components
from rag.config import load_settings
from rag.index.writer import IndexWriter
from rag.protocols import Embedder
from tests.serving import serving_in_thread, upload, wait_for_job

KEY = "collections-test-admin-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
TEXTS = {
    "alpha": "The alpha relay listens on TCP port 7341.",
    "bravo": "The bravo archive keeps weekly snapshots for 8 weeks.",
    "charlie": "The charlie mirror syncs every night at 02:00.",
}


@pytest.fixture
def served(tmp_path: Path, embedder: Embedder) -> Iterator[tuple[httpx.Client, Any]]:
    settings = load_settings(
        index_dir=tmp_path / "index",
        **{
            "collections.max_loaded": 1,
            "server.admin_api_key": KEY,
            "generator.backend": "openai",
            "generator.base_url": "http://127.0.0.1:9/v1",
        },
    )
    for name, text in TEXTS.items():
        docs = tmp_path / f"{name}-docs"
        docs.mkdir()
        (docs / f"{name}.md").write_text(text)
        ingest([docs], settings_for(settings, name), embedder)
    app = create_app(settings, components=build_components(settings, embedder=embedder))
    with serving_in_thread(app) as client:
        client.headers.update(AUTH)
        yield client, app


def loaded(app: Any) -> list[str]:
    return [c.name for c in app.state.rag.collections.loaded()]


def search(client: httpx.Client, name: str) -> str:
    r = client.post(f"/v1/collections/{name}/search", json={"query": "what does it do", "top_k": 1})
    assert r.status_code == 200, r.text
    return r.json()["results"][0]["text"]


def test_only_max_loaded_collections_stay_open_and_each_still_answers(
    served: tuple[httpx.Client, Any],
) -> None:
    client, app = served
    for name in ("alpha", "bravo", "charlie", "alpha"):
        assert search(client, name) == TEXTS[name]
        assert loaded(app) == [name]  # the default one (opened at start) went first


def test_a_collection_with_a_running_job_is_not_closed(served: tuple[httpx.Client, Any]) -> None:
    client, app = served
    alpha = app.state.rag.collections.get("alpha")
    with IndexWriter.for_existing(alpha.settings.index_dir):  # the job waits for this lock
        job = upload(client, {"more.md": "The alpha relay also speaks TLS."}, AUTH, collection="alpha")
        assert search(client, "bravo") == TEXTS["bravo"]
        assert sorted(loaded(app)) == ["alpha", "bravo"]  # over the bound while alpha is busy
    assert wait_for_job(client, job, collection="alpha", headers=AUTH)["status"] == "succeeded"
    assert search(client, "charlie") == TEXTS["charlie"]
    assert loaded(app) == ["charlie"]


def test_the_first_upload_creates_a_collection_and_a_refused_one_does_not(
    served: tuple[httpx.Client, Any],
) -> None:
    client, app = served
    settings = app.state.rag.settings
    refused = client.post("/v1/collections/delta/documents", files=[("files", ("..", b"x"))])
    assert refused.status_code == 422
    assert not collection_dir(settings, "delta").exists() and "delta" not in names(settings)
    assert client.post("/v1/collections/delta/search", json={"query": "x"}).status_code == 404
    job = upload(client, {"delta.md": "The delta vault opens at noon."}, AUTH, collection="delta")
    assert wait_for_job(client, job, collection="delta", headers=AUTH)["status"] == "succeeded"
    assert search(client, "delta") == "The delta vault opens at noon."
    assert "delta" in [c["name"] for c in client.get("/v1/collections").json()["collections"]]


def test_a_key_over_max_jobs_per_key_gets_429_until_its_job_ends(served: tuple[httpx.Client, Any]) -> None:
    client, app = served
    limit = app.state.rag.settings.server.max_jobs_per_key
    alpha = app.state.rag.collections.get("alpha")
    with IndexWriter.for_existing(alpha.settings.index_dir):  # the jobs wait for this lock
        jobs = [upload(client, {f"n{i}.md": f"Note {i}."}, AUTH, collection="alpha") for i in range(limit)]
        over = client.post("/v1/collections/bravo/documents", files=[("files", ("x.md", b"x"))])
        assert over.status_code == 429 and over.headers["retry-after"]
        assert "server.max_jobs_per_key" in over.json()["error"]
    for job in jobs:
        wait_for_job(client, job, collection="alpha", headers=AUTH)
    again = upload(client, {"later.md": "Later note."}, AUTH, collection="bravo")
    assert wait_for_job(client, again, collection="bravo", headers=AUTH)["status"] == "succeeded"
