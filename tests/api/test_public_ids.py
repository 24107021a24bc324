"""Over HTTP, documents ingested from the server's disk are named by an opaque public id, never by
their stored id (a normalised absolute path): listings, GET, DELETE, search hits and citations.

In-process (FastAPI's TestClient) over an index built by the real ingest pipeline and embedder;
the generator is an OpenAI-compatible endpoint on a closed port and is never called.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.public_ids import public_id
from api.schemas import QueryResponse
from ingest.pipeline import ingest
from rag.config import load_settings
from rag.index.reader import IndexReader
from rag.pipeline import Answer, Citation
from rag.protocols import Embedder

KEY = "public-ids-admin-key-0123"
AUTH = {"Authorization": f"Bearer {KEY}"}
TEXT = "The quokka-gateway forwards syslog on UDP port 6514 to the archive host."


def _serve(root: Path, embedder: Embedder) -> Iterator[tuple[TestClient, Path, str]]:
    (root / "docs").mkdir()
    (root / "docs" / "gateway.md").write_text(TEXT)
    settings = load_settings(
        index_dir=root / "index",
        **{
            "generator.backend": "openai",
            "generator.base_url": "http://127.0.0.1:9/v1",
            "server.admin_api_key": KEY,
        },
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)  # ingest with a relative path, as `rag ingest docs/` would
        assert ingest([Path("docs/gateway.md")], settings, embedder).added == 1
    stored = (root / "docs" / "gateway.md").resolve().as_posix()
    with TestClient(create_app(settings), base_url="http://127.0.0.1", headers=AUTH) as client:
        yield client, root, stored


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, embedder: Embedder
) -> Iterator[tuple[TestClient, Path, str]]:
    yield from _serve(tmp_path_factory.mktemp("public"), embedder)


@pytest.fixture
def fresh(tmp_path: Path, embedder: Embedder) -> Iterator[tuple[TestClient, Path, str]]:
    """Its own index: the module's `served` one loses its document to the delete test."""
    yield from _serve(tmp_path, embedder)


def test_listing_and_search_show_an_opaque_id_not_the_server_path(served) -> None:
    """Regression: the id was the absolute path on the server (/tmp/.../docs/gateway.md)."""
    client, root, stored = served
    opaque = "doc_" + hashlib.sha256(stored.encode()).hexdigest()[:16]
    listing = client.get("/v1/documents").json()["documents"]
    assert [(d["id"], d["source"]) for d in listing] == [(opaque, "docs/gateway.md")]
    hits = client.post("/v1/search", json={"query": "syslog port", "top_k": 1}).json()["results"]
    assert hits[0]["document_id"] == opaque and hits[0]["source"] == "docs/gateway.md"
    everything = client.get("/v1/documents").text + client.post("/v1/search", json={"query": "x"}).text
    assert str(root) not in everything


def test_get_takes_the_public_id_and_not_the_path(served) -> None:
    client, _, stored = served
    opaque = public_id(stored)
    doc = client.get(f"/v1/documents/{opaque}")
    assert doc.status_code == 200 and doc.json()["id"] == opaque and doc.json()["chunks"] == 1
    assert client.get(f"/v1/documents/{stored}").status_code == 404
    assert client.get("/v1/documents/doc_0000000000000000").status_code == 404


def test_citations_show_the_public_id(served) -> None:
    client, root, stored = served
    reader = IndexReader.open(root / "index")
    hit = reader.search(client.app.state.rag.embedder.embed_query(TEXT), 1)[0]
    reader.close()
    timings = {"retrieve_ms": 1.0, "generate_ms": 1.0}
    answer = Answer("q", "It is 6514 [1].", False, "supported", [Citation(1, hit)], [hit], timings)
    assert QueryResponse.from_answer(answer).citations[0].document_id == public_id(stored)


def test_delete_takes_the_public_id(served) -> None:
    client, _, stored = served
    opaque = public_id(stored)
    assert client.delete(f"/v1/documents/{stored}", headers=AUTH).status_code == 404
    r = client.delete(f"/v1/documents/{opaque}", headers=AUTH)
    assert r.status_code == 200 and r.json()["deleted"] == opaque
    assert client.get(f"/v1/documents/{opaque}").status_code == 404
    assert client.get("/v1/documents").json()["documents"] == []


def test_upload_ids_stay_readable() -> None:
    assert public_id("uploads/notes.md") == "uploads/notes.md"
    assert public_id("/srv/docs/a.md") == public_id("/srv/docs/a.md") != public_id("/srv/docs/b.md")


def test_a_source_prefix_filter_cannot_probe_the_server_path(fresh) -> None:
    """Regression: `source_prefix` also matched the stored id, so guessing prefixes of the
    absolute path ("/tmp/") revealed where the documents live."""
    client, _, stored = fresh
    probe = {"query": "syslog port", "filters": {"source_prefix": stored[:5]}}
    assert client.post("/v1/search", json=probe).json()["results"] == []
    by_source = {"query": "syslog port", "filters": {"source_prefix": "docs/"}}
    assert len(client.post("/v1/search", json=by_source).json()["results"]) == 1
