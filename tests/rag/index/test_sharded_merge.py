"""The shard-merge logic of rag/index/sharded.py, without Ray: a scatter-gather top-k over any split
of the hits into shards is the top-k of all of them, ids route back to their shard, and document
pages merge as one listing (the Ray side is tested in tests/distributed)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from rag.index.sharded import global_id, globalise, group_by_shard, merge_documents, merge_top_k, split_id
from rag.types import Chunk, ScoredChunk

# Scores from a small set, so ties (which the tie-break must settle) are common.
scores = st.sampled_from([-0.5, 0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0])


def _hit(cid: int, score: float) -> ScoredChunk:
    return ScoredChunk(Chunk("d", "s", None, 0, 1, "t", id=cid), score=score, dense_score=score)


@given(
    st.lists(st.tuples(st.integers(0, 10_000), scores), max_size=60, unique_by=lambda t: t[0]),
    st.integers(1, 6),
    st.integers(0, 70),
)
def test_a_merged_top_k_is_the_top_k_of_every_hit(hits: list[tuple[int, float]], shards: int, k: int) -> None:
    """Each shard keeps its own top-k (as a shard actor answers); merging those gives exactly the
    top-k of one list holding every hit, ties ordered by global id."""
    per_shard: list[list[ScoredChunk]] = [[] for _ in range(shards)]
    everything = []
    for local, score in hits:
        shard = local % shards
        per_shard[shard].append(_hit(local, score))
        everything.append((global_id(local, shard, shards), score))
    answers = [
        globalise(sorted(p, key=lambda h: (-h.score, h.chunk.id or 0))[:k], s, shards)
        for s, p in enumerate(per_shard)
    ]
    merged = merge_top_k(reversed(answers), k)  # whichever shard answers first
    expected = sorted(everything, key=lambda t: (-t[1], t[0]))[:k]
    assert [(h.chunk.id, h.score) for h in merged] == expected


@given(st.integers(0, 2**40), st.integers(1, 64), st.data())
def test_global_ids_route_back_to_their_shard(local: int, shards: int, data: st.DataObject) -> None:
    shard = data.draw(st.integers(0, shards - 1))
    gid = global_id(local, shard, shards)
    assert split_id(gid, shards) == (shard, local)
    assert group_by_shard([gid], shards) == {shard: [local]}


@given(
    st.lists(st.lists(st.text("abc", min_size=1, max_size=4), unique=True), min_size=1, max_size=4),
    st.none() | st.integers(0, 10),
    st.integers(0, 10),
)
def test_document_pages_merge_as_one_listing(names: list[list[str]], limit: int | None, offset: int) -> None:
    per_shard = [[{"id": f"{s}/{n}"} for n in sorted(ns)] for s, ns in enumerate(names)]
    listing = sorted(d["id"] for docs in per_shard for d in docs)
    end = None if limit is None else offset + limit
    assert [d["id"] for d in merge_documents(per_shard, limit, offset)] == listing[offset:end]
