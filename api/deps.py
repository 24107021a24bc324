"""Request dependencies: the app state and its guards."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.collections import Collection, CollectionNotFoundError
from api.keys import ALL, AuthError, Principal, Scope
from api.ratelimit import too_many_requests
from api.state import AppState
from rag.collections import DEFAULT_COLLECTION, CollectionNameError, check_name


def get_state(request: Request) -> AppState:
    return request.app.state.rag


State = Annotated[AppState, Depends(get_state)]


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
    scheme_name="API key",
    description="`Authorization: Bearer <key>`: a key from `rag keys create` (scopes read, write, admin "
    "per collection), RAG_SERVER__API_KEYS or RAG_SERVER__ADMIN_API_KEY. Once any key is configured "
    "every route but /healthz needs one; without keys, reads are open and writes are refused.",
)
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def authenticate(request: Request, state: State, credentials: Credentials) -> Principal | None:
    """The caller's key (None when no key is configured at all: the open, read-only set-up), after
    the caller's rate limit: per key, and per client address for a request without a valid key,
    so guessing keys is rate-limited too."""
    ring = state.keys
    if not ring.configured:
        _take(state, _address(request))
        return None
    token = credentials.credentials if credentials is not None else None
    try:
        principal = ring.authenticate(token)
    except AuthError as exc:
        _take(state, _address(request))
        raise HTTPException(
            401, str(exc), headers={"WWW-Authenticate": "Bearer", **_close(request)}
        ) from None
    _take(state, principal.key_id)
    return principal


Caller = Annotated[Principal | None, Depends(authenticate)]


def authorize(
    state: AppState,
    caller: Principal | None,
    name: str,
    scope: Scope,
    request: Request,
    *,
    create: bool = False,
) -> Collection:
    """Collection ``name`` if ``caller`` may ``scope`` it, else 403 (or 404 for a name that is no
    collection, unless ``create``: an upload makes it). The scope is checked before the collection
    is looked up, so a key learns nothing about collections it has no grant on, not even whether
    they exist."""
    try:
        check_name(name)
    except CollectionNameError as exc:
        raise HTTPException(404, str(exc)) from None
    if caller is None and scope != "read":
        raise HTTPException(
            403,
            "changing the index over HTTP is disabled because no API key is configured; create one "
            f"with `rag keys create --collection {name} --scope write` (or set RAG_SERVER__API_KEYS or "
            "RAG_SERVER__ADMIN_API_KEY in the server's environment and restart it; a keys-file key is seen "
            "at once), and send "
            "`Authorization: Bearer <key>`",
            headers=_close(request) or None,
        )
    if caller is not None and not caller.allows(name, scope):
        raise HTTPException(
            403,
            f"this API key has no {scope!r} grant on collection {name!r}",
            headers=_close(request) or None,
        )
    try:
        return state.collections.get(name, create=create)
    except CollectionNotFoundError as exc:
        raise HTTPException(404, str(exc)) from None


def _collection(scope: Scope, *, create: bool = False) -> Callable[..., Collection]:
    """The dependency resolving the request's collection: the path's ``{collection}`` under
    /v1/collections/{collection}/..., the default collection on the plain /v1/... routes."""

    def dependency(request: Request, state: State, caller: Caller) -> Collection:
        name = request.path_params.get("collection", DEFAULT_COLLECTION)
        return authorize(state, caller, name, scope, request, create=create)

    return dependency


Reader = Annotated[Collection, Depends(_collection("read"))]
Writer = Annotated[Collection, Depends(_collection("write"))]
Uploader = Annotated[Collection, Depends(_collection("write", create=True))]


def require_admin(caller: Caller) -> None:
    """For what spans collections (GET /metrics): an ``admin`` grant on every collection ("*")
    once keys are configured."""
    if caller is not None and not caller.allows(ALL, "admin"):
        raise HTTPException(403, "this API key has no 'admin' grant on every collection ('*:admin')")


Admin = Depends(require_admin)


def owner_of(request: Request, caller: Principal | None) -> str:
    """Whose work a request is, for per-key limits: the key id, or the client address."""
    return caller.key_id if caller is not None else _address(request)


def _take(state: AppState, identity: str) -> None:
    wait = state.limiter.take(identity)
    if wait is not None:
        raise too_many_requests(wait)


def _address(request: Request) -> str:
    return "addr:" + (request.client.host if request.client else "unknown")


def _close(request: Request) -> dict[str, str]:
    # A refused upload's body is never read; closing the connection stops the client sending it
    # (kept alive, the server would read and discard every byte of it).
    return {"Connection": "close"} if _has_body(request) else {}


def _has_body(request: Request) -> bool:
    length = request.headers.get("content-length")
    return bool(length and length != "0") or "transfer-encoding" in request.headers
