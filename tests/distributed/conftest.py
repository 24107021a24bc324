"""A real Ray cluster on loopback for the scale-out tests, started once per session.

Two nodes, each its own ``ray start --block`` process with its own raylet: a head (one CPU) and
a worker node (one CPU) that joins it, so actors spread over two nodes as on a real cluster. The
processes get PYTHONPATH set to the repository, so workers can import ``tests.distributed`` (the
barrier loader of the kill test). Teardown signals exactly these two processes, which stop their
own raylets and workers (never ``ray stop``, which would stop every Ray process on the machine).

The embedder is the fp32 ONNX backend, whose vectors do not depend on the batch a text is embedded
with (tests/rag/embedding/test_onnx.py): distributed workers batch texts differently from the local
path, and the int8 default moves a vector by up to 0.01 cosine with its batch, which would hide a
real difference in a 1e-5 comparison.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip(
    "ray", reason="the scale-out tests need Ray: pip install 'rag-service[ray]' (scripts/setup.sh does)"
)

from rag import cluster
from rag.config import EmbeddingSettings
from rag.embedding import make_embedder
from rag.protocols import Embedder
from tests.conftest import PDF_PAGES, write_pdf
from tests.serving import free_port

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "data" / "sample" / "docs"
# Three of the sample corpus's smaller files (Markdown, HTML) and a small PDF made beside them: about
# 80 chunks, so a test ingests in seconds on two busy cores.
SAMPLE_FILES = ("apt-README.md", "debian-faq-ch09-uptodate.html", "systemd-uids-gids.md")
PDF = "restore-guide.pdf"
CORRUPT = "broken.pdf"  # a PDF header and garbage: fails to parse, in every path
START_TIMEOUT_S = 90.0


def _ray_bin() -> str:
    return str(Path(sys.executable).with_name("ray"))


def _start(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(
            [_ray_bin(), "start", "--block", "--num-cpus=1", "--node-ip-address=127.0.0.1", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )


def _wait_for_nodes(address: str, nodes: int, procs: list[subprocess.Popen[bytes]]) -> None:
    """Until `ray status` lists ``nodes`` active nodes (a raylet registers seconds after start)."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if any(p.poll() is not None for p in procs):
            raise RuntimeError("a `ray start` process exited early; see its log in the test's tmp dir")
        try:
            status = subprocess.run(
                [_ray_bin(), "status", f"--address={address}"], capture_output=True, text=True, timeout=30
            )
            if status.returncode == 0 and status.stdout.count("node_") >= nodes:
                return
        except subprocess.TimeoutExpired:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"the Ray cluster at {address} did not have {nodes} nodes in time")
        time.sleep(0.5)


@pytest.fixture(scope="session")
def ray_address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The head node's address, with a worker node joined; both stopped at the end."""
    logs = tmp_path_factory.mktemp("ray-logs")
    temp = Path(f"/tmp/rag-ray-{os.getpid()}")  # short: Ray's socket paths must fit 107 bytes
    port = free_port()
    address = f"127.0.0.1:{port}"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        "RAY_USAGE_STATS_ENABLED": "0",
        # No token auth on this loopback cluster: a ~/.ray/auth_token that another Ray left would
        # turn it on for the nodes but not for `ray status`.
        "RAY_AUTH_MODE": "disabled",
    }
    os.environ["RAY_AUTH_MODE"] = "disabled"  # the same for this process, the driver
    memory = "--object-store-memory=100000000"  # 100 MB each: the default takes 30% of RAM
    head = _start(
        [
            "--head",
            f"--port={port}",
            "--include-dashboard=false",
            "--disable-usage-stats",
            f"--temp-dir={temp}",
            memory,
        ],
        logs / "head.log",
        env,
    )
    procs = [head]
    try:
        _wait_for_nodes(address, 1, procs)
        procs.append(_start([f"--address={address}", memory], logs / "worker.log", env))
        _wait_for_nodes(address, 2, procs)
        yield address
    finally:
        cluster.disconnect()
        for proc in reversed(procs):
            proc.send_signal(signal.SIGTERM)
        for proc in reversed(procs):
            _stop(proc)
        shutil.rmtree(temp, ignore_errors=True)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """After SIGTERM, a few seconds' grace, then SIGKILL to the process group it leads (its raylet,
    GCS and workers): Ray's graceful stop takes ~30 s, and nothing of a test cluster is kept."""
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


@pytest.fixture(scope="session")
def fp32_embedder() -> Embedder:
    """Loaded here first, so its one-off ONNX export is done before the workers load it."""
    return make_embedder(EmbeddingSettings(backend="onnx"))


@pytest.fixture
def sample_dir(tmp_path: Path) -> Path:
    """A few sample documents, a small PDF and a corrupt one, in a folder of this test's own."""
    docs = tmp_path / "docs"
    docs.mkdir()
    for name in SAMPLE_FILES:
        shutil.copy(SAMPLE / name, docs / name)
    write_pdf(docs / PDF, PDF_PAGES)
    (docs / CORRUPT).write_bytes(b"%PDF-1.7\n" + b"\x00garbage\xff" * 64)
    return docs
