"""Start `rag serve` as a real process on a loopback port, for end-to-end tests over HTTP."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_server(
    index_dir: Path,
    env: dict[str, str] | None = None,
    wait_for_generator: bool = False,
    timeout_s: float = 600,
) -> Iterator[httpx.Client]:
    port = free_port()
    full_env = os.environ | {"RAG_INDEX_DIR": str(index_dir)} | (env or {})
    log = open(Path(index_dir).parent / f"server-{port}.log", "w+")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=full_env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=300)
    try:
        _wait(client, proc, log, wait_for_generator, timeout_s)
        yield client
    finally:
        client.close()
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _wait(client: httpx.Client, proc: subprocess.Popen, log, want_generator: bool, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"rag serve exited with {proc.returncode}:\n{log.read()[-3000:]}")
        try:
            health = client.get("/healthz").json()
            if not want_generator or health["generator"] == "ready":
                return
            if health["generator"].startswith("error"):
                raise RuntimeError(f"generator failed to load: {health['generator']}")
        except httpx.TransportError:
            pass
        time.sleep(1)
    raise TimeoutError(f"rag serve not ready after {timeout_s} s")


def wait_for_job(client: Any, job_id: str, timeout_s: float = 300) -> dict:
    """Poll GET /v1/jobs/{id} (httpx.Client or FastAPI's TestClient) until the job has ended."""
    deadline = time.monotonic() + timeout_s
    job: dict = {}
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed"):
            return job
        time.sleep(0.2)
    raise TimeoutError(job)
