"""Dense retrieval: embed the query, take the top-k chunks of the live index by cosine."""

from __future__ import annotations

from rag.index.handle import IndexHandle
from rag.protocols import Embedder
from rag.types import ScoredChunk


class DenseRetriever:
    def __init__(self, embedder: Embedder, index: IndexHandle) -> None:
        self.embedder = embedder
        self.index = index

    def retrieve(self, query: str, top_k: int) -> list[ScoredChunk]:
        reader = self.index.get()
        reader.manifest.check_compatible(self.embedder.model_id, self.embedder.dim)
        return reader.search(self.embedder.embed_query(query), top_k)
