"""Body-size limits enforced on the bytes actually received, for every route.

A ``Content-Length`` over the limit is refused before anything is read; a body without one
(chunked transfer encoding) is counted as it arrives and refused as soon as it passes the limit.
JSON bodies are small and needed whole, so they are read here first and then handed to the app;
uploads (``multipart/form-data`` to ``POST /v1/documents``) stream straight to disk and are counted
by their route with their own, larger limit.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import error_response
from api.routing import ANY_PREFIX

# POST /v1/documents and POST /v1/collections/{name}/documents: uploads, counted by their route.
UPLOAD_PATH = re.compile(ANY_PREFIX + "documents")


class BodyLimit:
    """Pure ASGI middleware: ``limit_for(path)`` is the byte limit for a request to ``path``."""

    def __init__(self, app: ASGIApp, limit_for: Callable[[str], int]) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (scope["method"] == "POST" and UPLOAD_PATH.fullmatch(scope["path"])):
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _refuse(scope, receive, send, declared, limit)
            return
        body, more = bytearray(), True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client left before its body arrived: nothing to answer
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > limit:
                await _refuse(scope, receive, send, len(body), limit)
                return
        await self.app(scope, _replay(bytes(body), receive), send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _replay(body: bytes, receive: Receive) -> Receive:
    """The body once, then the real channel (so a later disconnect is still seen)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _refuse(scope: Scope, receive: Receive, send: Send, seen: int, limit: int) -> None:
    # Connection: close, so the server does not go on reading (and discarding) a huge body.
    response = error_response(
        413,
        f"request body is {seen} bytes or more; the limit for {scope['path']} is {limit} bytes "
        f"({limit / 1024:g} KiB: server.max_body_kb, or server.max_evaluate_body_kb for /v1/evaluate)",
        headers={"Connection": "close"},
        path=scope["path"],
        code="request_too_large",
    )
    await response(scope, receive, send)
