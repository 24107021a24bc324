"""Request dependencies: the app state and its guards."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request

from api.state import AppState


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


ReadyState = Annotated[AppState, Depends(require_generator)]
