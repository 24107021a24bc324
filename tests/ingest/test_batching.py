"""Length-bucketed embedding across documents: the same vectors as embedding each chunk alone,
every chunk paired with its own vector, batches of similar length, memory bounded by the window.

The real default embedder (int8 MiniLM) does the embedding. Its activations are quantized per
batch, so a vector moves a little with its batch mates (cosine >= 0.99); the fp32 ONNX backend
has no such effect and must give the unbatched vectors to float precision.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from ingest.pipeline import ingest
from rag.config import EmbeddingSettings, load_settings
from rag.embedding import make_embedder
from rag.index.reader import IndexReader
from rag.protocols import Embedder

TOPICS = ["backups", "relay daemons", "retention rules", "restores", "catalogs", "pruning"]


class RecordingEmbedder:
    """The real embedder, recording what each ``embed_documents`` call received (why a wrapper:
    the batches themselves are what these tests check)."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.model_id, self.dim, self.max_tokens = inner.model_id, inner.dim, inner.max_tokens
        self.batch_size = 4
        self.calls: list[list[str]] = []

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(list(texts))
        return self.inner.embed_documents(texts)

    def embed_query(self, text: str) -> np.ndarray:
        return self.inner.embed_query(text)

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)


def _corpus(root: Path) -> Path:
    """Files whose paragraphs have very different lengths, so sorting by length matters."""
    root.mkdir()
    for i, topic in enumerate(TOPICS):
        paragraphs = [
            f"Note {i}.{j} on {topic}: " + " ".join(f"word{k} of {topic}" for k in range(3 + 9 * j))
            for j in range(4)
        ]
        (root / f"doc{i}.md").write_text("\n\n".join(paragraphs), encoding="utf-8")
    return root


def _stored(index_dir: Path) -> list[tuple[str, int, str, np.ndarray]]:
    """(file name, start, text, vector) of every live chunk, in chunk-id order."""
    reader = IndexReader.open(index_dir)
    try:
        ids = sorted(reader.chunk_ids())
        with reader._db() as conn:
            rows = {r[0]: r[1:] for r in conn.execute("SELECT id, document_id, start, text FROM chunks")}
        vectors = reader.vectors(ids)
        return [(Path(rows[i][0]).name, rows[i][1], rows[i][2], v) for i, v in zip(ids, vectors, strict=True)]
    finally:
        reader.close()


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return _corpus(tmp_path / "docs")


def test_batches_are_sorted_by_length_and_every_chunk_gets_its_own_vector(
    tmp_path: Path, corpus: Path, embedder: Embedder
) -> None:
    recording = RecordingEmbedder(embedder)
    settings = load_settings(index_dir=tmp_path / "index", **{"ingest.embed_window": 10})
    summary = ingest([corpus], settings, recording)
    assert summary.chunks == summary.chunks_embedded > 10  # several windows
    for batch in recording.calls:
        lengths = [embedder.count_tokens(t) for t in batch]
        assert lengths == sorted(lengths, reverse=True)  # each call longest first
    embedded = [t for call in recording.calls for t in call]
    assert len(embedded) == len(set(embedded))  # each distinct text once
    for _, _, text, vector in _stored(settings.index_dir):
        alone = embedder.embed_documents([text])[0]
        assert float(np.dot(alone, vector)) >= 0.99, text  # its own vector, not a neighbour's


def test_fp32_vectors_equal_the_unbatched_ones(tmp_path: Path, corpus: Path) -> None:
    fp32 = make_embedder(EmbeddingSettings(backend="onnx"))
    settings = load_settings(
        index_dir=tmp_path / "index", **{"embedding.backend": "onnx", "ingest.embed_window": 7}
    )
    ingest([corpus], settings, fp32)
    stored = _stored(settings.index_dir)
    for _, _, text, vector in stored:
        assert np.allclose(vector, fp32.embed_documents([text])[0], atol=1e-4), text


def test_documents_are_written_in_file_order_whatever_the_window(
    tmp_path: Path, corpus: Path, embedder: Embedder
) -> None:
    orders = []
    for window in (1, 10, 10_000):
        settings = load_settings(index_dir=tmp_path / f"index-{window}", **{"ingest.embed_window": window})
        ingest([corpus], settings, embedder)
        orders.append([(name, start) for name, start, _, _ in _stored(settings.index_dir)])
    assert orders[0] == orders[1] == orders[2]
    assert [name for name, _ in orders[0]] == sorted(name for name, _ in orders[0])
