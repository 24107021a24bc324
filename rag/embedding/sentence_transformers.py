"""sentence-transformers backend (torch; `embedding.backend: sentence-transformers`). The default
backend is onnx-int8 (rag.embedding.onnx); both run `embedding.model` (all-MiniLM-L6-v2 by default)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rag.config import EmbeddingSettings
from rag.embedding.factory import resolve_model_path


class SentenceTransformerEmbedder:
    def __init__(self, settings: EmbeddingSettings) -> None:
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # our own progress bars report the work that matters

        path = resolve_model_path(settings.model)
        self._model = SentenceTransformer(str(path), device=settings.device)
        self._settings = settings
        self.batch_size = settings.batch_size
        # The configured name, not the install path, so an index moves between machines.
        self.model_id = self.model_id_for(settings)
        self.dim = int(self._model.get_embedding_dimension())
        special = self._model.tokenizer.num_special_tokens_to_add(pair=False)
        self.max_tokens = int(self._model.max_seq_length) - special

    @classmethod
    def model_id_for(cls, settings: EmbeddingSettings) -> str:
        """The id of ``settings.model``, known without loading it (see rag.embedding.lazy)."""
        return settings.model

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        prefixed = [self._settings.passage_prefix + t for t in texts]
        return self._encode(prefixed)

    def embed_query(self, text: str) -> np.ndarray:
        return self._encode([self._settings.query_prefix + text])[0]

    def count_tokens(self, text: str) -> int:
        """Word pieces without [CLS]/[SEP]; compared against ``max_tokens``."""
        return len(self._model.tokenizer.encode(text, add_special_tokens=False, verbose=False))

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self._model.encode(
            list(texts),
            batch_size=self._settings.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)
