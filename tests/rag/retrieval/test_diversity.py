"""Properties of the near-duplicate filter and MMR (rag/retrieval/diversity.py)."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from rag.retrieval.diversity import drop_duplicates, mmr
from rag.types import Chunk, ScoredChunk

EPS = 1e-5  # float32 dot products computed in another order may differ in the last bits
TEXTS = ["relay port", "relay port ", "retention", "prune at night", "catalog db"]


@st.composite
def ranked_hits(draw: st.DrawFn, max_size: int = 12) -> tuple[list[ScoredChunk], np.ndarray]:
    """Hits best first with unit vectors in 3 dimensions on a coarse grid, so near and exact
    duplicates (and repeated texts) are common."""
    n = draw(st.integers(0, max_size))
    rows = []
    for _ in range(n):
        v = np.array(draw(st.lists(st.integers(-2, 2), min_size=3, max_size=3)), dtype=np.float32)
        if not v.any():
            v[0] = 1.0
        rows.append(v / np.linalg.norm(v))
    vectors = np.stack(rows) if rows else np.zeros((0, 3), np.float32)
    hits = [
        ScoredChunk(
            chunk=Chunk(
                "d", "d.md", None, 0, 1, draw(st.sampled_from(TEXTS)) + str(draw(st.integers(0, 3))), id=i
            ),
            score=float(n - i),
        )
        for i in range(n)
    ]
    return hits, vectors


def positions(kept: list[ScoredChunk]) -> list[int]:
    return [int(h.chunk.id) for h in kept]  # chunk id == position in the input ranking


@given(ranked_hits(), st.floats(0.0, 1.0))
def test_drop_duplicates_keeps_no_two_similar_hits_and_keeps_the_first(
    data: tuple[list[ScoredChunk], np.ndarray], threshold: float
) -> None:
    hits, vectors = data
    kept = drop_duplicates(hits, vectors, threshold)
    order = positions(kept)
    assert order == sorted(order) and len(set(order)) == len(order)  # a subsequence, in rank order
    if hits:
        assert order[0] == 0  # the best hit is never a duplicate of anything better
    for i, a in enumerate(order):
        for b in order[i + 1 :]:
            assert float(vectors[a] @ vectors[b]) < threshold + EPS, (a, b)
            assert hits[a].chunk.text.strip() != hits[b].chunk.text.strip()
    for dropped in set(range(len(hits))) - set(order):  # only duplicates of a better kept hit go
        better = [k for k in order if k < dropped]
        assert better
        assert any(
            float(vectors[k] @ vectors[dropped]) >= threshold - EPS
            or hits[k].chunk.text.strip() == hits[dropped].chunk.text.strip()
            for k in better
        )


@given(ranked_hits())
def test_drop_duplicates_drops_exact_copies_at_any_threshold_up_to_one(
    data: tuple[list[ScoredChunk], np.ndarray],
) -> None:
    hits, vectors = data
    if not hits:
        return
    doubled = [*hits, *hits]  # every hit again, lower down
    kept = drop_duplicates(doubled, np.concatenate([vectors, vectors]), 1.0)
    assert len(kept) <= len(hits)
    assert all(k is h for k, h in zip(kept, drop_duplicates(hits, vectors, 1.0), strict=True))


@given(ranked_hits(), st.integers(0, 15), st.data())
def test_mmr_with_lambda_one_is_the_identity_cut(
    data: tuple[list[ScoredChunk], np.ndarray], k: int, draw: st.DataObject
) -> None:
    """lambda = 1 is the plain ranking: the hits as given, cut to k (whatever the relevance)."""
    hits, vectors = data
    relevance = [draw.draw(st.integers(0, 100)) / 100 for _ in hits]
    assert mmr(hits, vectors, relevance, 1.0, k) == hits[:k]


@given(ranked_hits(), st.integers(0, 99).map(lambda x: x / 100), st.integers(1, 15), st.data())
def test_mmr_picks_k_distinct_hits_most_relevant_first(
    data: tuple[list[ScoredChunk], np.ndarray], lam: float, k: int, draw: st.DataObject
) -> None:
    hits, vectors = data
    relevance = [draw.draw(st.integers(0, 100)) / 100 for _ in hits]
    picked = positions(mmr(hits, vectors, relevance, lam, k))
    assert len(picked) == min(k, len(hits)) and len(set(picked)) == len(picked)
    if len(hits) > 1 and lam > 0.0:
        assert relevance[picked[0]] == max(relevance)  # nothing picked yet: pure relevance
    if lam == 0.0 and len(picked) >= 2:
        # Pure diversity: the second pick is the hit least similar to the first.
        similarity = [float(vectors[i] @ vectors[picked[0]]) for i in range(len(hits)) if i != picked[0]]
        assert float(vectors[picked[1]] @ vectors[picked[0]]) <= min(similarity) + EPS


def test_mmr_moves_a_near_copy_below_a_different_hit() -> None:
    """With a low lambda, the runner-up that repeats the best hit yields to a different one."""
    vectors = np.array([[1.0, 0.0], [0.999, 0.0447], [0.0, 1.0]], dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    hits = [
        ScoredChunk(chunk=Chunk("d", "d.md", None, 0, 1, t, id=i), score=s)
        for i, (t, s) in enumerate([("a", 1.0), ("a again", 0.95), ("b", 0.6)])
    ]
    assert positions(mmr(hits, vectors, [1.0, 0.9, 0.5], 0.5, 2)) == [0, 2]
    assert positions(mmr(hits, vectors, [1.0, 0.9, 0.5], 1.0, 2)) == [0, 1]
