"""Upload jobs outlive the server: a real `rag serve` is SIGKILLed while a job runs and started
again on the same index. The job is still known, with its outcome, and nothing it uploaded is
left on disk without a document or a job that refers to it.

The generator is an OpenAI-compatible endpoint on a closed port: uploads never call it, and the
server does not load the 7 GB local LLM.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from api.jobs import STOPPED_ERROR
from tests.serving import serve_process, upload, wait_for_job

KEY = "persist-test-admin-key-7"
AUTH = {"Authorization": f"Bearer {KEY}"}
ENV = {
    "RAG_GENERATOR__BACKEND": "openai",
    "RAG_GENERATOR__BASE_URL": "http://127.0.0.1:9/v1",
    "RAG_SERVER__ADMIN_API_KEY": KEY,
}
SMALL = {"kept.md": "The quokka relay keeps its queue in /var/spool/quokka."}
# Enough text that the job is still running (loading the embedder, then embedding) when killed.
BIG = {
    f"manual-{i:02d}.md": "\n\n".join(
        f"Manual {i} section {j}: the quokka relay, its queue and its archive, note {i * 100 + j}."
        for j in range(12)
    )
    for i in range(12)
}


@contextmanager
def _server(
    index_dir: Path, env: dict[str, str] | None = None
) -> Iterator[tuple[httpx.Client, subprocess.Popen]]:
    """`rag serve` in its own process group, so the test can SIGKILL it with its workers."""
    with serve_process(index_dir, ENV | (env or {}), timeout_s=300, client_timeout_s=60, own_group=True) as (
        proc,
        client,
    ):
        yield client, proc


def test_a_job_killed_mid_run_is_reported_after_a_restart_and_leaves_no_files(tmp_path: Path) -> None:
    """Regression: jobs lived in memory only, so after a kill the job id was unknown (404) and
    its uploaded files stayed under <index>/uploads with no record."""
    index_dir = tmp_path / "index"
    uploads = index_dir / "uploads"
    with _server(index_dir) as (client, proc):
        done = wait_for_job(client, upload(client, SMALL, AUTH))
        assert done["status"] == "succeeded", done
        killed = upload(client, BIG, AUTH)
        deadline = time.monotonic() + 60
        while client.get(f"/v1/jobs/{killed}").json()["status"] != "running":
            assert time.monotonic() < deadline, "the job never started"
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=20)
    assert list(uploads.glob("*/manual-*.md")), "the killed job's files should still be on disk here"
    # What else a kill can leave: a body cut off mid-upload, and a file no job or document names.
    (uploads / ".incoming" / "cut-off").mkdir(parents=True)
    (uploads / ".incoming" / "cut-off" / "00000").write_bytes(b"half a file")
    (uploads / ("0" * 64)).mkdir()
    (uploads / ("0" * 64) / "stray.md").write_text("no job, no document")

    with _server(index_dir) as (client, _):
        job = client.get(f"/v1/jobs/{killed}").json()
        assert job["status"] == "failed" and job["error"] == STOPPED_ERROR, job
        assert job["finished_at"] and len(job["files"]) == len(BIG)
        before = client.get(f"/v1/jobs/{done['id']}").json()
        assert before["status"] == "succeeded" and before["summary"] == done["summary"]
        assert [j["id"] for j in client.get("/v1/jobs").json()] == [killed, done["id"]]
        indexed = {d["id"] for d in client.get("/v1/documents").json()["documents"]}
        assert indexed == {"uploads/kept.md"}
        assert [p.name for p in uploads.glob("*/*")] == ["kept.md"]
        assert not (uploads / ".incoming").exists()
        assert (
            wait_for_job(client, upload(client, BIG, AUTH))["status"] == "succeeded"
        )  # uploading again works


def test_only_the_newest_finished_jobs_are_kept(tmp_path: Path) -> None:
    index_dir = tmp_path / "index"
    with _server(index_dir, {"RAG_SERVER__KEEP_JOBS": "2"}) as (client, _):
        ids = [wait_for_job(client, upload(client, {f"n{i}.md": f"Note {i}."}, AUTH))["id"] for i in range(3)]
        assert [j["id"] for j in client.get("/v1/jobs").json()] == ids[:0:-1]
        assert client.get(f"/v1/jobs/{ids[0]}").status_code == 404
        assert sorted(p.stem for p in (index_dir / "jobs").glob("*.json")) == sorted(ids[1:])
