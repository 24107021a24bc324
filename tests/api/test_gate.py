"""api/gate.py's GenerationGate and its deadline, unit-tested in one event loop.

Why no server here: these check the gate's bookkeeping (positions, waits, the deadline seen by
run_cancellable, the lock given back) at known moments; the same behaviour over real HTTP is in
tests/api/test_request_timeout.py."""

from __future__ import annotations

import threading
import time

import anyio
import pytest
from starlette.requests import Request
from starlette.types import Message

from api.cancel import raise_if_cancelled, run_cancellable
from api.gate import GenerationGate, GenerationTimeout, QueueFull, held_ticket

TIMEOUT_S = 0.3


def _request() -> Request:
    """A request whose client never leaves."""

    async def receive() -> Message:
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    return Request({"type": "http", "method": "POST", "path": "/", "headers": []}, receive)


def _endless(cancel: threading.Event) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        raise_if_cancelled(cancel)
        time.sleep(0.005)
    return "finished"


def test_work_past_the_deadline_is_stopped_with_504_and_the_next_starts() -> None:
    gate = GenerationGate(max_waiting=4, typical_answer_s=1.0, timeout_s=TIMEOUT_S)
    outcomes: dict[str, object] = {}

    async def first() -> None:
        async with gate.slot() as ticket:
            assert ticket.position == 0 and held_ticket() is ticket
            try:
                await run_cancellable(_request(), _endless)
            except GenerationTimeout as exc:
                outcomes["first"] = (exc.status_code, time.monotonic() - (ticket.deadline or 0))
        assert held_ticket() is None

    async def second() -> None:
        await anyio.sleep(0.05)
        async with gate.slot() as ticket:
            outcomes["second"] = (ticket.position, ticket.waited_s)
            outcomes["result"] = await run_cancellable(_request(), lambda cancel: "quick")

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(first)
            tg.start_soon(second)

    anyio.run(main)
    status, late_s = outcomes["first"]  # type: ignore[misc]
    assert status == 504 and 0 <= late_s < 0.5  # stopped right after its deadline
    position, waited_s = outcomes["second"]  # type: ignore[misc]
    assert position == 1 and TIMEOUT_S - 0.1 < waited_s < TIMEOUT_S + 0.5
    assert outcomes["result"] == "quick"
    assert not gate.busy and gate.waiting == 0


def test_work_that_finishes_in_time_is_not_touched() -> None:
    gate = GenerationGate(max_waiting=1, typical_answer_s=1.0, timeout_s=5.0)

    async def main() -> str:
        async with gate.slot():
            return await run_cancellable(_request(), lambda cancel: "done")

    assert anyio.run(main) == "done"


def test_a_full_line_is_refused_and_the_expected_wait_grows_with_it() -> None:
    gate = GenerationGate(max_waiting=1, typical_answer_s=2.0, timeout_s=5.0)
    seen: dict[str, object] = {}

    async def main() -> None:
        assert gate.expected_wait_s() == 0
        release = anyio.Event()

        async def hold() -> None:
            async with gate.slot():
                await release.wait()

        async def wait_in_line() -> None:
            async with gate.slot():
                pass

        async with anyio.create_task_group() as tg:
            tg.start_soon(hold)
            await anyio.sleep(0.01)
            tg.start_soon(wait_in_line)
            await anyio.sleep(0.01)
            seen["expected"] = gate.expected_wait_s()
            with pytest.raises(QueueFull) as info:
                async with gate.slot():
                    pass
            seen["retry_after"] = info.value.retry_after_s
            release.set()

    anyio.run(main)
    assert seen["expected"] == 4.0  # two answers (the one generating, the one waiting) of 2 s
    assert seen["retry_after"] == 4
