"""Fusing a dense and a keyword ranking into one (chosen by bench/retrieval.py; docs/retrieval.md).

Both functions take, for the same candidate chunks, their dense cosine and their BM25 score
(0.0 where the chunk shares no term with the query) and return chunk id -> fused score.

* ``convex``: each method's scores min-max normalised over the candidates of this query, then
  ``w * dense + (1 - w) * keyword``. Scores keep their gaps (a clear BM25 winner stays clear),
  which is why it measured better than rank fusion here.
* ``rrf``: reciprocal rank fusion, ``sum 1 / (k + rank)`` over the methods that rank the chunk
  (a chunk with no keyword in common is not ranked by keywords).

A fused score is relative to one query's candidates: it ranks, it cannot serve as an absolute
relevance threshold (the refusal gate reads the dense cosine).
"""

from __future__ import annotations

from collections.abc import Mapping


def min_max(scores: Mapping[int, float]) -> dict[int, float]:
    """Scores mapped onto [0, 1] over these candidates. All equal: 1.0 each (none is worse),
    unless all are 0 or less (no candidate shares a word with the query), then 0.0 each, so
    a method that found nothing adds nothing to the fused score."""
    if not scores:
        return {}
    low, high = min(scores.values()), max(scores.values())
    if high - low <= 0.0:
        return dict.fromkeys(scores, 1.0 if high > 0.0 else 0.0)
    return {cid: (s - low) / (high - low) for cid, s in scores.items()}


def convex(dense: Mapping[int, float], keyword: Mapping[int, float], dense_weight: float) -> dict[int, float]:
    """``dense_weight * norm(dense) + (1 - dense_weight) * norm(keyword)`` per candidate."""
    d, k = min_max(dense), min_max(keyword)
    ids = set(d) | set(k)
    return {cid: dense_weight * d.get(cid, 0.0) + (1.0 - dense_weight) * k.get(cid, 0.0) for cid in ids}


def rrf(dense: Mapping[int, float], keyword: Mapping[int, float], k: int) -> dict[int, float]:
    """Reciprocal rank fusion (ties in a method's scores broken by chunk id, for determinism)."""
    fused: dict[int, float] = dict.fromkeys(set(dense) | set(keyword), 0.0)
    for scores in (dense, {cid: s for cid, s in keyword.items() if s > 0.0}):
        for rank, cid in enumerate(sorted(scores, key=lambda c: (-scores[c], c)), 1):
            fused[cid] += 1.0 / (k + rank)
    return fused
