"""Distributed ingestion on a real two-node Ray cluster (conftest.py): the index the local path
builds, the same incremental semantics run after run, a worker killed mid-task costing only a
retry of its files, and the server's upload jobs going to the cluster when it has an address."""

from __future__ import annotations

import os
import shutil
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from ingest.pipeline import IngestSummary, ingest
from rag.config import Settings, load_settings
from rag.index.reader import IndexReader
from rag.index.sqlite_store import visible
from rag.protocols import Embedder
from tests.distributed.barrier import BarrierLoader
from tests.distributed.conftest import CORRUPT, PDF, SAMPLE_FILES

GOOD = len(SAMPLE_FILES) + 1  # and the small PDF
KEY = "distributed-tests-admin-key"
QUERIES = (
    "which user id range is reserved for system users",
    "how do I pin a package version with apt",
    "how do I restore a single file from a snapshot",
)
CHANGED = "systemd-uids-gids.md"


def _settings(index_dir: Path, address: str | None = None, **extra: Any) -> Settings:
    # Two files per task: the five good files and the corrupt one make three tasks on two actors.
    overrides = {"embedding.backend": "onnx", "cluster.files_per_task": 2, **extra}
    return load_settings(index_dir=index_dir, **{"cluster.address": address, **overrides})


def _contents(index_dir: Path) -> dict[str, Any]:
    """Everything a user can observe of an index: documents, chunks (ids included), counts."""
    reader = IndexReader.open(index_dir)
    reader.check_consistent()
    docs = [{k: d[k] for k in ("id", "source", "hash", "metadata", "chunks")} for d in reader.documents()]
    chunks = reader._conn.execute(
        'SELECT id, document_id, source, page, start, "end", text FROM chunks '
        f"WHERE {visible(reader.version)} ORDER BY id"
    ).fetchall()
    return {"documents": docs, "chunks": chunks, "size": reader.size}


def _hits(index_dir: Path, embedder: Embedder, k: int = 5) -> list[list[tuple[int, float]]]:
    reader = IndexReader.open(index_dir)
    return [
        [(int(h.chunk.id or 0), h.score) for h in reader.search(embedder.embed_query(q), k)] for q in QUERIES
    ]


def _same_hits(a: list[list[tuple[int, float]]], b: list[list[tuple[int, float]]]) -> None:
    for hits_a, hits_b in zip(a, b, strict=True):
        assert [i for i, _ in hits_a] == [i for i, _ in hits_b]
        assert all(abs(sa - sb) <= 1e-5 for (_, sa), (_, sb) in zip(hits_a, hits_b, strict=True))


def _outcome(summary: IngestSummary) -> dict[str, Any]:
    return {k: v for k, v in summary.to_dict().items() if k not in ("seconds", "index_version", "workers")}


def test_distributed_ingest_builds_the_index_the_local_path_builds(
    ray_address: str, sample_dir: Path, fp32_embedder: Embedder, tmp_path: Path
) -> None:
    local = ingest([sample_dir], _settings(tmp_path / "local"), fp32_embedder)
    remote = ingest([sample_dir], _settings(tmp_path / "ray", ray_address), fp32_embedder)
    assert (remote.added, remote.failed, remote.index_version) == (GOOD, 1, 1)
    assert (remote.workers, local.workers) == (2, 0)
    assert remote.errors[0]["path"] == (sample_dir / CORRUPT).as_posix()
    assert _outcome(remote) == _outcome(local)  # the corrupt file's message too
    assert _contents(tmp_path / "ray") == _contents(tmp_path / "local")
    _same_hits(_hits(tmp_path / "ray", fp32_embedder), _hits(tmp_path / "local", fp32_embedder))


def test_reruns_skip_replace_and_delete_as_the_local_path_does(
    ray_address: str, sample_dir: Path, fp32_embedder: Embedder, tmp_path: Path
) -> None:
    """The same three runs (first, one file changed, one file gone with --sync) through both paths,
    which must agree run by run; each distributed run touches only what changed."""
    local, remote = _settings(tmp_path / "local"), _settings(tmp_path / "ray", ray_address)
    ingest([sample_dir], local, fp32_embedder)
    ingest([sample_dir], remote, fp32_embedder)
    first = _contents(tmp_path / "ray")

    changed = sample_dir / CHANGED
    changed.write_text(
        changed.read_text(encoding="utf-8") + "\nUID 4242 is reserved for the backup daemon.\n"
    )
    summaries = [ingest([sample_dir], s, fp32_embedder) for s in (local, remote)]
    assert _outcome(summaries[1]) == _outcome(summaries[0])
    assert (summaries[1].updated, summaries[1].unchanged, summaries[1].added) == (1, GOOD - 1, 0)
    second = _contents(tmp_path / "ray")
    assert second == _contents(tmp_path / "local")
    kept = [c for c in first["chunks"] if not c[1].endswith(CHANGED)]
    assert [c for c in second["chunks"] if not c[1].endswith(CHANGED)] == kept  # same ids, untouched

    noop = ingest([sample_dir], remote, fp32_embedder)
    assert (noop.index_version, noop.chunks_embedded, noop.unchanged) == (None, 0, GOOD)

    (sample_dir / "apt-README.md").unlink()
    summaries = [ingest([sample_dir], s, fp32_embedder, sync=True) for s in (local, remote)]
    assert summaries[1].deleted == summaries[0].deleted == 1
    assert _contents(tmp_path / "ray") == _contents(tmp_path / "local")
    _same_hits(_hits(tmp_path / "ray", fp32_embedder), _hits(tmp_path / "local", fp32_embedder))


def test_a_worker_killed_mid_task_costs_a_retry_and_the_index_is_whole(
    ray_address: str, sample_dir: Path, fp32_embedder: Embedder, tmp_path: Path
) -> None:
    """SIGKILL the actor process while it parses a file (file_timeout_s 0: parsing runs in the
    actor's own process, so the pid the barrier records is the actor's): Ray restarts the actor
    and re-runs its task, and the job ends with every good file indexed once."""
    markers = tmp_path / "markers"
    markers.mkdir()
    settings = _settings(tmp_path / "ray", ray_address, **{"ingest.file_timeout_s": 0})
    loader = BarrierLoader(CHANGED, markers)
    with ThreadPoolExecutor(1) as pool:
        job = pool.submit(ingest, [sample_dir], settings, fp32_embedder, loader=loader)
        first = _wait_for(markers / "attempt-1", job)
        os.kill(int(first.read_text()), signal.SIGKILL)
        summary = job.result(timeout=240)
    retry = markers / "attempt-2"
    assert retry.exists() and retry.read_text() != first.read_text()  # re-run in a new process
    assert (summary.added, summary.failed) == (GOOD, 1)
    assert [e["path"] for e in summary.errors] == [(sample_dir / CORRUPT).as_posix()]
    contents = _contents(tmp_path / "ray")  # check_consistent: rows, vectors, keyword terms agree
    assert sorted(Path(d["source"]).name for d in contents["documents"]) == sorted([*SAMPLE_FILES, PDF])
    spans = [(c[1], c[4], c[5]) for c in contents["chunks"]]
    assert len(spans) == len(set(spans)) == sum(d["chunks"] for d in contents["documents"])


def _wait_for(path: Path, job: Any, timeout_s: float = 180.0) -> Path:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if job.done():
            job.result()  # raises what went wrong
            pytest.fail(f"the ingest ended before the barrier file was parsed ({path.name} never written)")
        if time.monotonic() > deadline:
            pytest.fail(f"no worker reached the barrier within {timeout_s:g} s")
        time.sleep(0.05)
    return path


def test_the_servers_upload_jobs_run_on_its_configured_cluster(
    ray_address: str, fp32_embedder: Embedder, tmp_path: Path
) -> None:
    from api.app import create_app
    from rag.components import build_components
    from tests.serving import serving_in_thread, upload, wait_for_job

    extra = {"generator.backend": "openai", "server.admin_api_key": KEY}
    settings = _settings(tmp_path / "index", ray_address, **extra)
    auth = {"Authorization": f"Bearer {KEY}"}
    components = build_components(settings, embedder=fp32_embedder)
    files = {
        "relay.md": "The zephyr-relay daemon listens on TCP port 7341.",
        "retention.txt": "Zephyr keeps daily snapshots for 14 days.",
        "empty.md": "",  # an empty file fails alone
    }
    with serving_in_thread(create_app(settings, components=components)) as client:
        job = wait_for_job(client, upload(client, files, auth), headers=auth)
        assert job["status"] == "succeeded", job
        assert (job["summary"]["added"], job["summary"]["failed"]) == (2, 1), job
        assert job["summary"]["workers"] == 2  # parsed and embedded on the cluster
        query = {"query": "which port does the relay use", "top_k": 1}
        found = client.post("/v1/search", json=query, headers=auth)
        assert found.json()["results"][0]["source"] == "uploads/relay.md"
    shutil.rmtree(tmp_path / "index", ignore_errors=True)


def test_rag_ingest_with_ray_from_the_command_line(
    ray_address: str, sample_dir: Path, tmp_path: Path
) -> None:
    """`rag ingest PATH --ray ADDRESS` as a user runs it: its own process joins the cluster."""
    import json
    import subprocess
    import sys

    rag = Path(sys.executable).with_name("rag")
    cmd = [
        str(rag),
        "ingest",
        str(sample_dir),
        "--index",
        str(tmp_path / "index"),
        "--ray",
        ray_address,
        "--json",
    ]
    env = {**os.environ, "RAG_EMBEDDING__BACKEND": "onnx"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert (summary["added"], summary["failed"], summary["workers"]) == (GOOD, 1, 2), summary
    IndexReader.open(tmp_path / "index").check_consistent()
