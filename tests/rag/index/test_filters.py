"""Metadata and source filters: their semantics, and that they apply before the top-k."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.pipeline import ingest
from rag.config import load_settings
from rag.index.filters import SearchFilter
from rag.index.reader import IndexReader
from tests.rag.index.hash_embedder import HashEmbedder


@pytest.mark.parametrize(
    ("metadata", "wanted", "matches"),
    [
        ({"team": "ops"}, {"team": "ops"}, True),
        ({"team": "ops"}, {"team": "dev"}, False),
        ({"team": "ops"}, {"team": ["dev", "ops"]}, True),  # a list asks for any of its values
        ({"tags": ["a", "b"]}, {"tags": "b"}, True),  # a list field matches a member
        ({"tags": ["a", "b"]}, {"tags": ["c", "a"]}, True),
        ({"team": "ops", "lang": "en"}, {"team": "ops", "lang": "de"}, False),  # AND
        ({}, {"team": "ops"}, False),  # a missing field never matches
        ({"draft": True}, {"draft": 1}, False),  # JSON equality: true is not 1
        ({"year": 2024}, {"year": 2024.0}, True),
        ({"year": 2024}, {"year": "2024"}, False),
    ],
)
def test_metadata_semantics(metadata: dict, wanted: dict, matches: bool) -> None:
    assert SearchFilter(metadata=wanted).matches("/d/a.md", "d/a.md", metadata) is matches


def test_source_prefix_matches_source_or_id() -> None:
    f = SearchFilter(source_prefix="uploads/")
    assert f.matches("uploads/a.md", "uploads/a.md", {})
    assert not f.matches("/srv/docs/a.md", "docs/a.md", {})
    assert SearchFilter(source_prefix="/srv/docs").matches("/srv/docs/a.md", "docs/a.md", {})


def test_empty_filters_are_no_filter() -> None:
    assert SearchFilter.from_dict(None) is None
    assert SearchFilter.from_dict({"metadata": {}, "source_prefix": None}) is None
    assert SearchFilter.from_dict({"metadata": {"a": 1}}) == SearchFilter(metadata={"a": 1})


def test_filters_apply_before_top_k(tmp_path: Path) -> None:
    """Twelve "ops" documents match the query far better than four "dev" ones; a filter on
    team=dev still returns k=3 results, all dev, rather than the dev share of an unfiltered top 3."""
    docs = tmp_path / "docs"
    docs.mkdir()
    metadata = {}
    for i in range(12):
        path = docs / "ops" / f"ops{i}.md"
        path.parent.mkdir(exist_ok=True)
        path.write_text(f"relay port firewall relay port {i}")
        metadata[path.as_posix()] = {"team": "ops", "n": i}
    for i in range(4):
        path = docs / "dev" / f"dev{i}.md"
        path.parent.mkdir(exist_ok=True)
        path.write_text(f"compiler warnings and unit tests {i}")
        metadata[path.as_posix()] = {"team": "dev", "n": i}
    settings = load_settings(index_dir=tmp_path / "index", **{"ingest.file_timeout_s": 0})
    embedder = HashEmbedder()
    ingest([docs], settings, embedder, metadata=metadata)
    reader = IndexReader.open(settings.index_dir)
    query = embedder.embed_query("relay port firewall")

    assert all(h.metadata["team"] == "ops" for h in reader.search(query, 3))
    dev = reader.search(query, 3, SearchFilter(metadata={"team": "dev"}))
    assert len(dev) == 3 and all(h.metadata["team"] == "dev" for h in dev)
    assert [h.score for h in dev] == sorted((h.score for h in dev), reverse=True)
    assert len(reader.search(query, 10, SearchFilter(metadata={"team": "dev"}))) == 4  # all there are
    prefix = (docs / "dev").resolve().as_posix()
    assert {
        h.chunk.document_id.rsplit("/", 1)[0]
        for h in reader.search(query, 5, SearchFilter(source_prefix=prefix))
    } == {prefix}
    both = SearchFilter(metadata={"team": "ops", "n": [1, 2]})
    assert sorted(h.metadata["n"] for h in reader.search(query, 5, both)) == [1, 2]
    assert reader.search(query, 5, SearchFilter(metadata={"team": "nobody"})) == []
