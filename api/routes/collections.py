"""GET /v1/collections: the collections the caller may read, with what each holds.

A key sees only the collections it has a grant on: the list is no way to learn the names of
the others. Counts come from each collection's manifest, read from disk without opening (and
loading into memory) collections nobody is asking about.
"""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import Caller, State
from api.schemas import CollectionList, CollectionOut
from rag import collections
from rag.errors import RagError
from rag.index import layout
from rag.index.manifest import Manifest

router = APIRouter(tags=["documents"])


@router.get("/v1/collections", response_model=CollectionList, summary="The collections this key may read")
def list_collections(state: State, caller: Caller) -> CollectionList:
    names = collections.names(state.settings)
    visible = [n for n in names if caller is None or caller.allows(n, "read")]
    return CollectionList(collections=[_describe(state, n) for n in visible])


def _describe(state: State, name: str) -> CollectionOut:
    try:
        root = collections.collection_dir(state.settings, name)
        manifest = Manifest.read(layout.current_manifest_path(root))
    except (RagError, OSError, ValueError):  # no index yet, or one being repaired by its writer
        return CollectionOut(name=name, index_version=None, documents=0, chunks=0)
    return CollectionOut(
        name=name, index_version=manifest.version, documents=manifest.documents, chunks=manifest.chunks
    )
