"""The real server (`rag serve` in a subprocess, real MiniLM) keeps answering /v1/search while an
upload job writes a new version, and every response comes wholly from one committed version.

The generator is set to an OpenAI-compatible endpoint on a closed port (127.0.0.1:9): /v1/search
never calls the generator, and this way the server does not load the 7 GB local LLM.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ingest.pipeline import ingest
from rag.config import load_settings
from rag.index import layout
from rag.index.reader import IndexReader
from rag.protocols import Embedder
from tests.serving import running_server, upload, wait_for_job

KEY = "live-test-admin-key-42"
AUTH = {"Authorization": f"Bearer {KEY}"}
ENV = {
    "RAG_GENERATOR__BACKEND": "openai",
    "RAG_GENERATOR__BASE_URL": "http://127.0.0.1:9/v1",
    "RAG_SERVER__ADMIN_API_KEY": KEY,
    "RAG_SERVER__MAX_UPLOAD_MB": "5",
    "RAG_SERVER__RATE_LIMIT_PER_S": "0",  # the hammer below asks as fast as it can, on purpose
}
QUERIES = ["which TCP port does the relay listen on", "how long are snapshots kept", "restore a single file"]
BEFORE = {
    "relay.md": "The zephyr-relay daemon listens on TCP port 7341.",
    "retention.md": "Zephyr keeps daily snapshots for 14 days and weekly snapshots for 8 weeks.",
    "restore.md": "Restore a single file with zephyr restore --snapshot ID --path FILE.",
}
# The job that runs during the searches: one changed document, plus enough new text that it
# takes a while to embed.
AFTER = {"relay.md": "The zephyr-relay daemon moved to TCP port 7400 and accepts only TLS."} | {
    f"handbook-{i:02d}.md": "\n\n".join(
        f"Handbook {i} section {j}: the relay, snapshots and restores, operations note {i * 100 + j}."
        for j in range(12)
    )
    for i in range(12)
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[httpx.Client, Path]]:
    index_dir = tmp_path_factory.mktemp("live") / "index"
    with running_server(index_dir, env=ENV, timeout_s=300) as client:
        yield client, index_dir


def _version_contents(index_dir: Path, version: int) -> tuple[set[int], set[str]]:
    reader = IndexReader(index_dir, index_dir / layout.manifest_name(version))
    reader.check_consistent()
    return reader.chunk_ids(), {d["id"] for d in reader.documents()}


def test_search_during_an_upload_job_is_never_mixed(server: tuple[httpx.Client, Path]) -> None:
    client, index_dir = server
    first = wait_for_job(client, upload(client, BEFORE, AUTH))
    assert first["status"] == "succeeded", first
    old = first["summary"]["index_version"]

    responses: list[tuple[float, dict]] = []  # (time answered, body)
    failures: list[str] = []
    stop = threading.Event()

    def hammer() -> None:
        with httpx.Client(base_url=str(client.base_url), timeout=60, headers=AUTH) as c:
            n = 0
            while not stop.is_set():
                try:
                    r = c.post("/v1/search", json={"query": QUERIES[n % len(QUERIES)], "top_k": 5})
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))
                    continue
                if r.status_code != 200:
                    failures.append(f"{r.status_code}: {r.text}")
                else:
                    responses.append((time.monotonic(), r.json()))
                n += 1

    thread = threading.Thread(target=hammer)
    thread.start()
    try:
        time.sleep(1.0)
        job_id = upload(client, AFTER, AUTH)
        running: list[float] = []  # when the job was seen running with progress
        deadline = time.monotonic() + 300
        while (job := client.get(f"/v1/jobs/{job_id}").json())["status"] not in ("succeeded", "failed"):
            if job["status"] == "running" and job["progress"]:
                running.append(time.monotonic())
            assert time.monotonic() < deadline
            time.sleep(0.1)
        time.sleep(1.5)
    finally:
        stop.set()
        thread.join()

    assert job["status"] == "succeeded", job
    new = job["summary"]["index_version"]
    assert new == old + 1 and job["summary"]["updated"] == 1 and job["summary"]["added"] == 12
    assert running, "the job's progress was never visible while it ran"
    during = [b for t, b in responses if running[0] <= t <= running[-1]]
    assert any(b["index_version"] == old for b in during)  # answered while the job was writing
    assert not failures, failures[:5]
    versions = [body["index_version"] for _, body in responses]
    assert set(versions) == {old, new}, "searches should have run before and after the commit"
    assert versions == sorted(versions), "once switched, the server never answers from the old version"
    contents = {v: _version_contents(index_dir, v) for v in (old, new)}
    for _, body in responses:
        chunk_ids, doc_ids = contents[body["index_version"]]
        got_chunks = {h["chunk_id"] for h in body["results"]}
        got_docs = {h["document_id"] for h in body["results"]}
        assert got_chunks <= chunk_ids and got_docs <= doc_ids, body
        assert len(body["results"]) == 5 or body["index_version"] == old
    relay_texts = {h["text"] for _, b in responses if b["index_version"] == new for h in b["results"]}
    assert not any("7341" in t for t in relay_texts)  # the replaced text is gone from the new version


def test_the_server_picks_up_a_commit_by_another_process(
    server: tuple[httpx.Client, Path], embedder: Embedder, tmp_path: Path
) -> None:
    client, index_dir = server
    before = client.get("/v1/index").json()["version"]
    (tmp_path / "cli.md").write_text("Committed by a CLI ingest in another process.")
    summary = ingest([tmp_path / "cli.md"], load_settings(index_dir=index_dir), embedder)
    assert summary.index_version == before + 1
    deadline = time.monotonic() + 10
    while client.get("/v1/index").json()["version"] != before + 1:
        assert time.monotonic() < deadline, "the server kept answering from the old version"
        time.sleep(0.2)
    hits = client.post("/v1/search", json={"query": "committed by a CLI ingest", "top_k": 1}).json()
    assert hits["results"][0]["source"].endswith("cli.md")


def test_an_endless_upload_is_cut_off_at_the_limit(server: tuple[httpx.Client, Path]) -> None:
    client, index_dir = server
    sent = 0
    boundary = "liveboundary"

    head = f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="huge.txt"\r\n\r\n'

    def body() -> Iterator[bytes]:  # 200 MB, chunked (no Content-Length), limit is 5 MB
        nonlocal sent
        yield head.encode()
        for _ in range(3200):
            sent += 65536
            yield b"z" * 65536

    headers = AUTH | {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    try:
        r = client.post("/v1/documents", headers=headers, content=body())
        assert r.status_code == 413 and "over the limit of 5 MiB" in r.json()["error"]
    except httpx.TransportError:
        pass  # the server answered 413 and closed while we were still sending: also fine
    assert sent < 100 * 2**20, f"the server read {sent} bytes of a 200 MB upload with a 5 MB limit"
    time.sleep(0.5)
    assert not any((index_dir / "uploads" / ".incoming").iterdir())
    assert client.get("/healthz").status_code == 200  # and the server is still fine
