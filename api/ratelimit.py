"""Requests per second per identity (an API key's id, or the client's address without one): a
token bucket each, refilled at ``server.rate_limit_per_s`` up to ``server.rate_limit_burst``.

The buckets live in a bounded LRU, so a flood of identities (every request from a new address)
costs a fixed amount of memory. An identity pushed out is the least recently seen one, whose
bucket has had the longest to refill, so forgetting it gives it little it would not have had.
Nothing here is wired into requests: the authentication layer calls ``take`` with the identity it
has established, and raises ``too_many_requests`` on a refusal.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from starlette.exceptions import HTTPException

from api.errors import FieldError
from rag.config import ServerSettings

# Identities whose buckets are remembered; at ~150 bytes a bucket, about 1.5 MB at most.
MAX_IDENTITIES = 10_000
MIN_RETRY_AFTER_S = 1  # Retry-After is whole seconds; 0 would invite an immediate retry
LIMIT_HINT = "server.rate_limit_per_s and server.rate_limit_burst (env RAG_SERVER__RATE_LIMIT_PER_S)"


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """A thread-safe token bucket per identity. ``rate_per_s`` 0 means no limit."""

    def __init__(
        self,
        rate_per_s: float,
        burst: int,
        max_identities: int = MAX_IDENTITIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate_per_s < 0 or burst < 1 or max_identities < 1:
            raise ValueError(
                f"rate_per_s={rate_per_s}, burst={burst}, max_identities={max_identities}: the rate "
                "must be >= 0 (0 = no limit), the burst and the identities >= 1"
            )
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.max_identities = max_identities
        self._clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, server: ServerSettings) -> RateLimiter:
        return cls(server.rate_limit_per_s, server.rate_limit_burst)

    @property
    def enabled(self) -> bool:
        return self.rate_per_s > 0

    def take(self, identity: str) -> float | None:
        """Spend one of ``identity``'s tokens: None when it had one (the request may go on), else
        the whole seconds (at least 1) until it has one again, for ``Retry-After``."""
        if not self.enabled:
            return None
        with self._lock:
            bucket = self._bucket(identity)
            if bucket.tokens >= 1:
                bucket.tokens -= 1
                return None
            wait = (1 - bucket.tokens) / self.rate_per_s
        return float(max(MIN_RETRY_AFTER_S, math.ceil(wait)))

    def __len__(self) -> int:
        return len(self._buckets)

    def _bucket(self, identity: str) -> _Bucket:
        """``identity``'s bucket, refilled for the time since it was last seen and marked most
        recently used (a new one starts full); the caller holds the lock."""
        now = self._clock()
        bucket = self._buckets.get(identity)
        if bucket is None:
            bucket = self._buckets[identity] = _Bucket(float(self.burst), now)
            if len(self._buckets) > self.max_identities:
                self._buckets.popitem(last=False)
            return bucket
        self._buckets.move_to_end(identity)
        elapsed = max(0.0, now - bucket.updated)  # a clock never runs back, but a fake one may
        bucket.tokens = min(float(self.burst), bucket.tokens + elapsed * self.rate_per_s)
        bucket.updated = now
        return bucket


def too_many_requests(retry_after_s: float) -> HTTPException:
    """The 429 for a refused ``take``: ``Retry-After`` in whole seconds, a message naming the
    setting; OpenAI-shaped on the chat routes (code ``rate_limit_exceeded``, the SDK's
    RateLimitError), ``{"error"}`` elsewhere."""
    seconds = max(MIN_RETRY_AFTER_S, math.ceil(retry_after_s))
    return FieldError(
        429,
        f"too many requests from this API key (or address); retry after {seconds} s, send fewer "
        f"requests per second, or ask the operator to raise {LIMIT_HINT}",
        code="rate_limit_exceeded",
        headers={"Retry-After": str(seconds)},
    )
