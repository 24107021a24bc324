"""GET /healthz: liveness plus what is loaded, so clients know when to send questions."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import State
from api.schemas import Health, IndexInfo
from rag.errors import RagError

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, summary="Service status")
def healthz(state: State) -> Health:
    try:
        m = state.pipeline.retriever.index.get().manifest
        index = IndexInfo(
            loaded=True,
            version=m.version,
            documents=m.documents,
            chunks=m.chunks,
            embedding_model=m.embedding_model,
        )
    except RagError:
        index = IndexInfo(loaded=False)
    ok = index.loaded and state.generator_status == "ready"
    return Health(status="ok" if ok else "degraded", index=index, generator=state.generator_status)
