"""An embedder that loads its model only when something needs embedding.

Opening an index writer needs only the embedder's identity (``model_id`` and ``dim``), and a
no-op re-ingest embeds nothing: loading the model there (about a second for int8 ONNX, several
for torch) was most of its wall time. :class:`LazyEmbedder` knows the identity from the settings
and the model folder's config files, loads the real backend on the first call that needs it, and
then checks that the loaded model has the identity it announced.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

import numpy as np

from rag.config import EmbeddingSettings
from rag.errors import ConfigError
from rag.protocols import Embedder


class LazyEmbedder:
    """Implements rag.protocols.Embedder; ``model_id``, ``dim`` and ``batch_size`` are known
    without loading, everything else loads the model (once, thread-safe)."""

    def __init__(
        self, settings: EmbeddingSettings, model_id: str, dim: int, build: Callable[[], Embedder]
    ) -> None:
        self.model_id = model_id
        self.dim = dim
        self.batch_size = settings.batch_size
        self._build = build
        self._inner: Embedder | None = None
        self._lock = threading.Lock()
        self._loader: threading.Thread | None = None
        self._error: Exception | None = None

    @property
    def loaded(self) -> bool:
        """Whether the model has been loaded (tests assert a no-op re-ingest never loads it)."""
        return self._inner is not None

    @property
    def inner(self) -> Embedder:
        """The real embedder, loaded on first access and checked against the announced identity;
        a failed background load raises here, in the caller's thread."""
        if self._inner is None:
            with self._lock:
                if self._error is not None:
                    raise self._error
                if self._inner is None:
                    self._inner = self._checked(self._build())
        return self._inner

    def load_in_background(self) -> None:
        """Start loading the model in a thread (ingestion calls this once it knows some file needs
        parsing: the load, mostly native code, overlaps the parse workers' start-up)."""
        if self._inner is None and self._loader is None:
            self._loader = threading.Thread(target=self._load_quietly, name="rag-embedder-load", daemon=True)
            self._loader.start()

    def _load_quietly(self) -> None:
        with self._lock:
            if self._inner is None and self._error is None:
                try:
                    self._inner = self._checked(self._build())
                except Exception as exc:  # re-raised by the next use, in the caller's thread
                    self._error = exc

    @property
    def max_tokens(self) -> int:
        return self.inner.max_tokens

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:  # nothing to embed is no reason to load the model
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.inner.embed_documents(texts)

    def embed_query(self, text: str) -> np.ndarray:
        return self.inner.embed_query(text)

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    def _checked(self, real: Embedder) -> Embedder:
        """An index opened with the announced identity must get vectors of exactly that model."""
        if (real.model_id, real.dim) != (self.model_id, self.dim):
            raise ConfigError(
                f"embedding.model: the loaded model is {real.model_id!r} with dimension {real.dim}, "
                f"but its config files announced {self.model_id!r} with dimension {self.dim}; "
                "fix the model folder's config.json / modules.json"
            )
        return real
