"""POST /v1/search: ranked chunks with cosine scores, no generation."""

from __future__ import annotations

import time

from fastapi import APIRouter

from api.deps import State
from api.schemas import ChunkOut, ErrorBody, SearchRequest, SearchResponse

router = APIRouter(tags=["search"])


@router.post(
    "/v1/search",
    response_model=SearchResponse,
    responses={422: {"model": ErrorBody}, 503: {"model": ErrorBody, "description": "No index yet."}},
    summary="Find the chunks most similar to a query",
)
def search(body: SearchRequest, state: State) -> SearchResponse:
    started = time.perf_counter()
    hits = state.pipeline.search(body.query, body.top_k)
    took = round((time.perf_counter() - started) * 1000, 1)
    return SearchResponse(
        results=[ChunkOut.from_hit(h, rank) for rank, h in enumerate(hits, 1)],
        timings={"retrieve_ms": took},
    )
