"""GET /v1/index: provenance of the live index (version, embedding model, chunking, counts)."""

from __future__ import annotations

from api.deps import Reader, State
from api.routing import CollectionRoutes
from api.schemas import ErrorBody, IndexDetails
from rag.errors import IndexMismatchError

router = CollectionRoutes(tags=["health"])


@router.get(
    "/index",
    response_model=IndexDetails,
    responses={404: {"model": ErrorBody, "description": "No index in the collection yet."}},
    summary="What the index was built with and what it holds",
)
def index_details(state: State, collection: Reader) -> IndexDetails:
    manifest = collection.store.snapshot().manifest
    embedder = state.embedder
    problem = None
    try:
        manifest.check_compatible(embedder.model_id, embedder.dim)
    except IndexMismatchError as exc:
        problem = str(exc)
    return IndexDetails(**manifest.model_dump(), compatible=problem is None, problem=problem)
