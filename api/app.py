"""The FastAPI application: `create_app(settings)`; heavy models load once, in the lifespan.

`create_app(settings, components=...)` serves components built elsewhere (a test's, an embedding
application's) instead of building them; see rag.components.build_components.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi

from api import errors, ui
from api.gate import QueueHeaders
from api.hosts import AllowedHosts
from api.limits import BodyLimit
from api.observability import ObservedApp, ServiceMetrics
from api.routes import chat, collections, documents, evaluate, health, index, jobs, metrics, query, search
from api.schemas import ErrorBody, ValidationErrorBody
from api.state import AppState
from rag.components import Components
from rag.config import ServerSettings, Settings, load_settings

EVALUATE_PATH = "/v1/evaluate"
# What a browser page on an allowed origin may send and read (only with server.cors_origins set).
CORS_METHODS = ["GET", "POST", "DELETE"]
CORS_REQUEST_HEADERS = ["Authorization", "Content-Type", "X-Request-Id"]
CORS_RESPONSE_HEADERS = ["Retry-After", "X-Request-Id", "X-Queue-Position", "X-Queue-Wait-Ms", "Location"]


def create_app(settings: Settings | None = None, *, components: Components | None = None) -> FastAPI:
    """The app for ``settings``. With ``components`` it serves those (and loads no other
    generator when they hold one); without, it builds them in the lifespan and loads the
    generator in the background."""
    settings = settings or (components.settings if components else load_settings())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.rag = AppState.start(settings, components)
        app.state.rag.metrics = service_metrics
        app.state.rag.collections.default()  # opened at start: its jobs recover now, not at the first request
        yield
        app.state.rag.collections.close()

    service_metrics = ServiceMetrics(settings.server.latency_buckets_s)  # this app's registry
    app = ObservedApp(
        service_metrics,
        title="RAG service",
        version="0.1.0",
        description="Grounded answers with citations over your documents; refusals when they do not say.",
        lifespan=lifespan,
    )
    errors.install(app)
    server = settings.server

    def body_limit(path: str) -> int:
        kb = server.max_evaluate_body_kb if path == EVALUATE_PATH else server.max_body_kb
        return kb * 1024

    app.add_middleware(BodyLimit, limit_for=body_limit)
    app.add_middleware(QueueHeaders)  # X-Queue-Position / X-Queue-Wait-Ms on answers
    _add_exposure_layers(app, server)
    # A collection's routes twice (api/routing.py): /v1/... is the default collection,
    # /v1/collections/{name}/... any; the OpenAI-compatible API has its own error shape.
    per_collection = (query.router, search.router, documents.router, jobs.router, index.router, chat.router)
    for routes in per_collection:
        app.include_router(routes.default)
    for routes in per_collection:
        app.include_router(routes.scoped)
    for router in (collections.router, evaluate.router, health.router, metrics.router):
        app.include_router(router)
    ui.mount(app)  # the web page at /ui/ with its CSP (api/ui.py); not in the schema
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _add_exposure_layers(app: FastAPI, server: ServerSettings) -> None:
    """CORS only for the configured origins (none by default: no browser page may call the API),
    and, outermost, the Host header check (api/hosts.py), which /healthz passes through too."""
    if server.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=server.cors_origins,
            allow_methods=CORS_METHODS,
            allow_headers=CORS_REQUEST_HEADERS,
            expose_headers=CORS_RESPONSE_HEADERS,
        )
    app.add_middleware(AllowedHosts, allowed=server.allowed_hosts)


def _openapi(app: FastAPI) -> dict[str, Any]:
    """The generated schema, corrected to what the server really sends: every error has the
    ErrorBody shape (422 included, not FastAPI's default), a body-taking route can answer 413,
    and any route can answer 500 with the same JSON shape."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for model in (ErrorBody, ValidationErrorBody):
        components[model.__name__] = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(components[model.__name__].pop("$defs", {}))
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    for operation in _operations(schema):
        responses = operation.setdefault("responses", {})
        if "422" in responses:
            responses["422"] = _error_response("Invalid request: one entry per problem.", ValidationErrorBody)
        if "requestBody" in operation:
            responses.setdefault(
                "413", _error_response("The body is over the route's size limit.", ErrorBody)
            )
        responses.setdefault("500", _error_response("Unexpected server error (logged).", ErrorBody))
        if operation.get("operationId", "").startswith("healthz"):
            continue  # liveness: no key, no rate limit
        for status, text in ACCESS_ERRORS.items():
            responses.setdefault(status, _error_response(text, ErrorBody))
    chat.document_errors(schema)
    app.openapi_schema = schema
    return schema


# What any route but /healthz may answer once API keys exist (api/deps.py), and the rate limit.
ACCESS_ERRORS = {
    "401": "Missing, unknown, expired or revoked API key (once any key is configured).",
    "403": "The key has no grant for this (collection, scope).",
    "429": "Over server.rate_limit_per_s for this key or address; retry after `Retry-After` seconds.",
}


def _operations(schema: dict[str, Any]) -> list[dict[str, Any]]:
    return [op for path in schema.get("paths", {}).values() for op in path.values() if isinstance(op, dict)]


def _error_response(description: str, model: type) -> dict[str, Any]:
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"description": description, "content": {"application/json": {"schema": ref}}}
