"""The Host header check: a request is answered only when the name it was sent to is one of
``server.allowed_hosts`` (any port); others get 400.

Why: a web page can point a name it controls at 127.0.0.1 (DNS rebinding) and then call a local
server as if it were its own origin, CORS notwithstanding; its requests still carry the page's
name in ``Host``, which this refuses. Starlette's TrustedHostMiddleware is not used: it cuts the
header at its first ``:``, so ``[::1]:8000`` never matches, and it answers in plain text instead
of the service's JSON error shape.

Entries are names or addresses (``example.org``, ``::1``), ``*.example.org`` for any subdomain,
or ``*`` for any name (behind a proxy that checks the Host itself).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

from api.errors import error_response

LOOPBACK_NAME = "localhost"
SHOWN_CHARS = 100  # of a refused Host header in the error message: it is the client's text
POLICY_VIOLATION = 1008  # the WebSocket close code for a refused handshake
HINT = "server.allowed_hosts, env RAG_SERVER__ALLOWED_HOSTS as a JSON list"


def host_name(value: str) -> str:
    """The name or address in a Host header (or an allowed_hosts entry), without its port,
    brackets or trailing dot, lower-cased; an IP address in its canonical form."""
    value = value.strip().lower()
    if value.startswith("["):  # [v6] or [v6]:port
        inside, _, port = value[1:].partition("]")
        value = inside if _is_port(port) else value
    elif value.count(":") == 1:  # name:port or v4:port (a bare v6 address has several colons)
        name, _, port = value.partition(":")
        value = name if _is_port(":" + port) else value
    value = value.rstrip(".")
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return value


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or address) reaches this machine only: localhost, 127.0.0.0/8, ::1."""
    name = host_name(host)
    if name == LOOPBACK_NAME:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def host_allowed(host: str, allowed: Iterable[str]) -> bool:
    """Whether a Host header value matches one of ``allowed`` (entries as the module says)."""
    name = host_name(host)
    if not name:
        return False
    for entry in allowed:
        pattern = host_name(entry)
        if pattern == "*" or name == pattern:
            return True
        if pattern.startswith("*.") and name.endswith(pattern[1:]):
            return True
    return False


class AllowedHosts:
    """Pure ASGI middleware: refuses a request whose Host is not in ``allowed`` with a 400 in the
    route's error shape (``{"error"}``, OpenAI's on the chat routes), every path included."""

    def __init__(self, app: ASGIApp, allowed: list[str]) -> None:
        self.app = app
        self.allowed = list(allowed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        host = _header(scope, b"host")
        if host is not None and host_allowed(host, self.allowed):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": POLICY_VIOLATION})
            return
        response = error_response(400, self._refusal(host), path=scope["path"], code="host_not_allowed")
        await response(scope, receive, send)

    def _refusal(self, host: str | None) -> str:
        served = ", ".join(self.allowed)
        if host is None:
            return f"the request has no Host header; send one naming one of {served} ({HINT})"
        shown = host[:SHOWN_CHARS]
        return (
            f"this server does not answer requests for host {shown!r}; it answers {served}. Use one "
            f"of those names, or add {host_name(shown)!r} to {HINT} and restart it"
        )


def _is_port(suffix: str) -> bool:
    """Whether what follows a host is nothing or ``:<digits>``; anything else stays part of the
    name, so a malformed header matches no entry (``*`` aside)."""
    return not suffix or (suffix.startswith(":") and suffix[1:].isdigit())


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None
