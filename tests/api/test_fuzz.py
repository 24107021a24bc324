"""Fuzzing the live OpenAPI schema with schemathesis: every route, under both prefixes (/v1 and
/v1/collections/{collection}), with no key, a read-only key and an admin key.

A real `rag serve` (real embedder, a copy of the test index, generator pointed at an OpenAI URL
where nothing listens) answers the cases the `st` command line generates from its /openapi.json:
the examples, coverage (boundary values: empty strings, 2**63, wrong types, missing fields) and
fuzzing phases, with a fixed seed and a bounded number of cases per operation. No response may be
a 5xx, except the documented upstream-generator statuses of the answer routes (502: the remote
generator failed, 503: not loaded yet), allowed in `schemathesis.toml` below. The per-key rate
limit is off for this server (otherwise most cases would be 429s, which test nothing else).
`RAG_FUZZ_EXAMPLES=N` (default 25) runs more cases per operation; bench/fuzz.sh runs a larger set.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from rag.config import Settings
from tests.serving import running_server

ADMIN_KEY = "fuzz-admin-key-0123456789abcdef"
READ_KEY = "fuzz-read-key-0123456789abcdef"
KEYS = [
    {"key": ADMIN_KEY, "scopes": ["*:admin"], "name": "fuzz-admin"},
    {"key": READ_KEY, "scopes": ["default:read"], "name": "fuzz-reader"},
]
SEED = 13
EXAMPLES = int(os.environ.get("RAG_FUZZ_EXAMPLES", "25"))
UPSTREAM = '["2XX", "3XX", "4XX", "502", "503"]'
CONFIG = f"""
[checks.not_a_server_error]
enabled = true

[[operations]]
include-path-regex = "/query$"
checks.not_a_server_error.expected-statuses = {UPSTREAM}

[[operations]]
include-path-regex = "/chat/completions$"
checks.not_a_server_error.expected-statuses = {UPSTREAM}
"""


@contextmanager
def fuzz_server(
    built_index: Settings, workdir: Path, keys: list[dict[str, object]]
) -> Iterator[httpx.Client]:
    """`rag serve` over a copy of the test index (a write run may delete documents)."""
    index = workdir / "idx"
    shutil.copytree(built_index.index_dir, index)
    env = {
        "RAG_GENERATOR__BACKEND": "openai",
        "RAG_GENERATOR__BASE_URL": "http://127.0.0.1:9/v1",
        "RAG_SERVER__RATE_LIMIT_PER_S": "0",
    } | ({"RAG_SERVER__API_KEYS": json.dumps(keys)} if keys else {})
    with running_server(index, env=env) as client:
        yield client


@pytest.fixture(scope="module")
def keyed_server(built_index: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    with fuzz_server(built_index, tmp_path_factory.mktemp("fuzz-keyed"), KEYS) as client:
        yield client


@pytest.fixture(scope="module")
def open_server(built_index: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    """No key configured at all: reads open, writes refused (403)."""
    with fuzz_server(built_index, tmp_path_factory.mktemp("fuzz-open"), []) as client:
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


@pytest.mark.parametrize(
    ("server", "key"),
    [("open_server", None), ("keyed_server", None), ("keyed_server", READ_KEY), ("keyed_server", ADMIN_KEY)],
    ids=["no keys configured", "keys, none sent", "read key", "admin key"],
)
def test_the_live_schema_fuzzes_without_server_errors(
    server: str, key: str | None, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    client: httpx.Client = request.getfixturevalue(server)
    headers = [f"Authorization: Bearer {key}"] if key else []
    operations = sum(
        1
        for item in client.get("/openapi.json").json()["paths"].values()
        for method in item
        if method in ("get", "post", "put", "delete", "patch")
    )
    run = fuzz(str(client.base_url), tmp_path, EXAMPLES, headers)
    print(run.stdout[run.stdout.rfind("SUMMARY") :])  # `pytest -s` shows the case counts
    assert run.returncode == 0, run.stdout[-8000:] + run.stderr[-2000:]
    tested = re.search(r"Tested:\s+(\d+)", run.stdout)  # every operation, none skipped
    assert tested is not None and int(tested.group(1)) == operations, run.stdout[-3000:]
