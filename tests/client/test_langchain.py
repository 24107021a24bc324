"""client.langchain.RagRetriever, a real langchain-core retriever, against the real server
(``light_server``: `rag serve` with the real MiniLM embedder and index)."""

from __future__ import annotations

import asyncio

import pytest
from langchain_core.documents import Document
from langchain_core.runnables import RunnableLambda

from client.http import RagClient, RagClientError
from client.langchain import RagRetriever
from tests.client.conftest import RELAY_PORT, RELAY_QUESTION

METADATA_KEYS = {
    "source",
    "page",
    "start",
    "end",
    "chunk_id",
    "document_id",
    "score",
    "dense_score",
    "keyword_score",
    "rerank_score",
    "document_metadata",
}


def test_invoke_returns_one_document_per_hit(base_url: str, client: RagClient) -> None:
    retriever = RagRetriever(base_url=base_url, top_k=3)
    docs = retriever.invoke(RELAY_QUESTION)
    hits = client.search(RELAY_QUESTION, top_k=3)
    assert all(isinstance(doc, Document) for doc in docs)
    assert [doc.page_content for doc in docs] == [hit.text for hit in hits]
    assert RELAY_PORT in docs[0].page_content
    first = docs[0].metadata
    assert set(first) == METADATA_KEYS
    assert first["source"].endswith("network.html") and first["score"] == hits[0].score
    assert first["document_id"] == hits[0].document_id and first["chunk_id"] == hits[0].chunk_id
    assert (first["start"], first["end"]) == (hits[0].start, hits[0].end)
    retriever.close()


def test_ainvoke_uses_the_async_client_and_equals_invoke(base_url: str) -> None:
    retriever = RagRetriever(base_url=base_url, top_k=4, mode="dense")
    assert asyncio.run(retriever.ainvoke(RELAY_QUESTION)) == retriever.invoke(RELAY_QUESTION)


def test_the_pdf_page_and_filters_reach_the_documents(base_url: str) -> None:
    retriever = RagRetriever(base_url=base_url, filters={"source_prefix": "/"}, top_k=10)
    docs = retriever.invoke("How do I restore a single file from a snapshot?")
    pdf = [doc for doc in docs if doc.metadata["source"].endswith(".pdf")]
    assert pdf and pdf[0].metadata["page"] == 2 and "zephyr restore" in pdf[0].page_content


def test_it_composes_in_a_chain(base_url: str) -> None:
    """The retriever is a Runnable: piped into a step that formats the context for a prompt."""
    cite = RunnableLambda(lambda docs: "\n".join(f"[{d.metadata['source']}] {d.page_content}" for d in docs))
    context = (RagRetriever(base_url=base_url, top_k=2) | cite).invoke(RELAY_QUESTION)
    assert "network.html]" in context and RELAY_PORT in context


def test_server_errors_reach_the_caller(base_url: str) -> None:
    retriever = RagRetriever(base_url=base_url, top_k=1000)
    with pytest.raises(RagClientError) as caught:
        retriever.invoke(RELAY_QUESTION)
    assert caught.value.status == 422 and "top_k" in caught.value.message
    with pytest.raises(RagClientError):
        asyncio.run(retriever.ainvoke(RELAY_QUESTION))
