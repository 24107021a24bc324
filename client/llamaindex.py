"""A LlamaIndex retriever backed by a running service's POST /v1/search: each ranked chunk becomes
a ``NodeWithScore`` around a ``TextNode`` (text, character span, source document, metadata), so
the service's retrieval can feed LlamaIndex query engines and response synthesizers."""

from __future__ import annotations

from llama_index.core.callbacks import CallbackManager
from llama_index.core.retrievers import BaseRetriever
from llama_index.core.schema import NodeRelationship, NodeWithScore, QueryBundle, RelatedNodeInfo, TextNode

from client.http import DEFAULT_TIMEOUT_S, AsyncRagClient, FiltersArg, RagClient
from client.models import Hit, RetrievalMode

# What an LLM prompt built from the nodes shows beside each chunk's text: where it is from. The
# scores and ids stay in the metadata for code, out of prompts and embeddings.
PROMPT_METADATA = frozenset({"source", "page"})


def to_node(hit: Hit) -> NodeWithScore:
    """The hit as a scored TextNode; ``node.ref_doc_id`` is the service's document id."""
    metadata = hit.retriever_metadata()
    hidden = sorted(set(metadata) - PROMPT_METADATA)
    node = TextNode(
        id_=hit.key,
        text=hit.text,
        metadata=metadata,
        start_char_idx=hit.start,
        end_char_idx=hit.end,
        relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id=hit.document_id)},
        excluded_llm_metadata_keys=hidden,
        excluded_embed_metadata_keys=hidden,
    )
    return NodeWithScore(node=node, score=hit.score)


class RagLlamaRetriever(BaseRetriever):
    """``RagLlamaRetriever("http://127.0.0.1:8000", top_k=4).retrieve("question")``. Left-out
    settings take the server's configured defaults; ``aretrieve`` uses an httpx.AsyncClient of
    its own per call, so any event loop may call it."""

    def __init__(
        self,
        base_url: str,
        top_k: int | None = None,
        mode: RetrievalMode | None = None,
        filters: FiltersArg = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        callback_manager: CallbackManager | None = None,
    ) -> None:
        super().__init__(callback_manager=callback_manager)
        self._client = RagClient(base_url, timeout=timeout_s)  # a bad base_url fails here
        self._base_url, self._timeout_s = base_url, timeout_s
        self._search = {"top_k": top_k, "mode": mode, "filters": filters}

    def close(self) -> None:
        """Closes the sync client's connections."""
        self._client.close()

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return [to_node(hit) for hit in self._client.search(query_bundle.query_str, **self._search)]

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        async with AsyncRagClient(self._base_url, timeout=self._timeout_s) as client:
            hits = await client.search(query_bundle.query_str, **self._search)
        return [to_node(hit) for hit in hits]
