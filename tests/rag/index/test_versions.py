"""Versions, readers and the writer lock: what lets the server answer while an ingest writes."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ingest.pipeline import ingest
from rag.config import Settings, load_settings
from rag.errors import IndexLockedError, IndexMismatchError
from rag.index import layout
from rag.index.faiss_store import FaissSqliteStore
from rag.index.handle import IndexHandle
from rag.index.reader import IndexReader
from rag.index.writer import IndexWriter
from rag.retrieval.dense import DenseRetriever
from rag.retrieval.hybrid import HybridRetriever
from tests.rag.index.hash_embedder import HashEmbedder

REPO = Path(__file__).resolve().parents[3]


def _settings(tmp_path: Path) -> Settings:
    return load_settings(index_dir=tmp_path / "index", **{"ingest.file_timeout_s": 0})


def _add(tmp_path: Path, name: str, text: str) -> int | None:
    docs = tmp_path / "docs"
    docs.mkdir(exist_ok=True)
    (docs / name).write_text(text)
    return ingest([docs / name], _settings(tmp_path), HashEmbedder()).index_version


def test_a_reader_keeps_its_version_after_it_is_pruned(tmp_path: Path) -> None:
    _add(tmp_path, "a.md", "alpha text one")
    reader = IndexReader.open(tmp_path / "index")
    first = reader.manifest_path
    for i in range(3):
        _add(tmp_path, f"b{i}.md", f"beta text {i}")
    assert not first.exists()  # pruned: only the live version and its predecessor are kept
    hits = reader.search(HashEmbedder().embed_query("alpha"), 5)  # open files still read fine
    assert [h.chunk.source.rsplit("/", 1)[-1] for h in hits] == ["a.md"]
    assert [d["source"].rsplit("/", 1)[-1] for d in reader.documents()] == ["a.md"]
    assert len(layout.manifest_paths(tmp_path / "index")) == 2


def test_the_handle_sees_new_versions(tmp_path: Path) -> None:
    _add(tmp_path, "a.md", "alpha")
    handle = IndexHandle(tmp_path / "index", check_interval_s=3600)
    assert handle.get().version == 1
    _add(tmp_path, "b.md", "beta")
    assert handle.get().version == 1  # not re-checked within the interval
    handle.refresh()
    assert handle.get().version == 2
    quick = IndexHandle(tmp_path / "index", check_interval_s=0.5)
    assert quick.get().version == 2
    _add(tmp_path, "c.md", "gamma")
    deadline = time.monotonic() + 1.5
    while quick.get().version != 3:  # queried far more often than the interval: still noticed
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_one_writer_at_a_time_across_processes(tmp_path: Path) -> None:
    _add(tmp_path, "a.md", "alpha")
    index_dir = tmp_path / "index"
    holder = textwrap.dedent(
        f"""
        import sys, time
        from rag.index.writer import IndexWriter
        with IndexWriter.for_existing({str(index_dir)!r}):
            print("locked", flush=True)
            time.sleep(60)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", holder], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        with (
            pytest.raises(IndexLockedError, match="one writer at a time"),
            IndexWriter.for_existing(index_dir),
        ):
            pass
        started = time.monotonic()
        with pytest.raises(IndexLockedError), IndexWriter.for_existing(index_dir, lock_timeout_s=0.5):
            pass
        assert time.monotonic() - started >= 0.5
    finally:
        proc.kill()
        proc.wait()
    with IndexWriter.for_existing(index_dir) as writer:  # the kernel released the dead holder's lock
        assert writer.document_ids()


def test_a_retriever_with_another_model_fails_clearly(tmp_path: Path) -> None:
    _add(tmp_path, "a.md", "alpha")

    class OtherModel(HashEmbedder):
        model_id = "pkg:another-model"

    settings = _settings(tmp_path)
    for kind in (DenseRetriever, HybridRetriever):
        retriever = kind(settings, OtherModel(), FaissSqliteStore(settings))
        with pytest.raises(IndexMismatchError, match=r"test:hash-bag-of-words-384.*pkg:another-model"):
            retriever.retrieve("alpha", 3)
    with pytest.raises(IndexMismatchError, match="rebuild the index"):
        ingest([tmp_path / "docs"], _settings(tmp_path), OtherModel())


def test_delete_with_the_index_identity(tmp_path: Path) -> None:
    _add(tmp_path, "a.md", "alpha")
    _add(tmp_path, "b.md", "beta")
    doc_id = (tmp_path / "docs" / "a.md").resolve().as_posix()
    with IndexWriter.for_existing(tmp_path / "index") as writer:
        assert writer.delete(doc_id) and not writer.delete(doc_id)
        manifest = writer.commit()
    assert manifest.documents == 1 and manifest.version == 3
    reader = IndexReader.open(tmp_path / "index")
    reader.check_consistent()
    assert all(h.chunk.document_id != doc_id for h in reader.search(HashEmbedder().embed_query("alpha"), 5))
