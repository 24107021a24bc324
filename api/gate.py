"""Admission to the generator: one answer is generated at a time, a bounded number wait, and no
answer holds the generator longer than ``server.request_timeout_s``.

The local model uses every core, so parallel generations only slow each other down. Waiting
happens in the event loop (an ``asyncio.Lock``), not in a worker thread: a thousand waiting
questions hold no thread of the shared pool, so ``/healthz`` and ``/v1/search`` never wait behind
generation. A question that arrives when ``max_waiting`` are already waiting is refused at once
(429 with ``Retry-After``) instead of hanging.

Each admitted question gets a `Ticket`: where it stood in the line, how long it waited, and the
deadline of its generation. `run_cancellable` (api/cancel.py) reads the deadline of the ticket
held by its task and stops the work when it passes (504, `GenerationTimeout`); the
`QueueHeaders` middleware puts the position and the wait on the response
(``X-Queue-Position``, ``X-Queue-Wait-Ms``), so a client sees what the queue cost it.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from contextvars import ContextVar, Token
from dataclasses import dataclass

from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Weight of the newest answer time in the moving average behind Retry-After and the expected wait.
_NEWEST_WEIGHT = 0.2
POSITION_HEADER = "X-Queue-Position"
WAIT_HEADER = "X-Queue-Wait-Ms"
GATEWAY_TIMEOUT = 504


class QueueFull(Exception):
    """Raised by ``GenerationGate.slot()`` when the waiting line is full."""

    def __init__(self, waiting: int, retry_after_s: int) -> None:
        super().__init__(
            f"the server is busy: {waiting} questions are already waiting for the generator; "
            f"retry in about {retry_after_s} s"
        )
        self.retry_after_s = retry_after_s


class GenerationTimeout(HTTPException):
    """The answer held the generator longer than ``server.request_timeout_s`` and was stopped.

    An HTTPException, so the app's handler answers 504 with the usual JSON body."""

    def __init__(self, timeout_s: float) -> None:
        super().__init__(
            GATEWAY_TIMEOUT,
            f"generating the answer took longer than server.request_timeout_s ({timeout_s:g} s) and "
            "was stopped; ask a narrower question, lower generation.max_tokens, or raise "
            "server.request_timeout_s (env RAG_SERVER__REQUEST_TIMEOUT_S)",
        )


@dataclass
class Ticket:
    """One question's place in the line: questions ahead of it when it arrived (the one being
    generated included; 0 = it started at once), how long it waited, and when its generation must
    end (``time.monotonic()`` seconds; set once it holds the generator)."""

    position: int
    timeout_s: float
    waited_s: float = 0.0
    deadline: float | None = None

    def remaining_s(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.monotonic()

    def expired(self) -> bool:
        remaining = self.remaining_s()
        return remaining is not None and remaining <= 0

    def check(self) -> None:
        """A safe point for code that holds the generator: raise once the deadline has passed."""
        if self.expired():
            raise GenerationTimeout(self.timeout_s)


# The ticket of the slot the current task holds, read by run_cancellable (api/cancel.py).
_held: ContextVar[Ticket | None] = ContextVar("held_generation_ticket", default=None)
# Per HTTP request (set by QueueHeaders): a box the gate puts the request's ticket in. A mutable box,
# not the ticket itself, so the middleware sees it even if the route ran in a copied context.
_report: ContextVar[list[Ticket] | None] = ContextVar("queue_report", default=None)


def held_ticket() -> Ticket | None:
    """The ticket of the generator slot this task holds, if any."""
    return _held.get()


class GenerationGate:
    """Owned by the app state (one per app, not a module global)."""

    def __init__(self, max_waiting: int, typical_answer_s: float, timeout_s: float) -> None:
        self.max_waiting = max_waiting
        self.timeout_s = timeout_s
        self._lock = asyncio.Lock()
        self._waiting = 0
        # An exponential moving average of how long a slot is held: what Retry-After is based on.
        self._held_s = typical_answer_s

    @property
    def waiting(self) -> int:
        return self._waiting

    @property
    def busy(self) -> bool:
        return self._lock.locked()

    def retry_after_s(self) -> int:
        return max(1, math.ceil(self._held_s * (self._waiting + 1)))

    def expected_wait_s(self) -> float:
        """How long a question sent now would wait for the generator, from recent answer times."""
        return round(self._held_s * (self._waiting + self.busy), 1)

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[Ticket]:
        """Hold the generator for the block; raises QueueFull when the line is full.

        Cancellation while waiting (the client left) leaves the line without taking the lock.
        The ticket's deadline is ``server.request_timeout_s`` after the lock was taken.
        """
        if self._lock.locked() and self._waiting >= self.max_waiting:
            raise QueueFull(self._waiting, self.retry_after_s())
        ticket = Ticket(position=self._waiting + self.busy, timeout_s=self.timeout_s)
        arrived = time.monotonic()
        self._waiting += 1
        try:
            await self._lock.acquire()
        finally:
            self._waiting -= 1
        started = time.monotonic()
        ticket.waited_s = started - arrived
        ticket.deadline = started + self.timeout_s
        box = _report.get()
        if box is not None:
            box.append(ticket)
        token = _held.set(ticket)
        try:
            yield ticket
        finally:
            held = time.monotonic() - started
            self._held_s = (1 - _NEWEST_WEIGHT) * self._held_s + _NEWEST_WEIGHT * held
            self._lock.release()  # first: nothing below may keep the generator held
            _forget(token)


def _forget(token: Token[Ticket | None]) -> None:
    """Undo the slot's ticket. A streamed answer's slot may be closed by the event loop's
    async-generator finaliser, in another context than the one it was opened in: there the
    variable was never set, and there is nothing to undo."""
    with suppress(ValueError):
        _held.reset(token)


class QueueHeaders:
    """ASGI middleware: a response to a request that went through the generation queue carries
    ``X-Queue-Position`` (questions ahead of it when it arrived) and ``X-Queue-Wait-Ms`` (time
    spent waiting for the generator). A streamed answer's headers leave before it joins the queue,
    so they carry neither."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        box: list[Ticket] = []
        token = _report.set(box)

        async def send_with_queue(message: Message) -> None:
            if message["type"] == "http.response.start" and box:
                headers = MutableHeaders(scope=message)
                headers[POSITION_HEADER] = str(box[-1].position)
                headers[WAIT_HEADER] = str(round(box[-1].waited_s * 1000))
            await send(message)

        try:
            await self.app(scope, receive, send_with_queue)
        finally:
            _report.reset(token)
