"""api/cancel.py's run_cancellable, unit-tested on a real Starlette Request.

Why a synthetic ASGI ``receive`` here: these tests need the client to leave at a known moment (or
never) and the task to be cancelled mid-work, which a real socket cannot time to a tenth of a
second. The real thing, a `rag serve` process and an httpx client that gives up, is covered in
tests/api/test_evaluate_cancel.py."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import anyio
import pytest
from starlette.requests import Request
from starlette.types import Message

from api.cancel import DISCONNECT_POLL_S, Cancelled, ClientDisconnected, raise_if_cancelled, run_cancellable

WORK_S = 30  # far longer than any test waits: the work ends only by noticing the event


def _request(disconnect_after_s: float | None) -> Request:
    """A request whose client disconnects after the given time (None: never)."""
    deadline = None if disconnect_after_s is None else time.monotonic() + disconnect_after_s

    async def receive() -> Message:
        if deadline is not None and time.monotonic() >= deadline:
            return {"type": "http.disconnect"}
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    return Request({"type": "http", "method": "POST", "path": "/", "headers": []}, receive)


def _until_cancelled(stopped: list[float]) -> Callable[[threading.Event], str]:
    def work(cancel: threading.Event) -> str:
        deadline = time.monotonic() + WORK_S
        try:
            while time.monotonic() < deadline:
                raise_if_cancelled(cancel)
                time.sleep(0.01)
            return "finished"
        finally:
            stopped.append(time.monotonic())

    return work


def test_returns_the_result_when_the_client_stays() -> None:
    async def main() -> int:
        return await run_cancellable(_request(None), lambda cancel: 41 + (not cancel.is_set()))

    assert anyio.run(main) == 42


def test_a_disconnect_stops_the_work_and_raises_client_disconnected() -> None:
    stopped: list[float] = []

    async def main() -> None:
        await run_cancellable(_request(0.3), _until_cancelled(stopped))

    started = time.monotonic()
    with pytest.raises(ClientDisconnected) as info:
        anyio.run(main)
    assert info.value.status_code == 499
    assert stopped and stopped[0] - started < 0.3 + DISCONNECT_POLL_S + 0.5


def test_cancelling_the_task_stops_the_work_before_returning() -> None:
    """What uvicorn does to requests still running `graceful_shutdown_s` after SIGTERM."""
    stopped: list[float] = []

    async def main() -> float:
        with anyio.move_on_after(0.3):
            await run_cancellable(_request(None), _until_cancelled(stopped))
        return time.monotonic()

    started = time.monotonic()
    returned = anyio.run(main)
    assert stopped, "the worker thread was still running when the cancelled call returned"
    assert stopped[0] <= returned and returned - started < 0.3 + 0.5


def test_errors_of_the_work_reach_the_caller_unchanged() -> None:
    def fail(_: threading.Event) -> None:
        raise ValueError("bad input 7")

    async def main() -> None:
        await run_cancellable(_request(None), fail)

    with pytest.raises(ValueError, match="bad input 7"):
        anyio.run(main)


def test_raise_if_cancelled() -> None:
    event = threading.Event()
    raise_if_cancelled(event)
    event.set()
    with pytest.raises(Cancelled):
        raise_if_cancelled(event)
