"""Re-ingest skips hashing a file whose size:mtime is the one recorded when it was last hashed;
any change to the stat (a touch, new bytes of the same size) makes it hashed again, and only new
text is re-embedded. Real loaders and the real embedder; the fingerprint function is wrapped to
count the files that were read."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from ingest import pipeline
from ingest.loaders import file_stat
from ingest.pipeline import ingest
from rag.components import build_store
from rag.config import Settings, load_settings
from rag.protocols import Embedder

PAST = time.time() - 3600  # a fixed mtime, so a later one is a change


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    docs = tmp_path / "docs"
    docs.mkdir()
    for name, text in {"a.txt": "Relay port 7341.", "b.txt": "Snapshots kept 14 days."}.items():
        (docs / name).write_text(text, encoding="utf-8")
        os.utime(docs / name, (PAST, PAST))
    return docs


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(index_dir=tmp_path / "index")


@pytest.fixture
def hashed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the files whose bytes ingestion hashed."""
    names: list[str] = []
    real = pipeline.file_fingerprint

    def counting(path: Path, max_bytes: int | None = None) -> str | None:
        names.append(Path(path).name)
        return real(path, max_bytes)

    monkeypatch.setattr(pipeline, "file_fingerprint", counting)
    return names


def _stat_of(settings: Settings, path: Path) -> str | None:
    with build_store(settings).writer(lock_timeout_s=5) as writer:
        state = writer.document_state(pipeline.default_document_id(path))
    return state.file_stat if state else None


def test_an_unchanged_stat_skips_hashing(
    corpus: Path, settings: Settings, embedder: Embedder, hashed: list[str]
) -> None:
    ingest([corpus], settings, embedder)
    assert sorted(hashed) == ["a.txt", "b.txt"]
    assert _stat_of(settings, corpus / "a.txt") == file_stat(corpus / "a.txt")
    hashed.clear()
    again = ingest([corpus], settings, embedder)
    assert (again.unchanged, again.index_version, hashed) == (2, None, [])


def test_a_touched_file_is_hashed_again_but_not_re_embedded(
    corpus: Path, settings: Settings, embedder: Embedder, hashed: list[str]
) -> None:
    ingest([corpus], settings, embedder)
    os.utime(corpus / "a.txt", (PAST + 60, PAST + 60))  # same bytes, new mtime
    hashed.clear()
    touched = ingest([corpus], settings, embedder)
    assert hashed == ["a.txt"]
    assert (touched.unchanged, touched.chunks_embedded, touched.updated) == (2, 0, 0)
    assert _stat_of(settings, corpus / "a.txt") == file_stat(corpus / "a.txt")  # the new stat, kept
    hashed.clear()
    assert ingest([corpus], settings, embedder).unchanged == 2 and hashed == []


def test_new_bytes_of_the_same_size_are_caught_by_the_mtime(
    corpus: Path, settings: Settings, embedder: Embedder, hashed: list[str]
) -> None:
    ingest([corpus], settings, embedder)
    before = (corpus / "a.txt").stat().st_size
    (corpus / "a.txt").write_text("Relay port 7342.", encoding="utf-8")  # same length, new text
    os.utime(corpus / "a.txt", (PAST + 60, PAST + 60))
    assert (corpus / "a.txt").stat().st_size == before
    summary = ingest([corpus], settings, embedder)
    assert (summary.updated, summary.unchanged, summary.chunks_embedded) == (1, 1, 1)
