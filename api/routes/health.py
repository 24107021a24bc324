"""GET /healthz: liveness plus what is loaded, so clients know when to send questions.

It says what is wrong rather than only that something is: a damaged index file, an index built
with another embedding model, a generator still loading, failed, or (remote) unreachable.
"""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import State
from api.errors import error_body
from api.schemas import Health, IndexInfo, QueueInfo
from rag.errors import RagError

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, summary="Service status")
def healthz(state: State) -> Health:
    """Always 200 while the process serves HTTP; `status` is `ok` only when questions can be
    answered, and `index.error` / `generator` say why not. Needs no key; once API keys are
    configured it leaves out the default collection's counts and embedding model."""
    index = _index_info(state)
    if state.keys.configured:  # open to anyone: once keys guard the documents, no counts, model
        index = IndexInfo(loaded=index.loaded, version=index.version, error=index.error)
    generator = state.generator_health()
    ok = index.loaded and index.error is None and generator == "ready"
    if state.keys.configured:
        generator = generator.split(":", 1)[0]  # nor the remote generator's URL or error text
    gate = state.gate
    queue = QueueInfo(
        busy=gate.busy,
        waiting=gate.waiting,
        max_waiting=gate.max_waiting,
        expected_wait_s=gate.expected_wait_s(),
    )
    return Health(status="ok" if ok else "degraded", index=index, generator=generator, queue=queue)


def _index_info(state: State) -> IndexInfo:
    try:
        snapshot = state.store.snapshot()
    except RagError as exc:  # no index yet, or the version CURRENT names cannot be opened
        return IndexInfo(loaded=False, error=_describe(exc))
    m = snapshot.manifest
    info = IndexInfo(
        loaded=True,
        version=m.version,
        documents=m.documents,
        chunks=m.chunks,
        embedding_model=m.embedding_model,
    )
    try:
        snapshot.check_readable()
        m.check_compatible(state.embedder.model_id, state.embedder.dim)
    except RagError as exc:
        info.error = _describe(exc)
    return info


def _describe(exc: RagError) -> str:
    return f"{type(exc).__name__}: {error_body(exc)}"  # no server path for a missing index
