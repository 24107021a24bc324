"""Dense retrieval only (registry name ``dense``): embed the query, take the top-k by cosine.

For stores without keyword search; the default ``hybrid`` retriever does this too in mode
``dense``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rag.errors import UnsupportedModeError
from rag.protocols import Embedder, Retrieved, VectorStore

if TYPE_CHECKING:
    from rag.config import Settings
    from rag.index.filters import SearchFilter


class DenseRetriever:
    """Each hit's ``score`` is its cosine, and so is its ``dense_score``."""

    def __init__(self, settings: Settings, embedder: Embedder, store: VectorStore) -> None:
        self.settings = settings
        self.embedder = embedder
        self.store = store

    def retrieve(
        self, query: str, top_k: int, filters: SearchFilter | None = None, mode: str | None = None
    ) -> Retrieved:
        """``filters`` restrict the candidates before the top-k is taken; every hit comes from
        one committed version, which the result names."""
        if mode not in (None, "dense"):
            raise UnsupportedModeError(
                f"mode {mode!r} needs keyword search, which retrieval.retriever 'dense' does not do; "
                "use mode 'dense' or set retrieval.retriever to 'hybrid'"
            )
        snapshot = self.store.snapshot()
        snapshot.manifest.check_compatible(self.embedder.model_id, self.embedder.dim)
        hits = snapshot.search(self.embedder.embed_query(query), top_k, filters)
        return Retrieved(hits, snapshot.version)
