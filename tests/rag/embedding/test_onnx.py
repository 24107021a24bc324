"""The ONNX backends against the torch backend, on the real packaged MiniLM (exported offline)."""

from __future__ import annotations

import numpy as np
import pytest

from rag.config import EmbeddingSettings
from rag.embedding import make_embedder


@pytest.fixture(scope="module")
def torch_embedder():
    return make_embedder(EmbeddingSettings(backend="sentence-transformers"))


TEXTS = [
    "Zephyr stores snapshots in /var/lib/zephyr/snapshots.",
    "The relay daemon listens on TCP port 7341.",
    "A much longer passage about retention: daily snapshots are kept for fourteen days, weekly "
    "snapshots for eight weeks, and the prune command runs every night.",
]


@pytest.mark.parametrize(("backend", "min_cos"), [("onnx", 0.9999), ("onnx-int8", 0.98)])
def test_onnx_vectors_match_torch(torch_embedder, backend: str, min_cos: float) -> None:
    embedder = torch_embedder
    onnx = make_embedder(EmbeddingSettings(backend=backend))
    assert onnx.dim == embedder.dim and onnx.max_tokens == embedder.max_tokens
    a, b = onnx.embed_documents(TEXTS), embedder.embed_documents(TEXTS)
    assert np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-4)
    assert (np.sum(a * b, axis=1) >= min_cos).all()
    assert onnx.count_tokens(TEXTS[2]) == embedder.count_tokens(TEXTS[2])
    if backend == "onnx-int8":  # int8 vectors must never be mixed into a torch-built index
        assert onnx.model_id != embedder.model_id


def test_int8_vectors_shift_only_slightly_with_their_batch() -> None:
    """Activations are quantized per batch, so a text's int8 vector depends a little on what it is
    embedded with; the README promises "within about 0.01 cosine". Torch vectors do not move."""
    int8 = make_embedder(EmbeddingSettings(backend="onnx-int8"))
    alone = np.stack([int8.embed_documents([t])[0] for t in TEXTS])
    together = int8.embed_documents(TEXTS)
    assert (np.sum(alone * together, axis=1) >= 0.99).all()
