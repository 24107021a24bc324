"""`rag serve` on a non-loopback address: refused with no API key, served with one, served with a
logged warning under --insecure-no-auth. Real processes (the check runs before uvicorn starts);
the generator is an OpenAI URL where nothing listens, so no model loads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.serving import free_port

KEY = "test-exposure-key-0123456789abcdef"
DEAD_GENERATOR = {"RAG_GENERATOR__BACKEND": "openai", "RAG_GENERATOR__BASE_URL": "http://127.0.0.1:9/v1"}
EXIT_TIMEOUT_S = 60  # imports and settings only: no model, no socket
START_TIMEOUT_S = 120
KEY_VARIABLES = ("RAG_SERVER__API_KEYS", "RAG_SERVER__ADMIN_API_KEY")


def _env(**extra: str) -> dict[str, str]:
    """This process's environment without any key of the developer's, plus the dead generator."""
    inherited = {k: v for k, v in os.environ.items() if k not in KEY_VARIABLES}
    return inherited | DEAD_GENERATOR | extra


def _command(index: Path, port: int, *flags: str) -> list[str]:
    serve = [sys.executable, "-m", "cli", "serve", "--host", "0.0.0.0", "--port", str(port)]
    return [*serve, "--index", str(index), *flags]


@contextmanager
def _serving(command: list[str], env: dict[str, str], log: Path) -> Iterator[httpx.Client]:
    """The server started, once /healthz answers on 127.0.0.1 (an allowed Host); stopped on exit."""
    port = command[command.index("--port") + 1]
    with open(log, "w+") as out:
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {KEY}"})
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            while True:
                assert proc.poll() is None, f"rag serve exited with {proc.returncode}:\n{log.read_text()}"
                try:
                    if client.get("/healthz", timeout=5).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, (
                    f"no /healthz after {START_TIMEOUT_S} s:\n{log.read_text()}"
                )
                time.sleep(0.5)
            yield client
        finally:
            client.close()
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_a_non_loopback_bind_without_a_key_is_refused(tmp_path: Path) -> None:
    started = time.monotonic()
    done = subprocess.run(
        _command(tmp_path / "index", free_port()),
        env=_env(),
        capture_output=True,
        text=True,
        timeout=EXIT_TIMEOUT_S,
    )
    assert done.returncode != 0
    message = " ".join((done.stderr + done.stdout).split())  # however the console wrapped it
    assert "refusing to serve on '0.0.0.0'" in message, message
    assert "rag keys create --collection default --scope read" in message
    assert "RAG_SERVER__API_KEYS" in message and "--insecure-no-auth" in message
    assert time.monotonic() - started < EXIT_TIMEOUT_S


def test_a_non_loopback_bind_with_a_key_starts(tmp_path: Path) -> None:
    keys = f'[{{"key": "{KEY}", "scopes": ["*:read"]}}]'
    log = tmp_path / "server.log"
    with _serving(_command(tmp_path / "index", free_port()), _env(RAG_SERVER__API_KEYS=keys), log) as client:
        assert client.get("/healthz", headers={"Host": "evil.example"}).status_code == 400
    text = log.read_text()
    assert "insecure-no-auth" not in text  # a key: nothing insecure to warn about
    assert "server.allowed_hosts" in text  # but remote clients would get 400: said at start


def test_insecure_no_auth_starts_and_warns(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    command = _command(tmp_path / "index", free_port(), "--insecure-no-auth")
    with _serving(command, _env(RAG_SERVER__ALLOWED_HOSTS='["*"]'), log) as client:
        assert client.get("/healthz", headers={"Host": "anything.example"}).status_code == 200
    warnings = [line for line in _log_lines(log) if line.get("level") == "WARNING"]
    assert any(
        "with no API key" in w["message"] and "--insecure-no-auth" in w["message"] for w in warnings
    ), log.read_text()


def _log_lines(log: Path) -> list[dict]:
    """The server's JSON log lines (server.log_format's default); other output is skipped."""
    lines = []
    for line in log.read_text().splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:
            continue
    return [entry for entry in lines if isinstance(entry, dict)]
