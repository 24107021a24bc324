"""A LangChain retriever backed by a running service's POST /v1/search: each ranked chunk becomes
a ``langchain_core.documents.Document`` (the chunk text, and where it is and how it scored as
metadata), so the service's hybrid retrieval slots into any LangChain chain."""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import PrivateAttr

from client.http import DEFAULT_TIMEOUT_S, AsyncRagClient, RagClient
from client.models import Filters, Hit, RetrievalMode


def to_document(hit: Hit) -> Document:
    """page_content is the chunk's text; metadata: source, page, start, end, chunk_id,
    document_id, the scores, and the document's own metadata (``document_metadata``)."""
    return Document(id=hit.key, page_content=hit.text, metadata=hit.retriever_metadata())


class RagRetriever(BaseRetriever):
    """``RagRetriever(base_url="http://127.0.0.1:8000", top_k=4).invoke("question")``. Left-out
    settings (``top_k``, ``mode``, ``filters``) take the server's configured defaults. Sync calls
    share one connection pool; async calls (``ainvoke``) use an httpx.AsyncClient of their own,
    so the retriever may be used from any event loop."""

    base_url: str
    top_k: int | None = None
    mode: RetrievalMode | None = None
    filters: Filters | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S

    _client: RagClient = PrivateAttr()

    def model_post_init(self, context: Any, /) -> None:
        """Builds the sync client now, so a bad base_url fails at construction, not mid-chain."""
        super().model_post_init(context)
        self._client = RagClient(self.base_url, timeout=self.timeout_s)

    def close(self) -> None:
        """Closes the sync client's connections."""
        self._client.close()

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun
    ) -> list[Document]:
        hits = self._client.search(query, top_k=self.top_k, mode=self.mode, filters=self.filters)
        return [to_document(hit) for hit in hits]

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun
    ) -> list[Document]:
        async with AsyncRagClient(self.base_url, timeout=self.timeout_s) as client:
            hits = await client.search(query, top_k=self.top_k, mode=self.mode, filters=self.filters)
        return [to_document(hit) for hit in hits]
