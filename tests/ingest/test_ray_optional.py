"""Ray is an optional extra: without it installed the service imports, ingests and searches as
ever, and only setting cluster.address asks for it, with an error that names the extra. Run in a
subprocess that hides the installed ray package (``sys.modules["ray"] = None`` makes every
``import ray`` fail as it does where Ray is not installed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = """
import sys
sys.modules["ray"] = None  # as if Ray were not installed
from pathlib import Path
import importlib
for name in ("ingest.distributed", "rag.index.sharded", "rag.cluster"):
    importlib.import_module(name)  # the Ray modules import without Ray
from ingest.pipeline import ingest
from rag.config import load_settings
from rag.embedding import make_lazy_embedder
from rag.errors import ClusterError

docs, index = Path(sys.argv[1]), Path(sys.argv[2])
settings = load_settings(index_dir=index, **{"cluster.address": "127.0.0.1:1"})
try:
    ingest([docs], settings, make_lazy_embedder(settings.embedding))
except ClusterError as exc:
    print("refused:", exc)
from rag.components import build_store
try:
    build_store(load_settings(index_dir=index, **{"index.store": "sharded", "cluster.address": "auto",
                                                 "cluster.shards": [str(index)]})).snapshot()
except ClusterError as exc:
    print("refused:", exc)
"""


def test_without_ray_only_cluster_settings_ask_for_it(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("Zephyr keeps daily snapshots for 14 days.")
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(docs), str(tmp_path / "index")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert proc.returncode == 0, proc.stderr
    refusals = [line for line in proc.stdout.splitlines() if line.startswith("refused:")]
    assert len(refusals) == 2, proc.stdout
    assert all("pip install 'rag-service[ray]'" in line for line in refusals)
    assert not (tmp_path / "index" / "CURRENT").exists()  # nothing was committed
