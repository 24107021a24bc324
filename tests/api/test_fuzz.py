"""Fuzzing the live OpenAPI schema with schemathesis: every route, with and without the admin key.

A real `rag serve` (real embedder, a copy of the test index, generator pointed at an OpenAI URL
where nothing listens) answers the cases the `st` command line generates from its /openapi.json:
the examples, coverage (boundary values: empty strings, 2**63, wrong types, missing fields) and
fuzzing phases, with a fixed seed and a bounded number of cases per operation. No response may be
a 5xx, except the documented upstream-generator statuses of the answer route (502: the remote
generator failed, 503: not loaded yet), allowed in `schemathesis.toml` below (for /v1/query and
/v1/chat/completions). `RAG_FUZZ_EXAMPLES=N`
(default 25) runs more cases per operation.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from rag.config import Settings
from tests.serving import running_server

ADMIN_KEY = "fuzz-admin-key-0123456789abcdef"
SEED = 13
EXAMPLES = int(os.environ.get("RAG_FUZZ_EXAMPLES", "25"))
CONFIG = """
[checks.not_a_server_error]
enabled = true

[[operations]]
include-path = "/v1/query"
checks.not_a_server_error.expected-statuses = ["2XX", "3XX", "4XX", "502", "503"]

[[operations]]
include-path = "/v1/chat/completions"
checks.not_a_server_error.expected-statuses = ["2XX", "3XX", "4XX", "502", "503"]
"""


@pytest.fixture(scope="module")
def fuzz_server(built_index: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    index = tmp_path_factory.mktemp("fuzz") / "idx"
    shutil.copytree(built_index.index_dir, index)  # the admin run may delete documents
    env = {
        "RAG_GENERATOR__BACKEND": "openai",
        "RAG_GENERATOR__BASE_URL": "http://127.0.0.1:9/v1",
        "RAG_SERVER__ADMIN_API_KEY": ADMIN_KEY,
    }
    with running_server(index, env=env) as client:
        yield client


def fuzz(base_url: str, workdir: Path, examples: int, headers: list[str]) -> subprocess.CompletedProcess:
    """Run `st run` against a live server; returns the finished process (exit 0: no failure)."""
    (workdir / "schemathesis.toml").write_text(CONFIG)
    st = Path(sys.executable).with_name("st")
    command = [
        str(st),
        "run",
        f"{base_url}/openapi.json",
        "--checks",
        "not_a_server_error",
        "--phases",
        "examples,coverage,fuzzing",
        "--seed",
        str(SEED),
        "--max-examples",
        str(examples),
        "--request-timeout",
        "60",
        "--no-color",
        "--workers",
        "1",
    ]
    for header in headers:
        command += ["-H", header]
    return subprocess.run(command, cwd=workdir, capture_output=True, text=True, timeout=1200)


@pytest.mark.parametrize("with_key", [False, True], ids=["no key", "admin key"])
def test_the_live_schema_fuzzes_without_server_errors(
    fuzz_server: httpx.Client, tmp_path: Path, with_key: bool
) -> None:
    headers = [f"Authorization: Bearer {ADMIN_KEY}"] if with_key else []
    run = fuzz(str(fuzz_server.base_url), tmp_path, EXAMPLES, headers)
    assert run.returncode == 0, run.stdout[-8000:] + run.stderr[-2000:]
    assert "Tested: 11" in run.stdout or "Tested:" in run.stdout, run.stdout[-3000:]
