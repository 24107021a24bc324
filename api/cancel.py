"""Run blocking work for a request in a worker thread, and stop it when nobody waits for it.

A synchronous FastAPI route (or `anyio.to_thread.run_sync` on its own) keeps computing after the
client has gone, and a server's shutdown cannot interrupt a thread: one expensive request then
burns CPU for as long as it likes. `run_cancellable` gives the work a `threading.Event` that is
set when the client disconnects or when the request's task is cancelled (uvicorn cancels tasks
once `server.graceful_shutdown_s` has passed after SIGTERM). The work checks the event at its own
safe points (`raise_if_cancelled`) and stops there; Python cannot stop a thread from outside.

Usage in an `async` route::

    return await run_cancellable(request, lambda cancel: expensive(body, cancel))

where ``expensive`` calls ``raise_if_cancelled(cancel)`` between steps.

Inside a generation slot (``async with gate.slot()``, api/gate.py) the event is also set when the
slot's deadline (``server.request_timeout_s``) passes, and the call then raises
`GenerationTimeout` (504): the work stops at its next check and the slot goes to the next
question. Work that never reaches a check (one blocking call) is bounded only by that call's own
timeout, e.g. ``generator.timeout_s`` of a remote generator.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

import anyio
from starlette.exceptions import HTTPException
from starlette.requests import Request

from api.gate import GenerationTimeout, held_ticket

T = TypeVar("T")

# How often the client's connection is checked while the work runs: the longest a departed client
# keeps the work going (plus the time to the work's next check). A structural constant: checking is
# one non-blocking receive().
DISCONNECT_POLL_S = 0.2
# nginx's code for "client closed request": only ever logged, since nobody is there to read it.
CLIENT_CLOSED_STATUS = 499


class Cancelled(Exception):
    """Raised inside the work by `raise_if_cancelled` once its event is set."""


class ClientDisconnected(HTTPException):
    """The client went away before the work finished; the work was stopped.

    An HTTPException, so the app's usual handler turns it into a response (status 499, which the
    access log records and no client receives) instead of an "exception in ASGI application"."""

    def __init__(self) -> None:
        super().__init__(CLIENT_CLOSED_STATUS, "the client closed the connection; the work was stopped")


def raise_if_cancelled(cancel: threading.Event) -> None:
    """A safe point for the work: stop here if the client left or the server is shutting down."""
    if cancel.is_set():
        raise Cancelled


async def run_cancellable(request: Request, fn: Callable[[threading.Event], T]) -> T:
    """Run ``fn(cancel)`` in a worker thread; set ``cancel`` when the client disconnects, this
    task is cancelled or the generation slot's deadline passes, and wait for ``fn`` to stop (it
    should, at its next check).

    Returns what ``fn`` returns. Raises `GenerationTimeout` when the deadline passed,
    `ClientDisconnected` when the client left (whether ``fn`` noticed or finished anyway), the
    task's cancellation when it was cancelled, and otherwise whatever ``fn`` raised.
    """
    cancel = threading.Event()
    ticket = held_ticket()
    outcome: list[T] = []
    failure: list[BaseException] = []

    async def work() -> None:
        try:
            outcome.append(await anyio.to_thread.run_sync(fn, cancel))
        except Exception as exc:  # handed to the caller below, outside the task group
            failure.append(exc)
        finally:
            tg.cancel_scope.cancel()  # the watcher's job is done

    async def watch() -> None:
        try:
            while not await request.is_disconnected():
                remaining = ticket.remaining_s() if ticket else None
                if remaining is not None and remaining <= 0:
                    return
                await anyio.sleep(
                    DISCONNECT_POLL_S if remaining is None else min(DISCONNECT_POLL_S, remaining)
                )
        finally:  # the client left, the deadline passed, the work finished, or this task was cancelled
            cancel.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(watch)
        tg.start_soon(work)
    if ticket is not None and ticket.expired() and (failure or not outcome):
        raise GenerationTimeout(ticket.timeout_s)
    if await request.is_disconnected():
        raise ClientDisconnected
    if failure:
        raise failure[0]
    return outcome[0]
