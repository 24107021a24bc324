"""Keeping near-duplicate chunks out of one top-k.

The same text ingested twice (a copied file, a page repeated in two manuals) gives chunks with
identical or almost identical vectors; without a filter they fill the top-k with one passage
and push the second-best source out of the prompt.

* ``drop_duplicates``: walk the ranking best first and skip a chunk whose stored vector has a
  cosine of at least ``threshold`` with a chunk already kept (or the same text).
* ``mmr``: maximal marginal relevance, ``lambda * relevance - (1 - lambda) * max cosine to
  the chunks already picked``; ``lambda = 1`` is the plain ranking.

Both read the vectors the index already stores; neither embeds anything.
"""

from __future__ import annotations

import numpy as np

from rag.types import ScoredChunk


def drop_duplicates(hits: list[ScoredChunk], vectors: np.ndarray, threshold: float) -> list[ScoredChunk]:
    """``hits`` (best first) without the near duplicates of better hits; ``vectors[i]`` is hit i's."""
    return [hits[i] for i in distinct(hits, vectors, threshold)]


def distinct(hits: list[ScoredChunk], vectors: np.ndarray, threshold: float) -> list[int]:
    """Positions of the hits ``drop_duplicates`` keeps, in order (so a caller can keep their
    vectors too)."""
    kept: list[int] = []
    texts: set[str] = set()
    for i, hit in enumerate(hits):
        text = hit.chunk.text.strip()
        if text in texts:
            continue
        if kept and float(np.max(vectors[kept] @ vectors[i])) >= threshold:
            continue
        kept.append(i)
        texts.add(text)
    return kept


def mmr(
    hits: list[ScoredChunk], vectors: np.ndarray, relevance: list[float], lam: float, k: int
) -> list[ScoredChunk]:
    """Pick ``k`` hits by maximal marginal relevance; ``relevance`` is on a [0, 1] scale."""
    if lam >= 1.0 or len(hits) <= 1:
        return hits[:k]
    remaining = list(range(len(hits)))
    picked: list[int] = []
    while remaining and len(picked) < k:
        if picked:
            similarity = np.max(vectors[remaining] @ vectors[picked].T, axis=1)
        else:
            similarity = np.zeros(len(remaining))
        marginal = [
            lam * relevance[i] - (1.0 - lam) * float(s) for i, s in zip(remaining, similarity, strict=True)
        ]
        best = remaining[int(np.argmax(marginal))]
        picked.append(best)
        remaining.remove(best)
    return [hits[i] for i in picked]
