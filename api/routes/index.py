"""GET /v1/index: provenance of the live index (version, embedding model, chunking, counts)."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import State
from api.schemas import ErrorBody, IndexDetails
from rag.errors import IndexMismatchError

router = APIRouter(tags=["health"])


@router.get(
    "/v1/index",
    response_model=IndexDetails,
    responses={503: {"model": ErrorBody, "description": "No index has been committed yet."}},
    summary="What the index was built with and what it holds",
)
def index_details(state: State) -> IndexDetails:
    manifest = state.store.snapshot().manifest
    embedder = state.embedder
    problem = None
    try:
        manifest.check_compatible(embedder.model_id, embedder.dim)
    except IndexMismatchError as exc:
        problem = str(exc)
    return IndexDetails(**manifest.model_dump(), compatible=problem is None, problem=problem)
