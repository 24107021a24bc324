"""Request dependencies: the app state and its guards."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.jobs import JobManager
from api.state import AppState


def get_state(request: Request) -> AppState:
    return request.app.state.rag


State = Annotated[AppState, Depends(get_state)]


def get_jobs(request: Request) -> JobManager:
    return request.app.state.jobs


Jobs = Annotated[JobManager, Depends(get_jobs)]


def require_generator(state: State) -> AppState:
    if state.generator_status == "ready":
        return state
    if state.generator_status == "loading":
        raise HTTPException(
            503,
            "the generator model is still loading (about a minute after start); retry shortly, "
            "GET /healthz says when it is ready",
            headers={"Retry-After": "10"},
        )
    raise HTTPException(503, f"the generator is unavailable ({state.generator_status}); check the server log")


_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="admin key",
    description="`Authorization: Bearer <server.admin_api_key>`; needed by every request that changes the "
    "index (upload, delete).",
)


def require_admin(
    request: Request,
    state: State,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """Writes need the admin key; with none configured they are refused outright (403), so a
    server is read-only unless its operator decides otherwise."""
    # A refused upload's body is never read; closing the connection stops the client sending it
    # (kept alive, the server would read and discard every byte of it).
    close = {"Connection": "close"} if _has_body(request) else {}
    configured = state.settings.server.admin_api_key
    secret = configured.get_secret_value() if configured is not None else ""
    if not secret:
        raise HTTPException(
            403,
            "changing the index over HTTP is disabled because no admin API key is configured; set "
            "RAG_SERVER__ADMIN_API_KEY to a long random secret in the server's environment, restart "
            "it, and send `Authorization: Bearer <that secret>`",
            headers=close or None,
        )
    given = credentials.credentials if credentials is not None else ""
    if not given or not hmac.compare_digest(given.encode(), secret.encode()):
        raise HTTPException(
            401,
            "missing or wrong admin API key; send `Authorization: Bearer <server.admin_api_key>`",
            headers={"WWW-Authenticate": "Bearer", **close},
        )


def _has_body(request: Request) -> bool:
    length = request.headers.get("content-length")
    return bool(length and length != "0") or "transfer-encoding" in request.headers


Admin = Depends(require_admin)
