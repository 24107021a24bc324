"""Dense retrieval: embed the query, take the top-k chunks of the live index by cosine."""

from __future__ import annotations

from rag.index.filters import SearchFilter
from rag.index.handle import IndexHandle
from rag.index.reader import IndexReader
from rag.protocols import Embedder
from rag.types import ScoredChunk


class DenseRetriever:
    def __init__(self, embedder: Embedder, index: IndexHandle) -> None:
        self.embedder = embedder
        self.index = index

    def retrieve(
        self,
        query: str,
        top_k: int,
        filters: SearchFilter | None = None,
        *,
        reader: IndexReader | None = None,
    ) -> list[ScoredChunk]:
        """``filters`` restrict the candidates before the top-k is taken; pass ``reader`` to
        search a version the caller already holds (to report which version answered)."""
        reader = reader or self.index.get()
        reader.manifest.check_compatible(self.embedder.model_id, self.embedder.dim)
        return reader.search(self.embedder.embed_query(query), top_k, filters)
