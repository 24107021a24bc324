"""Dense retrieval (registry name ``dense``): embed the query, take the top-k chunks by cosine."""

from __future__ import annotations

from typing import TYPE_CHECKING

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

    def retrieve(self, query: str, top_k: int, filters: SearchFilter | None = None) -> Retrieved:
        """``filters`` restrict the candidates before the top-k is taken; every hit comes from
        one committed version, which the result names."""
        snapshot = self.store.snapshot()
        snapshot.manifest.check_compatible(self.embedder.model_id, self.embedder.dim)
        hits = snapshot.search(self.embedder.embed_query(query), top_k, filters)
        return Retrieved(hits, snapshot.version)
