"""Sharded search on a real two-node Ray cluster: two shard indexes, each served by its own actor,
answer as the one index over the same documents does (dense top-k: the same chunks and scores,
with and without a metadata filter), through the store, the retriever and HTTP."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from ingest.pipeline import ingest
from rag.components import build_components
from rag.config import Settings, load_settings
from rag.errors import ConfigError
from rag.index.filters import SearchFilter
from rag.index.reader import IndexReader
from rag.index.sharded import ShardedStore, split_id
from rag.protocols import Embedder, Generation, GenerationParams, Message
from rag.types import ScoredChunk
from tests.distributed.conftest import SAMPLE, SAMPLE_FILES

QUERIES = (
    "which user id range is reserved for system users",
    "how do I pin a package version with apt",
    "how do I keep my Debian system up to date",
    "what does apt-get upgrade do",
)
FAQ = {"kind": "faq"}
FILTERS = (None, SearchFilter(metadata=FAQ))


def _metadata() -> dict[str, dict[str, Any]]:
    """Half the files are "faq", one in each shard (files alternate): a filter that leaves chunks in both."""
    return {(SAMPLE / n).as_posix(): (FAQ if i < 2 else {"kind": "spec"}) for i, n in enumerate(SAMPLE_FILES)}


@pytest.fixture(scope="module")
def indexes(tmp_path_factory: pytest.TempPathFactory, fp32_embedder: Embedder) -> dict[str, Any]:
    """One index of the sample files, and the same files split between two shard indexes."""
    root = tmp_path_factory.mktemp("sharded")
    files = [SAMPLE / n for n in SAMPLE_FILES]
    parts = {"single": files, "shard-0": files[0::2], "shard-1": files[1::2]}
    for name, part in parts.items():
        settings = load_settings(index_dir=root / name, **{"embedding.backend": "onnx"})
        summary = ingest(part, settings, fp32_embedder, metadata=_metadata())
        assert summary.failed == 0 and summary.added == len(part), summary
    return {"root": root, "shards": [root / "shard-0", root / "shard-1"]}


def _sharded_settings(indexes: dict[str, Any], address: str, **extra: Any) -> Settings:
    return load_settings(
        index_dir=indexes["root"] / "single",  # unused by the sharded store; where jobs would live
        **{
            "embedding.backend": "onnx",
            "index.store": "sharded",
            "cluster.address": address,
            "cluster.shards": [str(p) for p in indexes["shards"]],
            **extra,
        },
    )


def _key(hits: list[ScoredChunk]) -> list[tuple[str, int, int]]:
    """What identifies a chunk in both layouts (chunk ids differ: each shard numbers its own)."""
    return [(h.chunk.source, h.chunk.start, h.chunk.end) for h in hits]


def _assert_same(sharded: list[ScoredChunk], single: list[ScoredChunk]) -> None:
    assert _key(sharded) == _key(single)
    assert all(abs(a.score - b.score) <= 1e-5 for a, b in zip(sharded, single, strict=True))
    assert [h.chunk.text for h in sharded] == [h.chunk.text for h in single]


def test_sharded_top_k_is_the_single_index_top_k(
    ray_address: str, indexes: dict[str, Any], fp32_embedder: Embedder
) -> None:
    store = ShardedStore(_sharded_settings(indexes, ray_address))
    snapshot = store.snapshot()
    single = IndexReader.open(indexes["root"] / "single")
    assert (snapshot.manifest.documents, snapshot.manifest.chunks) == (single.manifest.documents, single.size)
    owners = set()
    for query in QUERIES:
        vector = fp32_embedder.embed_query(query)
        for filters in FILTERS:
            for k in (1, 5, 20):
                hits = snapshot.search(vector, k, filters)
                _assert_same(hits, single.search(vector, k, filters))
                owners |= {split_id(int(h.chunk.id or 0), 2)[0] for h in hits}
                if filters is not None:
                    assert all(h.metadata == FAQ for h in hits)
    assert owners == {0, 1}  # both shards contributed results
    # Ids route back to their shard: the stored vectors and cosines of hits found by search.
    hits = snapshot.search(fp32_embedder.embed_query(QUERIES[0]), 8)
    ids = [int(h.chunk.id or 0) for h in hits]
    cosines = snapshot.dense_scores(fp32_embedder.embed_query(QUERIES[0]), ids)
    assert all(abs(cosines[h.chunk.id or 0] - h.score) <= 1e-5 for h in hits)
    assert snapshot.vectors(ids).shape == (len(ids), fp32_embedder.dim)
    assert [d["source"] for d in snapshot.documents()] == [d["source"] for d in single.documents()]


def test_retrievers_over_shards_rank_as_over_one_index(
    ray_address: str, indexes: dict[str, Any], fp32_embedder: Embedder
) -> None:
    """Dense mode is exact; hybrid fuses here over the union of the shards' candidates, each BM25
    from its own shard's statistics, so it is checked for well-formed results, not equality."""
    sharded = build_components(_sharded_settings(indexes, ray_address), embedder=fp32_embedder).pipeline()
    single_settings = load_settings(index_dir=indexes["root"] / "single", **{"embedding.backend": "onnx"})
    single = build_components(single_settings, embedder=fp32_embedder).pipeline()
    for query in QUERIES:
        for filters in FILTERS:
            got = sharded.retrieve(query, 4, filters=filters, mode="dense")
            _assert_same(got.hits, single.retrieve(query, 4, filters=filters, mode="dense").hits)
        hybrid = sharded.retrieve(query, 4, mode="hybrid").hits
        assert 0 < len(hybrid) <= 4 and all(h.dense_score is not None for h in hybrid)
        assert [h.score for h in hybrid] == sorted((h.score for h in hybrid), reverse=True)


class FirstSentenceGenerator:
    """A declared fake generator: the retrieval under test is the service's, not what a model
    writes. It answers with the first sentence of passage [1], cited, so the answer shows which
    chunk reached the prompt first (grounding supports it: the sentence is in the passage)."""

    name = "first-sentence"

    def generate(self, messages: list[Message], params: GenerationParams) -> Generation:
        return Generation("".join(self.stream(messages, params)))

    def stream(self, messages: list[Message], params: GenerationParams) -> Iterator[str]:
        prompt = "\n".join(m["content"] for m in messages)
        found = re.search(r'<passage n="1"[^>]*>\n(.+?)\n</passage>', prompt, re.DOTALL)
        text = " ".join(found.group(1).split()) if found else ""
        sentence = re.split(r"(?<=[.!?])\s", text)[0] if text else "The documents do not contain the answer."
        yield f"{sentence} [1]"


def test_http_search_and_query_answer_from_every_shard(
    ray_address: str, indexes: dict[str, Any], fp32_embedder: Embedder
) -> None:
    from api.app import create_app
    from tests.serving import serving_in_thread

    settings = _sharded_settings(indexes, ray_address, **{"safety.min_answer_relevance": 0})
    components = build_components(settings, embedder=fp32_embedder, generator=FirstSentenceGenerator())
    single = IndexReader.open(indexes["root"] / "single")
    with serving_in_thread(create_app(settings, components=components)) as client:
        for query in QUERIES[:2]:
            body = {"query": query, "top_k": 5, "mode": "dense"}
            results = client.post("/v1/search", json=body).json()["results"]
            expected = single.search(fp32_embedder.embed_query(query), 5)
            assert [(r["source"], r["text"]) for r in results] == [
                (h.chunk.source, h.chunk.text) for h in expected
            ]
            # The API rounds scores to 4 places.
            assert all(abs(r["score"] - h.score) <= 1e-4 for r, h in zip(results, expected, strict=True))
            answer = client.post("/v1/query", json={"question": query, "mode": "dense"}).json()
            assert not answer["refused"], answer
            assert answer["citations"][0]["source"] == expected[0].chunk.source
        info = client.get("/v1/index").json()
        assert info["documents"] == len(SAMPLE_FILES)


def test_a_sharded_store_needs_its_shards_and_refuses_writes(
    ray_address: str, indexes: dict[str, Any]
) -> None:
    with pytest.raises(ConfigError, match=r"cluster\.shards"):
        ShardedStore(load_settings(**{"index.store": "sharded", "cluster.address": ray_address}))
    with pytest.raises(ConfigError, match="read-only"):
        ShardedStore(_sharded_settings(indexes, ray_address)).writer()
