"""Search over a real index of the test corpus: scores, persistence, provenance checks."""

from __future__ import annotations

import numpy as np
import pytest

from rag.components import build_pipeline
from rag.config import Settings
from rag.errors import IndexMismatchError, IndexNotFoundError
from rag.index.reader import IndexReader
from rag.index.writer import IndexWriter


@pytest.mark.parametrize("mode", ["dense", "hybrid", "keyword"])
def test_dense_scores_are_cosine_similarities_computed_by_numpy(
    built_index: Settings, embedder, mode: str
) -> None:
    """Every hit's dense_score is its true cosine in every mode (the refusal gate reads it);
    in dense mode the rank score is that cosine too."""
    question = "Which TCP port does the relay daemon listen on?"
    hits = build_pipeline(built_index, embedder=embedder).search(question, 5, mode=mode)
    q = embedder.embed_query(question)
    reader = IndexReader.open(built_index.index_dir)
    for hit in hits:
        # The stored vector, not a fresh embedding: int8 vectors shift slightly with batch-mates.
        v = reader.vectors([int(hit.chunk.id)])[0]
        expected = float(np.dot(q, v) / (np.linalg.norm(q) * np.linalg.norm(v)))
        assert hit.dense_score == pytest.approx(expected, abs=1e-4)
        if mode == "dense":
            assert hit.score == hit.dense_score
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert "7341" in hits[0].chunk.text


def test_pdf_chunks_keep_page_numbers_and_offsets(built_index: Settings, embedder) -> None:
    hits = build_pipeline(built_index, embedder=embedder).search("how to restore a single file", 3)
    top = hits[0].chunk
    assert top.source.endswith("restore-guide.pdf") and top.page == 2
    assert "zephyr restore --snapshot" in top.text


def test_index_round_trips_through_disk(built_index: Settings) -> None:
    reader = IndexReader.open(built_index.index_dir)
    assert reader.manifest.documents == 4
    assert reader.manifest.chunks == reader.size == len(reader.chunk_ids())
    assert reader.chunk_ids() == reader.vector_ids()
    again = IndexReader.open(built_index.index_dir)
    assert again.version == reader.version and again.documents() == reader.documents()


def test_opening_with_another_embedding_model_fails_clearly(built_index: Settings) -> None:
    writer = IndexWriter(
        built_index.index_dir,
        embedding_model="pkg:some-other-model",
        dimension=768,
        chunk_tokens=200,
        overlap_tokens=32,
    )
    with pytest.raises(IndexMismatchError, match="rebuild the index"), writer:
        pass


def test_missing_index_says_how_to_build_one(tmp_path) -> None:
    with pytest.raises(IndexNotFoundError, match="rag ingest"):
        IndexReader.open(tmp_path / "nothing-here")
