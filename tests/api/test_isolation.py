"""Collections and scoped keys, end to end over real HTTP on loopback: a key for one collection
can never see, search, cite, evaluate or delete anything of another.

Two collections, `alpha` (the Zephyr corpus) and `bravo` (documents holding a marker no alpha
document has), each indexed with the real MiniLM embedder into its own directory. Every route is
tried with no key, a wrong key, a revoked and an expired key, and alpha's key on bravo, and with
cross-collection ids (bravo's document and job ids sent to alpha's routes); no response may hold
one byte of bravo's text, and every refusal must have the right status.

The generator is a declared fake (`EchoGenerator`): the isolation under test is the service's
routing of requests to indexes, caches and jobs, not what a model writes, and the real model would
add minutes per answer. The fake repeats every known fact sentence it finds in its prompt, so an
answer shows exactly which collection's passages reached the prompt (grounding supports it, since
the sentence is in a passage).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.app import create_app
from api.keys import KeyFile
from ingest.pipeline import ingest
from rag.collections import collection_dir
from rag.components import build_components
from rag.config import Settings, load_settings
from rag.protocols import Embedder, Generation, GenerationParams, Message
from tests.conftest import build_corpus
from tests.serving import serving_in_thread, upload, wait_for_job

MARKER = "BRAVO-SECRET-7Q4Z"
BRAVO_FACT = f"The {MARKER} vault in Quillon opens every Tuesday at dawn."
BRAVO_DOCS = {
    "vault.md": f"# Quillon vault\n\n{BRAVO_FACT}\nOnly wardens hold the brass key of the {MARKER} vault.\n",
    "wardens.txt": f"Wardens of the {MARKER} vault rotate every month; their roster is kept in Quillon.\n",
}
ALPHA_FACT = "Zephyr stores snapshots in /var/lib/zephyr/snapshots and writes its own log to"
QUESTION = "When does the vault in Quillon open?"


class EchoGenerator:
    """A declared fake generator (see the module docstring): replies with the known facts found
    in its prompt, each cited [1]; "not found" when none is there."""

    name = "echo"

    def generate(self, messages: list[Message], params: GenerationParams) -> Generation:
        return Generation("".join(self.stream(messages, params)))

    def stream(self, messages: list[Message], params: GenerationParams) -> Iterator[str]:
        prompt = "\n".join(m["content"] for m in messages)
        found = [fact for fact in (BRAVO_FACT, ALPHA_FACT) if fact in " ".join(prompt.split())]
        yield " ".join(f"{fact} [1]" for fact in found) or "The documents do not contain the answer."


@pytest.fixture(scope="module")
def two_collections(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("isolation")
    settings = load_settings(index_dir=root / "index", **{"server.keys_file": str(root / "keys.json")})
    alpha_docs = build_corpus(root / "alpha-docs")
    bravo_docs = root / "bravo-docs"
    bravo_docs.mkdir()
    for name, text in BRAVO_DOCS.items():
        (bravo_docs / name).write_text(text)
    for name, docs in (("alpha", alpha_docs), ("bravo", bravo_docs)):
        target = settings.model_copy(update={"index_dir": collection_dir(settings, name)})
        ingest([docs], target, embedder)
    keys = KeyFile(root / "keys.json")
    tokens = {
        "alpha": keys.create("alpha-rw", ["alpha:write"])[1],
        "bravo": keys.create("bravo-rw", ["bravo:write"])[1],
        "revoked": keys.create("gone", ["bravo:admin"]),
        "expired": keys.create("old", ["bravo:admin"], expires_at=datetime.now(UTC) + timedelta(seconds=2))[
            1
        ],
    }
    revoked_record, revoked_token = tokens["revoked"]
    keys.revoke(revoked_record.id)
    tokens["revoked"] = revoked_token
    tokens["wrong"] = "rag_0000_not-a-key-at-all"
    return {"settings": settings, "tokens": tokens}


@pytest.fixture(scope="module")
def client(two_collections: dict[str, Any], embedder: Embedder) -> Iterator[httpx.Client]:
    settings: Settings = two_collections["settings"]
    components = build_components(settings, embedder=embedder, generator=EchoGenerator())
    with serving_in_thread(create_app(settings, components=components)) as c:
        yield c


def auth(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def bravo_ids(client: httpx.Client, token: str) -> tuple[str, str]:
    """One bravo document id and one bravo job id, fetched with bravo's own key."""
    headers = auth(token)
    job_id = upload(client, {"extra.md": f"Extra note: {BRAVO_FACT}"}, headers, collection="bravo")
    wait_for_job(client, job_id, collection="bravo", headers=headers)
    docs = client.get("/v1/collections/bravo/documents", headers=headers).json()["documents"]
    return docs[0]["id"], job_id


def routes(prefix: str, doc_id: str, job_id: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(method, path, request kwargs) of every route that reads or writes a collection."""
    ask = {"question": QUESTION}
    return [
        ("POST", f"{prefix}/search", {"json": {"query": QUESTION}}),
        ("POST", f"{prefix}/query", {"json": ask}),
        ("POST", f"{prefix}/query", {"json": {**ask, "stream": True}}),
        ("POST", f"{prefix}/chat/completions", {"json": _chat()}),
        ("GET", f"{prefix}/documents", {}),
        ("GET", f"{prefix}/documents/{doc_id}", {}),
        ("DELETE", f"{prefix}/documents/{doc_id}", {}),
        ("GET", f"{prefix}/jobs", {}),
        ("GET", f"{prefix}/jobs/{job_id}", {}),
        ("GET", f"{prefix}/index", {}),
        ("POST", f"{prefix}/documents", {"files": {"files": ("x.md", b"# planted\n\nplanted text\n")}}),
    ]


def _chat(**extra: Any) -> dict[str, Any]:
    return {"model": "qwen2.5-coder-1.5b", "messages": [{"role": "user", "content": QUESTION}], **extra}


def assert_no_bravo_content(response: httpx.Response) -> None:
    body = response.text
    for text in (MARKER, "Tuesday", "wardens", "Wardens", "brass"):  # not words of the questions
        assert text not in body, f"{response.request.method} {response.request.url}: {body[:400]}"


def test_every_bravo_route_refuses_every_key_but_bravo_s(
    two_collections: dict[str, Any], client: httpx.Client
) -> None:
    tokens = two_collections["tokens"]
    doc_id, job_id = bravo_ids(client, tokens["bravo"])
    expected = {None: 401, "wrong": 401, "revoked": 401, "expired": 401, "alpha": 403}
    import time

    time.sleep(2.1)  # the expired key's two seconds are over
    for who, status in expected.items():
        token = tokens[who] if who else None
        for method, path, kwargs in routes("/v1/collections/bravo", doc_id, job_id):
            r = client.request(method, path, headers=auth(token), **kwargs)
            assert r.status_code == status, (who, method, path, r.status_code, r.text[:300])
            assert_no_bravo_content(r)
    # Bravo's own key still reads its document (nothing above deleted or planted anything).
    listed = client.get("/v1/collections/bravo/documents", headers=auth(tokens["bravo"])).json()
    assert doc_id in {d["id"] for d in listed["documents"]}
    assert "x.md" not in json.dumps(listed) and "uploads/x.md" not in json.dumps(listed)


def test_bravo_s_ids_sent_to_alpha_s_routes_find_nothing(
    two_collections: dict[str, Any], client: httpx.Client
) -> None:
    tokens = two_collections["tokens"]
    doc_id, job_id = bravo_ids(client, tokens["bravo"])
    alpha = auth(tokens["alpha"])
    for path in (f"/v1/collections/alpha/documents/{doc_id}", f"/v1/collections/alpha/jobs/{job_id}"):
        r = client.get(path, headers=alpha)
        assert r.status_code == 404, (path, r.text)
        assert_no_bravo_content(r)
    r = client.delete(f"/v1/collections/alpha/documents/{doc_id}", headers=alpha)
    assert r.status_code == 404
    assert doc_id in {
        d["id"]
        for d in client.get("/v1/collections/bravo/documents", headers=auth(tokens["bravo"])).json()[
            "documents"
        ]
    }
    # The default collection (no index) is not alpha's either: its key has no grant there.
    assert client.get("/v1/documents", headers=alpha).status_code == 403


def test_alpha_s_answers_searches_and_filters_never_hold_bravo_text(
    two_collections: dict[str, Any], client: httpx.Client
) -> None:
    tokens = two_collections["tokens"]
    bravo, alpha = auth(tokens["bravo"]), auth(tokens["alpha"])
    # Bravo asks first, so its answer is in bravo's answer cache before alpha asks the same.
    first = client.post("/v1/collections/bravo/query", json={"question": QUESTION}, headers=bravo).json()
    assert MARKER in first["answer"] and not first["refused"]
    again = client.post("/v1/collections/bravo/query", json={"question": QUESTION}, headers=bravo).json()
    assert again["cached"] == "exact"
    attempts = [
        ("POST", "/v1/collections/alpha/query", {"json": {"question": QUESTION}}),
        ("POST", "/v1/collections/alpha/query", {"json": {"question": QUESTION, "stream": True}}),
        (
            "POST",
            "/v1/collections/alpha/search",
            {"json": {"query": "Quillon vault warden key", "top_k": 50}},
        ),
        (
            "POST",
            "/v1/collections/alpha/search",
            {"json": {"query": "vault", "filters": {"source_prefix": "/"}}},
        ),
        ("POST", "/v1/collections/alpha/search", {"json": {"query": "vault", "mode": "keyword"}}),
        ("POST", "/v1/collections/alpha/chat/completions", {"json": _chat()}),
        ("POST", "/v1/chat/completions", {"json": _chat(collection="alpha")}),
        ("GET", "/v1/collections/alpha/documents", {}),
        ("GET", "/v1/collections/alpha/jobs", {}),
        ("GET", "/v1/collections", {}),
    ]
    for method, path, kwargs in attempts:
        r = client.request(method, path, headers=alpha, **kwargs)
        assert r.status_code == 200, (path, r.status_code, r.text[:300])
        assert_no_bravo_content(r)
    names = [c["name"] for c in client.get("/v1/collections", headers=alpha).json()["collections"]]
    assert names == ["alpha"]


def test_chat_names_a_collection_in_the_body_or_the_path_and_both_are_checked(
    two_collections: dict[str, Any], client: httpx.Client
) -> None:
    alpha = auth(two_collections["tokens"]["alpha"])
    r = client.post("/v1/chat/completions", json=_chat(collection="bravo"), headers=alpha)
    assert r.status_code == 403 and r.json()["error"]["param"] == "collection"
    assert_no_bravo_content(r)
    r = client.post("/v1/collections/alpha/chat/completions", json=_chat(collection="bravo"), headers=alpha)
    assert r.status_code == 400
    r = client.post("/v1/collections/nosuch/chat/completions", json=_chat(), headers=alpha)
    assert r.status_code == 403  # no grant there: whether it exists is none of this key's business


def test_evaluate_models_and_metrics_need_a_key_once_keys_exist(
    two_collections: dict[str, Any], client: httpx.Client
) -> None:
    alpha = auth(two_collections["tokens"]["alpha"])
    body = {"question": "q?", "answer": "a.", "contexts": ["a."]}
    assert client.post("/v1/evaluate", json=body).status_code == 401
    assert client.post("/v1/evaluate", json=body, headers=alpha).status_code == 200
    assert client.get("/v1/models").status_code == 401
    assert client.get("/v1/models", headers=alpha).status_code == 200
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers=alpha).status_code == 403  # needs *:admin
    health = client.get("/healthz")  # liveness stays open, but tells nothing of the documents
    assert health.status_code == 200 and health.json()["index"]["documents"] is None


def test_a_key_revoked_while_the_server_runs_is_refused_at_once(
    two_collections: dict[str, Any], client: httpx.Client
) -> None:
    settings: Settings = two_collections["settings"]
    keys = KeyFile(Path(str(settings.server.keys_file)))
    record, token = keys.create("short-lived", ["alpha:read"])
    assert client.get("/v1/collections/alpha/index", headers=auth(token)).status_code == 200
    keys.revoke(record.id)
    r = client.get("/v1/collections/alpha/index", headers=auth(token))
    assert r.status_code == 401 and token not in r.text
