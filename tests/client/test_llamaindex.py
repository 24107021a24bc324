"""client.llamaindex.RagLlamaRetriever, a real llama-index-core retriever, against the real server
(``light_server``: `rag serve` with the real MiniLM embedder and index)."""

from __future__ import annotations

import asyncio

import pytest
from llama_index.core.llms import MockLLM
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.schema import MetadataMode, NodeWithScore, TextNode

from client.http import RagClient, RagClientError
from client.llamaindex import RagLlamaRetriever
from tests.client.conftest import RELAY_PORT, RELAY_QUESTION


def test_retrieve_returns_scored_text_nodes(base_url: str, client: RagClient) -> None:
    nodes = RagLlamaRetriever(base_url, top_k=3).retrieve(RELAY_QUESTION)
    hits = client.search(RELAY_QUESTION, top_k=3)
    assert all(isinstance(n, NodeWithScore) and isinstance(n.node, TextNode) for n in nodes)
    assert [(n.node.text, n.score) for n in nodes] == [(h.text, h.score) for h in hits]
    first, hit = nodes[0].node, hits[0]
    assert RELAY_PORT in first.text and first.ref_doc_id == hit.document_id
    assert (first.start_char_idx, first.end_char_idx) == (hit.start, hit.end)
    assert first.metadata["source"].endswith("network.html") and first.metadata["chunk_id"] == hit.chunk_id


def test_prompts_see_the_source_but_not_the_scores(base_url: str) -> None:
    node = RagLlamaRetriever(base_url, top_k=1).retrieve(RELAY_QUESTION)[0].node
    shown = node.get_content(metadata_mode=MetadataMode.LLM)
    assert "network.html" in shown and "dense_score" not in shown and RELAY_PORT in shown


def test_aretrieve_equals_retrieve(base_url: str) -> None:
    retriever = RagLlamaRetriever(base_url, top_k=4, mode="hybrid")
    assert asyncio.run(retriever.aretrieve(RELAY_QUESTION)) == retriever.retrieve(RELAY_QUESTION)


def test_it_feeds_a_query_engine(base_url: str) -> None:
    """A LlamaIndex query engine over the retriever (MockLLM: the synthesis is not under test)."""
    engine = RetrieverQueryEngine.from_args(RagLlamaRetriever(base_url, top_k=2), llm=MockLLM())
    response = engine.query(RELAY_QUESTION)
    assert response.source_nodes[0].node.metadata["source"].endswith("network.html")


def test_server_errors_reach_the_caller(base_url: str) -> None:
    with pytest.raises(RagClientError) as caught:
        RagLlamaRetriever(base_url).retrieve("   ")
    assert caught.value.status == 422
