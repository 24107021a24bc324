"""Re-ingest skips parsing files whose bytes are unchanged (the file fingerprint), and only those.

Files are parsed in-process here (``file_timeout_s=0``) so a loader that fails when called proves
the file was never parsed; the real loaders and the real MiniLM embedder do everything else.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from ingest.loaders import SUPPORTED_SUFFIXES, common, file_fingerprint
from ingest.pipeline import ingest
from rag.config import Settings, load_settings
from rag.errors import LoaderError
from rag.index import layout
from rag.index.reader import IndexReader
from rag.protocols import Embedder
from rag.types import Document

PAGE = (
    "<html><body><h1>Relay</h1><p>The zephyr-relay daemon listens on TCP port 7341.</p>{extra}</body></html>"
)


class MustNotParse:
    """A Loader that fails when called: a file that reaches it was parsed."""

    suffixes = SUPPORTED_SUFFIXES

    def load(self, path: Path, **_: object) -> Document:
        raise LoaderError(f"{path.as_posix()}: parsed although its bytes did not change")


must_not_parse = MustNotParse()


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "relay.html").write_text(PAGE.format(extra=""), encoding="utf-8")
    (docs / "retention.txt").write_text("Retention keeps daily snapshots for 14 days.", encoding="utf-8")
    return docs


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(index_dir=tmp_path / "index", **{"ingest.file_timeout_s": 0})


def test_unchanged_files_are_not_parsed_again(corpus: Path, settings: Settings, embedder: Embedder) -> None:
    assert ingest([corpus], settings, embedder).added == 2
    again = ingest([corpus], settings, embedder, loader=must_not_parse)
    assert (again.unchanged, again.failed, again.index_version) == (2, 0, None)


def test_changed_bytes_with_the_same_text_are_parsed_once_then_skipped(
    corpus: Path, settings: Settings, embedder: Embedder
) -> None:
    ingest([corpus], settings, embedder)
    page = corpus / "relay.html"
    page.write_text(PAGE.format(extra="<!-- edited by a tool -->"), encoding="utf-8")
    second = ingest([corpus], settings, embedder)  # parsed: the bytes differ
    assert (second.unchanged, second.updated, second.chunks_embedded) == (2, 0, 0)
    assert second.index_version == 2  # the new fingerprint was recorded
    third = ingest([corpus], settings, embedder, loader=must_not_parse)
    assert (third.unchanged, third.failed, third.index_version) == (2, 0, None)


def test_changed_text_is_parsed_and_updated(corpus: Path, settings: Settings, embedder: Embedder) -> None:
    ingest([corpus], settings, embedder)
    (corpus / "retention.txt").write_text("Retention keeps daily snapshots for 30 days.", encoding="utf-8")
    summary = ingest([corpus], settings, embedder)
    assert (summary.updated, summary.unchanged, summary.chunks_embedded) == (1, 1, 1)


def test_new_metadata_for_an_unchanged_file_is_applied(
    corpus: Path, settings: Settings, embedder: Embedder
) -> None:
    ingest([corpus], settings, embedder)
    path = (corpus / "retention.txt").as_posix()
    summary = ingest([corpus], settings, embedder, metadata={path: {"team": "ops"}})
    assert (summary.updated, summary.unchanged, summary.chunks_embedded) == (1, 1, 0)
    docs = {Path(d["source"]).name: d for d in IndexReader.open(settings.index_dir).documents()}
    assert docs["retention.txt"]["metadata"] == {"team": "ops"}


def test_a_new_parser_version_parses_again(
    corpus: Path, settings: Settings, embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    ingest([corpus], settings, embedder)
    monkeypatch.setattr(common, "PARSER_VERSION", "test-next")
    # Both files reach the loader again: skipping them would hide a parser fix from the index.
    assert ingest([corpus], settings, embedder, loader=must_not_parse).failed == 2
    summary = ingest([corpus], settings, embedder)
    assert (summary.unchanged, summary.chunks_embedded) == (2, 0)


def test_an_index_from_before_fingerprints_is_upgraded(
    corpus: Path, settings: Settings, embedder: Embedder
) -> None:
    ingest([corpus], settings, embedder)
    store = settings.index_dir / layout.STORE
    with sqlite3.connect(store) as conn:  # what an index converted from before fingerprints holds
        conn.execute("UPDATE documents SET file_hash = NULL, file_stat = NULL")
    upgraded = ingest([corpus], settings, embedder)  # parses (nothing to compare with), embeds nothing
    assert (upgraded.unchanged, upgraded.chunks_embedded, upgraded.index_version) == (2, 0, 2)
    IndexReader.open(settings.index_dir).check_consistent()
    again = ingest([corpus], settings, embedder, loader=must_not_parse)
    assert (again.unchanged, again.failed) == (2, 0)


def test_fingerprint_is_none_for_what_parsing_must_report(tmp_path: Path) -> None:
    big = tmp_path / "big.txt"
    big.write_text("x" * 100, encoding="utf-8")
    assert file_fingerprint(big, max_bytes=10) is None
    assert file_fingerprint(tmp_path / "missing.txt") is None
    assert file_fingerprint(tmp_path) is None
    assert file_fingerprint(big) == file_fingerprint(big, max_bytes=1000) is not None
