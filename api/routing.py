"""Routes served once per way of naming a collection: ``/v1/...`` for the default collection and
``/v1/collections/{collection}/...`` for any collection (rag/collections.py).

``CollectionRoutes`` registers each endpoint on two routers, each with its prefix applied at
registration, so every route keeps its full path template (the access log and the metrics label
requests with it) and the schema documents ``{collection}`` once, through ``collection_path``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Path

from rag.collections import NAME_RULE

DEFAULT_PREFIX = "/v1"
COLLECTION_PREFIX = "/v1/collections/{collection}"
# Either prefix, as a regular expression: for layers that see the raw path before routing.
ANY_PREFIX = r"/v1/(?:collections/[^/]+/)?"
F = TypeVar("F", bound=Callable[..., Any])


def prefix_of(collection: str | None) -> str:
    """Where the routes of ``collection`` are: /v1 for the default one (None), else its prefix."""
    return COLLECTION_PREFIX.format(collection=collection) if collection else DEFAULT_PREFIX


def collection_path(
    collection: Annotated[str, Path(description=f"The collection: {NAME_RULE}.", examples=["default"])],
) -> None:
    """Declares the prefix's ``{collection}`` in the schema; api.deps resolves and checks it."""


class CollectionRoutes:
    """``@routes.post("/query", ...)`` adds ``/v1/query`` and ``/v1/collections/{collection}/query``."""

    def __init__(self, **router_options: Any) -> None:
        self.default = APIRouter(prefix=DEFAULT_PREFIX, **router_options)
        self.scoped = APIRouter(
            prefix=COLLECTION_PREFIX, dependencies=[Depends(collection_path)], **router_options
        )

    def get(self, path: str, **options: Any) -> Callable[[F], F]:
        return self._both("get", path, options)

    def post(self, path: str, **options: Any) -> Callable[[F], F]:
        return self._both("post", path, options)

    def delete(self, path: str, **options: Any) -> Callable[[F], F]:
        return self._both("delete", path, options)

    def _both(self, method: str, path: str, options: dict[str, Any]) -> Callable[[F], F]:
        def register(endpoint: F) -> F:
            getattr(self.default, method)(path, **options)(endpoint)
            getattr(self.scoped, method)(path, **options)(endpoint)
            return endpoint

        return register
