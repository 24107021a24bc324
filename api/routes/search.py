"""POST /v1/search: ranked chunks with cosine scores, no generation."""

from __future__ import annotations

import time

from fastapi import HTTPException

from api.deps import Reader, State
from api.routing import CollectionRoutes
from api.schemas import (
    ChunkOut,
    ErrorBody,
    SearchRequest,
    SearchResponse,
    filters_over_limit,
    question_over_limit,
)

router = CollectionRoutes(tags=["search"])


@router.post(
    "/search",
    response_model=SearchResponse,
    responses={
        422: {"model": ErrorBody},
        404: {"model": ErrorBody, "description": "No such collection, or no index in it yet."},
        503: {"model": ErrorBody, "description": "An index file is damaged."},
    },
    summary="Find the chunks most similar to a query",
)
def search(body: SearchRequest, state: State, collection: Reader) -> SearchResponse:
    """`filters` (metadata, source prefix) restrict the candidates before the top-k is taken.
    `index_version` names the one committed version all results come from."""
    server = state.settings.server
    problem = question_over_limit(body.query, server) or filters_over_limit(body.filters, server)
    if problem:
        raise HTTPException(422, problem)
    started = time.perf_counter()
    filters = body.filters.to_filter() if body.filters else None
    found = collection.pipeline.retrieve(
        body.query, body.top_k, filters=filters, mode=body.mode
    )  # as /v1/query
    took = round((time.perf_counter() - started) * 1000, 1)
    return SearchResponse(
        results=[ChunkOut.from_hit(h, rank) for rank, h in enumerate(found.hits, 1)],
        timings={"retrieve_ms": took},
        index_version=found.index_version,
    )
