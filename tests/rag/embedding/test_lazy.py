"""The lazy embedder: identity known without loading, the model loaded on first use (or in the
background), checked against what it announced; a no-op re-ingest never loads it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ingest.pipeline import ingest
from rag.config import EmbeddingSettings, load_settings
from rag.embedding import make_lazy_embedder
from rag.embedding.factory import model_dim, resolve_model_path
from rag.embedding.lazy import LazyEmbedder
from rag.errors import ConfigError
from rag.protocols import Embedder


@pytest.mark.parametrize("backend", ["onnx-int8", "onnx", "sentence-transformers"])
def test_identity_is_known_without_loading(backend: str, embedder: Embedder) -> None:
    lazy = make_lazy_embedder(EmbeddingSettings(backend=backend))
    assert isinstance(lazy, LazyEmbedder) and not lazy.loaded
    assert lazy.dim == embedder.dim == 384
    if backend == "onnx-int8":
        assert lazy.model_id == embedder.model_id


def test_first_use_loads_and_vectors_are_the_real_ones(embedder: Embedder) -> None:
    lazy = make_lazy_embedder(EmbeddingSettings())
    assert lazy.embed_documents([]).shape == (0, 384) and not lazy.loaded  # nothing to embed
    vector = lazy.embed_query("relay port")
    assert lazy.loaded and np.allclose(vector, embedder.embed_query("relay port"), atol=1e-6)
    assert lazy.max_tokens == embedder.max_tokens


def test_a_model_that_is_not_what_it_announced_is_refused(embedder: Embedder) -> None:
    lazy = LazyEmbedder(EmbeddingSettings(), embedder.model_id, embedder.dim + 1, lambda: embedder)
    with pytest.raises(ConfigError, match="dimension 384"):
        lazy.embed_query("x")


def test_a_failed_background_load_raises_in_the_caller() -> None:
    def broken() -> Embedder:
        raise ConfigError("embedding.model: broken on purpose")

    lazy = LazyEmbedder(EmbeddingSettings(), "m", 3, broken)
    lazy.load_in_background()
    with pytest.raises(ConfigError, match="broken on purpose"):
        lazy.count_tokens("x")


def test_the_width_comes_from_the_config_files() -> None:
    assert model_dim(resolve_model_path(EmbeddingSettings().model)) == 384


def test_a_no_op_re_ingest_never_loads_the_model(tmp_path: Path, embedder: Embedder) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("The relay listens on TCP port 7341.", encoding="utf-8")
    settings = load_settings(index_dir=tmp_path / "index")
    ingest([docs], settings, embedder)
    lazy = make_lazy_embedder(settings.embedding)
    summary = ingest([docs], settings, lazy)
    assert summary.unchanged == 1 and not lazy.loaded  # type: ignore[attr-defined]
    (docs / "b.md").write_text("Snapshots are kept for 14 days.", encoding="utf-8")
    assert ingest([docs], settings, lazy).added == 1 and lazy.loaded  # type: ignore[attr-defined]
