"""Real HTTP on loopback for end-to-end tests: `serving_in_thread(app)` serves an app built in
this process (so it can hold the session's models) under uvicorn in a background thread;
`running_server` starts `rag serve` as a real process (the smoke test of the command itself)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def uvicorn_in_thread(
    app: Any, timeout_s: float = 10, **config: Any
) -> Iterator[tuple[str, threading.Thread]]:
    """Run ``app`` under uvicorn on a free loopback port in a daemon thread; yields (base URL,
    thread) once uvicorn has started, stops it on exit. ``config`` goes to ``uvicorn.Config``.

    The socket is bound here and handed to uvicorn, so no other process can take the port
    between choosing and binding it."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, **{"log_level": "warning", **config}))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="uvicorn", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + timeout_s
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn did not start within {timeout_s} s (see the log above)")
            time.sleep(0.02)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", thread
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


@contextmanager
def serving_in_thread(
    app: Any, timeout_s: float = 30, client_timeout_s: float = 300
) -> Iterator[httpx.Client]:
    """Serve ``app`` (e.g. ``create_app(settings, components=...)``) in this process
    (``uvicorn_in_thread``); yields a client once /healthz answers. The app's lifespan runs as
    under `rag serve`."""
    with uvicorn_in_thread(app, timeout_s, timeout_graceful_shutdown=5) as (url, thread):
        client = httpx.Client(base_url=url, timeout=client_timeout_s)
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                if not thread.is_alive():
                    raise RuntimeError("uvicorn stopped before it served /healthz (see the log above)")
                try:
                    if client.get("/healthz", timeout=5).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the in-process server did not answer /healthz within {timeout_s} s")
                time.sleep(0.05)
            yield client
        finally:
            client.close()


@contextmanager
def serve_process(
    index_dir: Path,
    env: dict[str, str] | None = None,
    *,
    wait_for_generator: bool = False,
    timeout_s: float = 600,
    client_timeout_s: float = 300,
    own_group: bool = False,
) -> Iterator[tuple[subprocess.Popen, httpx.Client]]:
    """``rag serve`` as a process (and a client for it), with a remote generator only: a local
    model would load a second time in it, beside the session's (serve that app in process with
    ``serving_in_thread``). Tests that signal the server get the process; ``own_group`` puts it in
    its own process group, so SIGKILL reaches its workers too. Stopped (TERM, then KILL) on exit."""
    port = free_port()
    full_env = os.environ | {"RAG_INDEX_DIR": str(index_dir)} | (env or {})
    if full_env.get("RAG_GENERATOR__BACKEND") != "openai":
        raise ValueError(
            "serve_process needs env RAG_GENERATOR__BACKEND=openai (a remote generator); for the "
            "real local one use serving_in_thread(create_app(settings, components=...)) with the "
            "session fixture `generator`"
        )
    log = open(Path(index_dir).parent / f"server-{port}.log", "w+")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=full_env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=own_group,
    )
    # The server's admin key, if it has one, goes with every request of this client: once a key
    # is configured every read needs one too. Tests of refusals send their own Authorization.
    admin = full_env.get("RAG_SERVER__ADMIN_API_KEY")
    headers = {"Authorization": f"Bearer {admin}"} if admin else {}
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=client_timeout_s, headers=headers)
    try:
        _wait(client, proc, log, wait_for_generator, timeout_s)
        yield proc, client
    finally:
        client.close()
        _stop(proc, own_group)
        log.close()


@contextmanager
def running_server(
    index_dir: Path,
    env: dict[str, str] | None = None,
    wait_for_generator: bool = False,
    timeout_s: float = 600,
) -> Iterator[httpx.Client]:
    """``serve_process`` for tests that only talk HTTP to it."""
    with serve_process(index_dir, env, wait_for_generator=wait_for_generator, timeout_s=timeout_s) as (
        _,
        client,
    ):
        yield client


def _stop(proc: subprocess.Popen, own_group: bool) -> None:
    if proc.poll() is not None:
        return
    if own_group:
        os.killpg(proc.pid, signal.SIGTERM)
    else:
        proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


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


def upload(client: Any, files: dict[str, str], headers: dict[str, str], collection: str | None = None) -> str:
    """POST text files (name -> content) to the documents route (of ``collection``, else the
    default one); returns the accepted job's id."""
    r = client.post(
        f"{prefix(collection)}/documents",
        headers=headers,
        files=[("files", (n, t.encode())) for n, t in files.items()],
    )
    assert r.status_code == 202, r.text
    return r.json()["job_id"]


def wait_for_job(
    client: Any,
    job_id: str,
    timeout_s: float = 300,
    *,
    collection: str | None = None,
    headers: dict[str, str] | None = None,
) -> dict:
    """Poll GET .../jobs/{id} (httpx.Client or FastAPI's TestClient) until the job has ended;
    ``headers`` carry the key once the server has keys."""
    deadline = time.monotonic() + timeout_s
    job: dict = {}
    while time.monotonic() < deadline:
        job = client.get(f"{prefix(collection)}/jobs/{job_id}", headers=headers or {}).json()
        if job["status"] in ("succeeded", "failed"):
            return job
        time.sleep(0.2)
    raise TimeoutError(job)


def prefix(collection: str | None) -> str:
    """Where a collection's routes are: /v1 (default) or /v1/collections/<name>."""
    return f"/v1/collections/{collection}" if collection else "/v1"
