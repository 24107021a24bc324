"""The default retriever (registry name ``hybrid``): dense, keyword or both fused, per request.

Every mode gathers ``retrieval.candidates`` chunks per method it uses, then gives *every*
candidate both of its scores (the cosine from its stored vector, the BM25 of exactly that chunk)
so fusion never guesses a missing score and the refusal gate always has a cosine. Then it ranks
(cosine, BM25 or the fused score), drops near duplicates (rag/retrieval/diversity.py) and cuts
to top_k. Everything is read from one store snapshot, so one response is one index version.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from rag.errors import UnsupportedModeError
from rag.protocols import Embedder, KeywordSearchable, Retrieved, StoreSnapshot, VectorReadable, VectorStore
from rag.retrieval import MODES, diversity, fusion
from rag.types import ScoredChunk

if TYPE_CHECKING:
    from rag.config import RetrievalSettings, Settings
    from rag.index.filters import SearchFilter

log = logging.getLogger("rag.retrieval")


class HybridRetriever:
    def __init__(self, settings: Settings, embedder: Embedder, store: VectorStore) -> None:
        self.settings = settings
        self.embedder = embedder
        self.store = store
        self._warned_version: int | None = None

    @property
    def config(self) -> RetrievalSettings:
        return self.settings.retrieval

    def retrieve(
        self, query: str, top_k: int, filters: SearchFilter | None = None, mode: str | None = None
    ) -> Retrieved:
        mode = mode or self.config.mode
        if mode not in MODES:
            raise UnsupportedModeError(f"unknown retrieval mode {mode!r}; choose one of {', '.join(MODES)}")
        snapshot = self.store.snapshot()
        snapshot.manifest.check_compatible(self.embedder.model_id, self.embedder.dim)
        keyword_ready = isinstance(snapshot, KeywordSearchable) and snapshot.has_keyword_index
        if mode == "hybrid" and not keyword_ready:
            self._warn_dense_only(snapshot)
            mode = "dense"
        if mode == "keyword" and not isinstance(snapshot, KeywordSearchable):
            raise UnsupportedModeError("the configured store (index.store) has no keyword search")
        vector = self.embedder.embed_query(query)
        pool = max(self.config.candidates, top_k)
        candidates = self._candidates(snapshot, query, vector, pool, filters, mode)
        hits = self._score(snapshot, query, vector, candidates, keyword_ready, mode)
        hits = self._diversify(snapshot, hits, top_k)
        return Retrieved(hits[:top_k], snapshot.version)

    def _candidates(
        self,
        snapshot: StoreSnapshot,
        query: str,
        vector: np.ndarray,
        pool: int,
        filters: SearchFilter | None,
        mode: str,
    ) -> dict[int, ScoredChunk]:
        found: dict[int, ScoredChunk] = {}
        if mode in ("dense", "hybrid"):
            found.update(_by_id(snapshot.search(vector, pool, filters)))
        if mode in ("keyword", "hybrid"):
            assert isinstance(snapshot, KeywordSearchable)
            for cid, hit in _by_id(snapshot.keyword_search(query, pool, filters)).items():
                found.setdefault(cid, hit)
        return found

    def _score(
        self,
        snapshot: StoreSnapshot,
        query: str,
        vector: np.ndarray,
        candidates: dict[int, ScoredChunk],
        keyword_ready: bool,
        mode: str,
    ) -> list[ScoredChunk]:
        """Both scores for every candidate, then the mode's ranking score, best first."""
        ids = list(candidates)
        dense = {cid: h.dense_score for cid, h in candidates.items() if h.dense_score is not None}
        missing = [cid for cid in ids if cid not in dense]
        if missing and isinstance(snapshot, VectorReadable):
            dense.update(snapshot.dense_scores(vector, missing))
        keyword: dict[int, float] = {}
        if keyword_ready:
            assert isinstance(snapshot, KeywordSearchable)
            keyword = snapshot.keyword_scores(query, ids)
        if mode == "dense":
            rank = dense
        elif mode == "keyword":
            rank = keyword
        elif self.config.fusion == "rrf":
            rank = fusion.rrf(dense, keyword, self.config.rrf_k)
        else:
            rank = fusion.convex(dense, keyword, self.config.dense_weight)
        scored = [
            replace(hit, score=rank.get(cid, 0.0), dense_score=dense.get(cid), keyword_score=keyword.get(cid))
            for cid, hit in candidates.items()
        ]
        return sorted(scored, key=lambda h: (-h.score, h.chunk.id or 0))

    def _diversify(self, snapshot: StoreSnapshot, hits: list[ScoredChunk], top_k: int) -> list[ScoredChunk]:
        threshold, lam = self.config.duplicate_similarity, self.config.mmr_lambda
        if not hits or not isinstance(snapshot, VectorReadable) or (threshold > 1.0 and lam >= 1.0):
            return hits
        vectors = snapshot.vectors([int(h.chunk.id or 0) for h in hits])
        if threshold <= 1.0:
            keep = diversity.distinct(hits, vectors, threshold)
            hits, vectors = [hits[i] for i in keep], vectors[keep]
        if lam < 1.0:
            relevance = list(fusion.min_max({i: h.score for i, h in enumerate(hits)}).values())
            hits = diversity.mmr(hits, vectors, relevance, lam, top_k)
        return hits

    def _warn_dense_only(self, snapshot: StoreSnapshot) -> None:
        """Once per index version: hybrid quietly degrading to dense would hide a lost feature."""
        if self._warned_version == snapshot.version:
            return
        self._warned_version = snapshot.version
        if isinstance(snapshot, KeywordSearchable):
            why = "has no keyword terms (built before keyword search); the next `rag ingest` adds them"
        else:
            why = f"is a {type(snapshot).__name__}, which has no keyword search"
        log.warning("index version %s %s: hybrid queries use dense search only", snapshot.version, why)


def _by_id(hits: list[ScoredChunk]) -> dict[int, ScoredChunk]:
    return {int(h.chunk.id): h for h in hits if h.chunk.id is not None}
