"""The FastAPI application: `create_app(settings)`; heavy models load once, in the lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from api import errors
from api.jobs import JobManager
from api.routes import documents, evaluate, health, index, jobs, query, search
from api.state import AppState
from rag.config import Settings, load_settings
from rag.embedding import make_embedder

# Bodies of the JSON endpoints are small; refuse a 1 MB "question" before parsing it.
MAX_JSON_BODY = 64 * 1024


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.rag = AppState.start(settings)
        app.state.jobs = JobManager(
            settings, app.state.rag.pipeline.retriever.index, lambda: make_embedder(settings.embedding)
        )
        yield
        app.state.jobs.close()

    app = FastAPI(
        title="RAG service",
        version="0.1.0",
        description="Grounded answers with citations over your documents; refusals when they do not say.",
        lifespan=lifespan,
    )
    errors.install(app)

    @app.middleware("http")
    async def limit_body(request: Request, call_next):  # type: ignore[no-untyped-def]
        length = request.headers.get("content-length")
        if request.url.path in ("/v1/query", "/v1/search") and length and int(length) > MAX_JSON_BODY:
            return JSONResponse(
                {"error": f"request body is {int(length)} bytes; the limit is {MAX_JSON_BODY}"}, 413
            )
        return await call_next(request)

    routers = (query.router, search.router, evaluate.router, documents.router, jobs.router, index.router)
    for router in (*routers, health.router):
        app.include_router(router)
    return app
