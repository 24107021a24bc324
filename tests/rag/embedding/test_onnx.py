"""The ONNX backends against the torch backend, on the real packaged MiniLM (exported offline)."""

from __future__ import annotations

import numpy as np
import pytest

from rag.config import EmbeddingSettings
from rag.embedding import make_embedder

pytest.importorskip("onnxruntime", reason="installed by the dev extra; see pyproject.toml")

TEXTS = [
    "Zephyr stores snapshots in /var/lib/zephyr/snapshots.",
    "The relay daemon listens on TCP port 7341.",
    "A much longer passage about retention: daily snapshots are kept for fourteen days, weekly "
    "snapshots for eight weeks, and the prune command runs every night.",
]


@pytest.mark.parametrize(("backend", "min_cos"), [("onnx", 0.9999), ("onnx-int8", 0.98)])
def test_onnx_vectors_match_torch(embedder, backend: str, min_cos: float) -> None:
    onnx = make_embedder(EmbeddingSettings(backend=backend))
    assert onnx.dim == embedder.dim and onnx.max_tokens == embedder.max_tokens
    a, b = onnx.embed_documents(TEXTS), embedder.embed_documents(TEXTS)
    assert np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-4)
    assert (np.sum(a * b, axis=1) >= min_cos).all()
    assert onnx.count_tokens(TEXTS[2]) == embedder.count_tokens(TEXTS[2])
    if backend == "onnx-int8":  # int8 vectors must never be mixed into a torch-built index
        assert onnx.model_id != embedder.model_id
