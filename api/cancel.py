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
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

import anyio
from starlette.exceptions import HTTPException
from starlette.requests import Request

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
    """Run ``fn(cancel)`` in a worker thread; set ``cancel`` when the client disconnects or this
    task is cancelled, and wait for ``fn`` to stop (it should, at its next check).

    Returns what ``fn`` returns. Raises `ClientDisconnected` when the client left (whether ``fn``
    noticed or finished anyway), the task's cancellation when it was cancelled, and otherwise
    whatever ``fn`` raised.
    """
    cancel = threading.Event()
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
                await anyio.sleep(DISCONNECT_POLL_S)
        finally:  # the client left, the work finished, or this task was cancelled
            cancel.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(watch)
        tg.start_soon(work)
    if await request.is_disconnected():
        raise ClientDisconnected
    if failure:
        raise failure[0]
    return outcome[0]
