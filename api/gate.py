"""Admission to the generator: one answer is generated at a time, a bounded number wait.

The local model uses every core, so parallel generations only slow each other down. Waiting
happens in the event loop (an ``asyncio.Lock``), not in a worker thread: a thousand waiting
questions hold no thread of the shared pool, so ``/healthz`` and ``/v1/search`` never wait behind
generation. A question that arrives when ``max_waiting`` are already waiting is refused at once
(429 with ``Retry-After``) instead of hanging.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class QueueFull(Exception):
    """Raised by ``GenerationGate.slot()`` when the waiting line is full."""

    def __init__(self, waiting: int, retry_after_s: int) -> None:
        super().__init__(
            f"the server is busy: {waiting} questions are already waiting for the generator; "
            f"retry in about {retry_after_s} s"
        )
        self.retry_after_s = retry_after_s


class GenerationGate:
    """Owned by the app state (one per app, not a module global)."""

    def __init__(self, max_waiting: int, typical_answer_s: float) -> None:
        self.max_waiting = max_waiting
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

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold the generator for the block; raises QueueFull when the line is full.

        Cancellation while waiting (the client left) leaves the line without taking the lock.
        """
        if self._lock.locked() and self._waiting >= self.max_waiting:
            raise QueueFull(self._waiting, self.retry_after_s())
        self._waiting += 1
        try:
            await self._lock.acquire()
        finally:
            self._waiting -= 1
        started = time.monotonic()
        try:
            yield
        finally:
            self._held_s = 0.8 * self._held_s + 0.2 * (time.monotonic() - started)
            self._lock.release()
