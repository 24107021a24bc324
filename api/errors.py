"""Translate errors into HTTP status codes with one JSON body shape, ``{"error", "detail"?}``, for
every status, 500 included (an unexpected exception is logged with its traceback and answered with
a JSON body that says so, never with plain text).

The OpenAI-compatible routes (``/v1/chat/...``, ``/v1/models``) answer in OpenAI's error shape
instead, ``{"error": {"message", "type", "param", "code"}}``, and an invalid body there is a 400
(OpenAI's status for it), so OpenAI's SDKs raise their own exceptions (BadRequestError,
NotFoundError, RateLimitError)."""

from __future__ import annotations

import logging
import re

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from api.routing import ANY_PREFIX
from rag.errors import (
    ClusterError,
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
    IndexNotFoundError: 404,  # the collection holds no committed index (yet): nothing to find
    IndexCorruptError: 503,
    IndexMismatchError: 500,
    IndexLockedError: 409,
    LoaderError: 422,
    GenerationError: 502,
    ConfigError: 500,
    KeywordIndexMissingError: 409,  # the index needs one ingest to add its keyword terms
    UnsupportedModeError: 422,
    ClusterError: 503,  # the Ray cluster does not answer: try again when it is back
}
INTERNAL = "internal server error; the server log has the details"
# Routes whose errors have OpenAI's shape, on the default collection and under a collection's prefix.
OPENAI_PATHS = re.compile(ANY_PREFIX + r"(?:chat/|models(?:/|$))")
# OpenAI's error ``type`` per status; other 4xx are invalid_request_error, 5xx server_error.
OPENAI_TYPES = {
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
}


class FieldError(HTTPException):
    """An HTTP error naming the request field at fault and a short code; OpenAI-shaped bodies
    carry them as ``param`` and ``code``, the usual body has the message only."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(status, message, headers=headers)
        self.param, self.code = param, code


def openai_shaped(path: str) -> bool:
    """Whether errors on ``path`` are answered in OpenAI's shape."""
    return OPENAI_PATHS.match(path) is not None


def openai_error(status: int, message: str, param: str | None = None, code: str | None = None) -> dict:
    """OpenAI's error body: ``{"error": {"message", "type", "param", "code"}}``."""
    kind = OPENAI_TYPES.get(status) or ("server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def status_of(exc: BaseException) -> int:
    """The HTTP status an exception is answered with."""
    if isinstance(exc, HTTPException):
        return exc.status_code
    if isinstance(exc, RagError):
        return STATUS.get(type(exc), 500)
    return 500


# IndexNotFoundError's own message names the index directory: right on the CLI, but the server's
# disk layout is none of an HTTP client's business (see api/public_ids.py).
NO_INDEX = (
    "no index has been committed to this collection yet: upload documents to it (POST .../documents) "
    "or run `rag ingest PATH` (`--collection NAME` for a named collection) on the server"
)


def error_body(exc: BaseException) -> str:
    """The ``error`` message for an exception; internals of unexpected ones are not shown."""
    if isinstance(exc, HTTPException):
        return str(exc.detail)
    if isinstance(exc, IndexNotFoundError):
        return NO_INDEX
    if isinstance(exc, RagError):
        return str(exc)
    return INTERNAL


def error_response(
    status: int,
    message: str,
    detail: object = None,
    headers: dict | None = None,
    *,
    path: str = "",
    param: str | None = None,
    code: str | None = None,
) -> JSONResponse:
    """The error body for a request to ``path``: OpenAI's shape on its routes, else ours."""
    if openai_shaped(path):
        return JSONResponse(openai_error(status, message, param, code), status_code=status, headers=headers)
    body = {"error": message} | ({"detail": detail} if detail is not None else {})
    return JSONResponse(body, status_code=status, headers=headers)


def install(app: FastAPI) -> None:
    @app.exception_handler(RagError)
    async def _rag_error(request: Request, exc: RagError) -> JSONResponse:
        return error_response(status_of(exc), error_body(exc), path=request.url.path)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        return error_response(
            exc.status_code,
            str(exc.detail),
            headers=getattr(exc, "headers", None),
            path=request.url.path,
            param=getattr(exc, "param", None),
            code=getattr(exc, "code", None),
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            {"field": ".".join(str(p) for p in e["loc"] if p != "body"), "problem": e["msg"]}
            for e in exc.errors()
        ]
        summary = "; ".join(f"{p['field'] or 'body'}: {p['problem']}" for p in problems)
        path = request.url.path
        status = 400 if openai_shaped(path) else 422
        param = (problems[0]["field"] or None) if problems else None
        return error_response(status, f"invalid request: {summary}", problems, path=path, param=param)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Starlette's ServerErrorMiddleware calls this for any exception no other handler took.
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return error_response(500, INTERNAL, path=request.url.path)
