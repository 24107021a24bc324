"""Incremental ingestion with the real MiniLM embedder: what is embedded, replaced, kept, deleted."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ingest.loaders import default_document_id
from ingest.pipeline import FileSpec, ingest
from rag.config import Settings, load_settings
from rag.index.reader import IndexReader
from rag.protocols import Embedder

TEXTS = {
    "relay.md": "# Relay\n\nThe zephyr-relay daemon listens on TCP port 7341.\n\n"
    "It accepts hosts listed in /etc/zephyr/relay.allow.",
    "retention.txt": "Retention keeps daily snapshots for 14 days and weekly ones for 8 weeks.",
    "restore.md": "Restore a file with zephyr restore --snapshot ID --path FILE.",
}


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    docs = tmp_path / "docs"
    docs.mkdir()
    for name, text in TEXTS.items():
        (docs / name).write_text(text, encoding="utf-8")
    return docs


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(index_dir=tmp_path / "index")


def _chunk_ids_by_doc(settings: Settings) -> dict[str, set[int]]:
    reader = IndexReader.open(settings.index_dir)
    reader.check_consistent()
    out: dict[str, set[int]] = {}
    for cid in reader.chunk_ids():
        hit = reader._conn.execute("SELECT document_id FROM chunks WHERE id = ?", (cid,)).fetchone()
        out.setdefault(hit[0], set()).add(cid)
    return out


def test_second_ingest_of_an_unchanged_folder_embeds_nothing(
    corpus: Path, settings: Settings, embedder: Embedder
) -> None:
    first = ingest([corpus], settings, embedder)
    assert (first.added, first.failed, first.index_version) == (3, 0, 1)
    assert first.chunks_embedded == first.chunks > 0
    second = ingest([corpus], settings, embedder)
    assert second.chunks_embedded == 0 and second.chunks == 0
    assert (second.added, second.updated, second.unchanged, second.deleted) == (0, 0, 3, 0)
    assert second.index_version is None  # nothing changed, so no new version was written
    assert IndexReader.open(settings.index_dir).version == 1


def test_a_changed_document_replaces_its_chunks_and_only_its_chunks(
    corpus: Path, settings: Settings, embedder: Embedder
) -> None:
    ingest([corpus], settings, embedder)
    before = _chunk_ids_by_doc(settings)
    (corpus / "retention.txt").write_text("Retention keeps monthly snapshots for a year.")
    summary = ingest([corpus], settings, embedder)
    assert (summary.updated, summary.unchanged, summary.chunks_embedded) == (1, 2, 1)
    after = _chunk_ids_by_doc(settings)
    changed = default_document_id(corpus / "retention.txt")
    assert after[changed].isdisjoint(before[changed])  # old chunks gone, new ids
    assert {k: v for k, v in after.items() if k != changed} == {
        k: v for k, v in before.items() if k != changed
    }
    hits = IndexReader.open(settings.index_dir).search(
        embedder.embed_query("how long are daily snapshots kept"), 5
    )
    assert all("14 days" not in h.chunk.text for h in hits)


def test_identical_chunks_are_embedded_once(corpus: Path, settings: Settings, embedder: Embedder) -> None:
    shutil.copy(corpus / "relay.md", corpus / "relay-copy.md")
    summary = ingest([corpus], settings, embedder)
    per_doc = _chunk_ids_by_doc(settings)
    relay_chunks = len(per_doc[default_document_id(corpus / "relay.md")])
    assert summary.added == 4 and summary.chunks == summary.chunks_embedded + relay_chunks
    # A later file whose text is already indexed embeds nothing either.
    shutil.copy(corpus / "restore.md", corpus / "restore-copy.md")
    assert ingest([corpus], settings, embedder).chunks_embedded == 0


def test_sync_deletes_documents_whose_files_are_gone(
    corpus: Path, settings: Settings, embedder: Embedder
) -> None:
    ingest([corpus], settings, embedder)
    (corpus / "restore.md").unlink()
    assert ingest([corpus], settings, embedder).deleted == 0  # without --sync nothing is deleted
    summary = ingest([corpus], settings, embedder, sync=True)
    assert summary.deleted == 1 and summary.chunks_embedded == 0
    reader = IndexReader.open(settings.index_dir)
    assert default_document_id(corpus / "restore.md") not in {d["id"] for d in reader.documents()}
    hits = reader.search(embedder.embed_query("zephyr restore --snapshot"), 10)
    assert all(h.chunk.document_id != default_document_id(corpus / "restore.md") for h in hits)


def test_sync_keeps_a_document_whose_file_now_fails(
    corpus: Path, settings: Settings, embedder: Embedder
) -> None:
    ingest([corpus], settings, embedder)
    (corpus / "restore.md").write_bytes(b"")  # now empty: fails to load
    summary = ingest([corpus], settings, embedder, sync=True)
    assert (summary.failed, summary.deleted) == (1, 0)
    assert "empty" in summary.errors[0]["error"]
    reader = IndexReader.open(settings.index_dir)
    assert default_document_id(corpus / "restore.md") in {d["id"] for d in reader.documents()}


def test_metadata_is_stored_kept_and_updated_without_re_embedding(
    corpus: Path, settings: Settings, embedder: Embedder
) -> None:
    relay = corpus / "relay.md"
    ingest([corpus], settings, embedder, metadata={relay.as_posix(): {"team": "ops"}})
    assert ingest([corpus], settings, embedder).unchanged == 3  # no metadata given: kept as is
    doc_id = default_document_id(relay)
    summary = ingest([corpus], settings, embedder, metadata={doc_id: {"team": "net"}})
    assert (summary.updated, summary.chunks_embedded) == (1, 0)
    reader = IndexReader.open(settings.index_dir)
    assert reader.document(doc_id)["metadata"] == {"team": "net"}
    top = reader.search(embedder.embed_query("which port does the relay use"), 1)[0]
    assert top.chunk.document_id == doc_id and top.metadata == {"team": "net"}


def test_a_spec_names_the_document(corpus: Path, settings: Settings, embedder: Embedder) -> None:
    path = corpus / "relay.md"
    summary = ingest([path], settings, embedder, specs={path.as_posix(): FileSpec("uploads/relay.md")})
    assert summary.added == 1
    (doc,) = IndexReader.open(settings.index_dir).documents()
    assert doc["id"] == doc["source"] == "uploads/relay.md"


def test_progress_reports_every_stage(corpus: Path, settings: Settings, embedder: Embedder) -> None:
    events: list[tuple[str, str, int]] = []

    class Recorder:
        def start(self, stage: str, total: int) -> None:
            events.append(("start", stage, total))

        def advance(self, stage: str, n: int = 1) -> None:
            events.append(("advance", stage, n))

    summary = ingest([corpus], settings, embedder, progress=Recorder())
    starts = {stage: total for kind, stage, total in events if kind == "start"}
    assert starts == {"parse": 3, "embed": summary.chunks_embedded, "write": 3}
    for stage, total in starts.items():
        assert sum(n for kind, s, n in events if kind == "advance" and s == stage) == total
