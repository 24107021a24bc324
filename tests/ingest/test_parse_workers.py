"""Several parse workers: the same index as one worker, a bad file still fails alone, the per-file
time limit still holds, and results come back in file order whichever worker finishes first."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ingest.loaders import FORMATS, SuffixLoader
from ingest.pipeline import ParsePool, ingest
from rag.config import load_settings
from rag.errors import LoaderError
from rag.index.reader import IndexReader
from rag.protocols import Embedder
from rag.types import Document

GOOD = "The zephyr-relay daemon listens on TCP port {n} and resumes dropped transfers."


# Loaders run in the worker processes, which unpickle them by class name: module level.
class SlowFirstLoader(SuffixLoader):
    """The real loaders; a file named slow* takes a while, so later files finish first."""

    def load(self, path: Path, **kwargs: Any) -> Document:
        if path.name.startswith("slow"):
            time.sleep(1.0)
        return super().load(path, **kwargs)


class HangingLoader(SuffixLoader):
    def load(self, path: Path, **kwargs: Any) -> Document:
        if path.name.startswith("hang"):
            time.sleep(3600)
        return super().load(path, **kwargs)


def _folder(root: Path, names: list[str]) -> Path:
    root.mkdir()
    for i, name in enumerate(names):
        (root / name).write_text(
            GOOD.format(n=7000 + i) + f" ({name})" * (1 + 40 * (i % 3)), encoding="utf-8"
        )
    return root


def _index(index_dir: Path) -> list[tuple[str, int, int, str, bytes]]:
    reader = IndexReader.open(index_dir)
    try:
        ids = sorted(reader.chunk_ids())
        with reader._db() as conn:
            rows = {r[0]: r[1:] for r in conn.execute("SELECT id, document_id, start, end, text FROM chunks")}
        vectors = reader.vectors(ids)
        return [
            (Path(rows[i][0]).name, *rows[i][1:], np.asarray(v).tobytes())
            for i, v in zip(ids, vectors, strict=True)
        ]
    finally:
        reader.close()


def test_results_are_identical_to_one_worker(tmp_path: Path, embedder: Embedder) -> None:
    docs = _folder(tmp_path / "docs", [f"doc{i}.md" for i in range(7)])
    (docs / "broken.pdf").write_bytes(b"%PDF-1.7 not really")
    indexes = []
    for workers in (1, 3):
        settings = load_settings(index_dir=tmp_path / f"index-{workers}", **{"ingest.parse_workers": workers})
        summary = ingest([docs], settings, embedder)
        assert (summary.added, summary.failed) == (7, 1)
        assert "broken.pdf" in summary.errors[0]["error"]
        indexes.append(_index(settings.index_dir))
    assert indexes[0] == indexes[1]  # same chunks, offsets, ids and vectors to the bit


def test_a_bad_file_among_good_ones_fails_alone(tmp_path: Path, embedder: Embedder) -> None:
    docs = _folder(tmp_path / "docs", ["a.md", "b.md", "c.md", "d.md"])
    (docs / "bad.html").write_bytes(b"\x00\x01\x02" * 400)  # binary, not HTML
    settings = load_settings(index_dir=tmp_path / "index", **{"ingest.parse_workers": 3})
    summary = ingest([docs], settings, embedder)
    assert (summary.added, summary.failed) == (4, 1)
    assert Path(summary.errors[0]["path"]).name == "bad.html"


def test_the_time_limit_holds_for_each_worker(tmp_path: Path, embedder: Embedder) -> None:
    docs = _folder(tmp_path / "docs", ["a.md", "hang1.md", "b.md", "hang2.md", "c.md", "d.md"])
    settings = load_settings(
        index_dir=tmp_path / "index", **{"ingest.file_timeout_s": 1, "ingest.parse_workers": 2}
    )
    started = time.monotonic()
    summary = ingest([docs], settings, embedder, loader=HangingLoader(FORMATS))
    assert time.monotonic() - started < 30
    assert (summary.added, summary.failed) == (4, 2)
    assert sorted(Path(e["path"]).name for e in summary.errors) == ["hang1.md", "hang2.md"]
    assert all("took longer than 1 s" in e["error"] for e in summary.errors)


def test_results_come_in_file_order_whichever_worker_finishes_first(tmp_path: Path) -> None:
    docs = _folder(tmp_path / "docs", ["slow.md", "a.md", "b.md", "c.md"])
    jobs = [(docs / name, {}) for name in ("slow.md", "a.md", "b.md", "c.md", "missing.md")]
    with ParsePool(3, 30, SlowFirstLoader(FORMATS)) as pool:
        results = list(pool.parse(jobs))
    assert [Path(r.source).name for r in results[:4] if isinstance(r, Document)] == [
        "slow.md",
        "a.md",
        "b.md",
        "c.md",
    ]
    assert isinstance(results[4], LoaderError) and "missing.md" in str(results[4])


@pytest.mark.parametrize("workers", [1, 4])
def test_in_process_parsing_ignores_the_worker_count(tmp_path: Path, workers: int) -> None:
    docs = _folder(tmp_path / "docs", ["a.md", "b.md"])
    pool = ParsePool(workers, 0)
    assert len(pool.workers) == 1
    assert [Path(d.source).name for d in pool.parse([(docs / "a.md", {}), (docs / "b.md", {})])] == [
        "a.md",
        "b.md",
    ]
