"""Translate errors into HTTP status codes with one JSON body shape, ``{"error", "detail"?}``, for
every status, 500 included (an unexpected exception is logged with its traceback and answered with
a JSON body that says so, never with plain text)."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from rag.errors import (
    ConfigError,
    GenerationError,
    IndexCorruptError,
    IndexLockedError,
    IndexMismatchError,
    IndexNotFoundError,
    KeywordIndexMissingError,
    LoaderError,
    RagError,
    UnsupportedModeError,
)

log = logging.getLogger("rag.api")

STATUS: dict[type[RagError], int] = {
    IndexNotFoundError: 503,
    IndexCorruptError: 503,
    IndexMismatchError: 500,
    IndexLockedError: 409,
    LoaderError: 422,
    GenerationError: 502,
    ConfigError: 500,
    KeywordIndexMissingError: 409,  # the index needs one ingest to add its keyword terms
    UnsupportedModeError: 422,
}
INTERNAL = "internal server error; the server log has the details"


def status_of(exc: BaseException) -> int:
    """The HTTP status an exception is answered with."""
    if isinstance(exc, HTTPException):
        return exc.status_code
    if isinstance(exc, RagError):
        return STATUS.get(type(exc), 500)
    return 500


def error_body(exc: BaseException) -> str:
    """The ``error`` message for an exception; internals of unexpected ones are not shown."""
    if isinstance(exc, HTTPException):
        return str(exc.detail)
    if isinstance(exc, RagError):
        return str(exc)
    return INTERNAL


def error_response(
    status: int, message: str, detail: object = None, headers: dict | None = None
) -> JSONResponse:
    body = {"error": message} | ({"detail": detail} if detail is not None else {})
    return JSONResponse(body, status_code=status, headers=headers)


def install(app: FastAPI) -> None:
    @app.exception_handler(RagError)
    async def _rag_error(_: Request, exc: RagError) -> JSONResponse:
        return error_response(status_of(exc), error_body(exc))

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

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Starlette's ServerErrorMiddleware calls this for any exception no other handler took.
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return error_response(500, INTERNAL)
