"""Translate the library's errors into HTTP status codes with a JSON body that says what to do."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from rag.errors import (
    ConfigError,
    GenerationError,
    IndexLockedError,
    IndexMismatchError,
    IndexNotFoundError,
    LoaderError,
    RagError,
)

STATUS: dict[type[RagError], int] = {
    IndexNotFoundError: 503,
    IndexMismatchError: 500,
    IndexLockedError: 409,
    LoaderError: 422,
    GenerationError: 502,
    ConfigError: 500,
}


def error_response(
    status: int, message: str, detail: object = None, headers: dict | None = None
) -> JSONResponse:
    body = {"error": message} | ({"detail": detail} if detail is not None else {})
    return JSONResponse(body, status_code=status, headers=headers)


def install(app: FastAPI) -> None:
    @app.exception_handler(RagError)
    async def _rag_error(_: Request, exc: RagError) -> JSONResponse:
        return error_response(STATUS.get(type(exc), 500), str(exc))

    @app.exception_handler(HTTPException)
    async def _http(_: Request, exc: HTTPException) -> JSONResponse:
        return error_response(exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            {"field": ".".join(str(p) for p in e["loc"] if p != "body"), "problem": e["msg"]}
            for e in exc.errors()
        ]
        summary = "; ".join(f"{p['field'] or 'body'}: {p['problem']}" for p in problems)
        return error_response(422, f"invalid request: {summary}", problems)
