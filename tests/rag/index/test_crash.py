"""SIGKILL an ingest at every step of a commit (and at random moments): the index must still load,
be internally consistent, be exactly the old or exactly the new version, and accept the next
ingest, which clears what the killed writer left behind.

The killed process is the real CLI (`python -m cli ingest --sync`) with the hashing test
embedder (see hash_embedder.py for why). Deterministic kill points come from the writer's
RAG_TEST_CRASH_AT hook, which SIGKILLs the process at that exact step.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ingest.loaders import default_document_id
from ingest.pipeline import ingest
from rag.config import Settings, load_settings
from rag.errors import IndexNotFoundError
from rag.index import layout
from rag.index.reader import IndexReader
from rag.index.writer import CRASH_ENV, CRASH_POINTS, STAGING_PREFIX
from rag.types import content_hash
from tests.rag.index.hash_embedder import HashEmbedder

REPO = Path(__file__).resolve().parents[3]
BACKEND = "tests.rag.index.hash_embedder:HashEmbedder"
BEFORE_SWAP = {"mid_write", "mid_faiss_write", "before_rename", "after_rename", "before_current"}

State = dict[str, str]  # document id -> content hash


def _settings(index_dir: Path) -> Settings:
    return load_settings(index_dir=index_dir, **{"embedding.backend": BACKEND})


def _write(docs: Path, files: dict[str, str]) -> State:
    """Make ``docs`` hold exactly ``files``; return the index state they should produce."""
    docs.mkdir(exist_ok=True)
    for old in docs.iterdir():
        if old.name not in files:
            old.unlink()
    for name, text in files.items():
        (docs / name).write_text(text, encoding="utf-8")
    return {default_document_id(docs / name): content_hash(text) for name, text in files.items()}


def _text(topic: str, n: int = 3) -> str:
    return "\n\n".join(
        f"{topic} paragraph {i}: " + " ".join(f"{topic}{j}" for j in range(40)) for i in range(n)
    )


def _run_cli(docs: Path, index_dir: Path, crash_at: str | None = None) -> subprocess.Popen[bytes]:
    env = os.environ | {
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "RAG_EMBEDDING__BACKEND": BACKEND,
    }
    env.pop(CRASH_ENV, None)
    if crash_at:
        env[CRASH_ENV] = crash_at
    cmd = [
        sys.executable,
        "-m",
        "cli",
        "ingest",
        str(docs),
        "--index",
        str(index_dir),
        "--sync",
        "--json",
    ]
    return subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _state_after_crash(index_dir: Path) -> State | None:
    """Open the index as a server would and check it; None when no version was ever committed."""
    try:
        reader = IndexReader.open(index_dir)
    except IndexNotFoundError:
        return None
    reader.check_consistent()
    state = {d["id"]: d["hash"] for d in reader.documents()}
    live = reader.chunk_ids()
    embedder = HashEmbedder()
    for query in ("alpha paragraph 1", "delta3 delta4", "gamma"):
        for hit in reader.search(embedder.embed_query(query), 5):
            assert hit.chunk.id in live and hit.chunk.document_id in state
    reader.close()
    return state


def _recover_and_check(docs: Path, index_dir: Path, expected: State) -> None:
    """The next ingest takes over: it succeeds, ends in the expected state, leaves no debris."""
    summary = ingest([docs], _settings(index_dir), HashEmbedder(), sync=True)
    assert summary.failed == 0, summary.errors
    assert _state_after_crash(index_dir) == expected
    names = {p.name for p in index_dir.iterdir()}
    assert not any(n.startswith(STAGING_PREFIX) for n in names)
    assert not layout.temp_files(index_dir / layout.CURRENT)
    current = layout.version_number(layout.current_version_dir(index_dir))
    versions = [layout.version_number(p) for p in layout.version_dirs(index_dir)]
    assert max(versions) == current and len(versions) <= 2, versions


@pytest.fixture
def two_versions(tmp_path: Path) -> tuple[Path, Path, State, State]:
    """An index with two committed versions (so a third commit has one to prune), and the docs
    folder changed on disk: one file updated, one added, one deleted."""
    docs, index_dir = tmp_path / "docs", tmp_path / "index"
    _write(docs, {"a.md": _text("alpha"), "b.md": _text("beta"), "c.md": _text("gamma")})
    ingest([docs], _settings(index_dir), HashEmbedder(), sync=True)
    old = _write(docs, {"a.md": _text("alpha"), "b.md": _text("beta"), "c.md": _text("gamma", 4)})
    ingest([docs], _settings(index_dir), HashEmbedder(), sync=True)
    new = _write(docs, {"a.md": _text("alpha", 5), "c.md": _text("gamma", 4), "d.md": _text("delta")})
    return docs, index_dir, old, new


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_sigkill_at_each_commit_step_leaves_old_or_new_version(
    two_versions: tuple[Path, Path, State, State], point: str
) -> None:
    docs, index_dir, old, new = two_versions
    proc = _run_cli(docs, index_dir, crash_at=point)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL, err.decode()[-2000:]
    assert _state_after_crash(index_dir) == (old if point in BEFORE_SWAP else new)
    _recover_and_check(docs, index_dir, new)


@pytest.mark.parametrize("point", ["after_rename", "before_current"])
def test_sigkill_during_the_first_ingest_leaves_no_index_and_a_clean_retry(
    tmp_path: Path, point: str
) -> None:
    docs, index_dir = tmp_path / "docs", tmp_path / "index"
    new = _write(docs, {"a.md": _text("alpha"), "b.md": _text("beta")})
    proc = _run_cli(docs, index_dir, crash_at=point)
    proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL
    assert _state_after_crash(index_dir) is None
    _recover_and_check(docs, index_dir, new)


def test_sigkill_at_random_moments(tmp_path: Path) -> None:
    """Kills at times no hook chose, over an ingest big enough to be caught mid-way."""
    docs, index_dir = tmp_path / "docs", tmp_path / "index"
    files = {f"f{i:03d}.md": _text(f"topic{i}", 2) for i in range(150)}
    _write(docs, files)
    ingest([docs], _settings(index_dir), HashEmbedder(), sync=True)
    rng = random.Random(20240611)
    outcomes: list[int] = []
    for round_ in range(3):
        old = {d["id"]: d["hash"] for d in IndexReader.open(index_dir).documents()}
        files = {name: _text(f"r{round_}x{rng.randrange(10**6)}", 2) for name in files}
        new = _write(docs, files)
        proc = _run_cli(docs, index_dir)
        # Python start-up takes seconds; start the clock once the writer has staged its copy.
        deadline = time.monotonic() + 60
        while not any(index_dir.glob(STAGING_PREFIX + "*")) and proc.poll() is None:
            assert time.monotonic() < deadline, "the ingest never started writing"
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 2.0))
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        outcomes.append(proc.returncode)
        assert _state_after_crash(index_dir) in (old, new)
        _recover_and_check(docs, index_dir, new)
    assert -signal.SIGKILL in outcomes, "every ingest finished before its kill; nothing was tested"
