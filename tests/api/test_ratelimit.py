"""api.ratelimit: the token bucket per identity, on a fake clock (no sleeping), and its 429."""

from __future__ import annotations

import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from api.ratelimit import MAX_IDENTITIES, RateLimiter, too_many_requests
from rag.config import ServerSettings


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def _limiter(rate: float = 2.0, burst: int = 3, **kwargs: object) -> tuple[RateLimiter, FakeClock]:
    clock = FakeClock()
    return RateLimiter(rate, burst, clock=clock, **kwargs), clock  # type: ignore[arg-type]


def test_a_burst_is_allowed_then_refused_with_the_wait() -> None:
    limiter, _ = _limiter(rate=2.0, burst=3)
    assert [limiter.take("k1") for _ in range(3)] == [None, None, None]
    assert limiter.take("k1") == 1.0  # half a second to the next token, rounded up to 1 s


def test_tokens_refill_at_the_rate_up_to_the_burst() -> None:
    limiter, clock = _limiter(rate=2.0, burst=3)
    for _ in range(3):
        limiter.take("k1")
    clock.advance(0.5)  # one token back
    assert limiter.take("k1") is None
    assert limiter.take("k1") is not None
    clock.advance(3600)  # refilled to the burst, not beyond
    assert [limiter.take("k1") for _ in range(4)] == [None, None, None, 1.0]


def test_retry_after_is_whole_seconds_until_a_token() -> None:
    limiter, clock = _limiter(rate=0.1, burst=1)  # one token per 10 s
    assert limiter.take("slow") is None
    assert limiter.take("slow") == 10.0
    clock.advance(2.5)
    assert limiter.take("slow") == 8.0  # 7.5 s left, rounded up


def test_identities_have_separate_buckets() -> None:
    limiter, _ = _limiter(rate=1.0, burst=1)
    assert limiter.take("a") is None
    assert limiter.take("a") is not None
    assert limiter.take("b") is None


def test_rate_zero_is_unlimited_and_remembers_nothing() -> None:
    limiter, _ = _limiter(rate=0.0, burst=1)
    assert all(limiter.take(f"id{i % 3}") is None for i in range(1000))
    assert len(limiter) == 0 and not limiter.enabled


def test_a_flood_of_identities_keeps_memory_bounded() -> None:
    limiter, _ = _limiter(rate=1.0, burst=1, max_identities=100)
    for i in range(10_000):
        limiter.take(f"addr-{i}")
    assert len(limiter) == 100


def test_the_least_recently_seen_identity_is_forgotten_first() -> None:
    limiter, _ = _limiter(rate=1.0, burst=1, max_identities=2)
    limiter.take("old")
    limiter.take("busy")
    limiter.take("old")  # seen again (refused): now the most recent
    limiter.take("new")  # pushes out "busy"
    assert limiter.take("old") is not None  # still remembered, still empty
    assert limiter.take("busy") is None  # forgotten: starts full again


def test_the_default_bound_and_the_settings() -> None:
    limiter = RateLimiter.from_settings(ServerSettings(rate_limit_per_s=5, rate_limit_burst=7))
    assert (limiter.rate_per_s, limiter.burst, limiter.max_identities) == (5, 7, MAX_IDENTITIES)


@pytest.mark.parametrize(("rate", "burst"), [(-1.0, 1), (1.0, 0)])
def test_bad_parameters_are_refused(rate: float, burst: int) -> None:
    with pytest.raises(ValueError, match="rate must be >= 0"):
        RateLimiter(rate, burst)


def test_concurrent_takes_spend_each_token_once() -> None:
    limiter, _ = _limiter(rate=1.0, burst=500)  # the fake clock stands still: no refill
    allowed: list[bool] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(100):
            ok = limiter.take("shared") is None
            with lock:
                allowed.append(ok)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(allowed) == 500 and len(allowed) == 800


@settings(max_examples=200, deadline=None)
@given(
    rate=st.floats(min_value=0.01, max_value=1000),
    burst=st.integers(min_value=1, max_value=100),
    steps=st.lists(st.floats(min_value=0, max_value=10), max_size=50),
)
def test_never_more_than_burst_plus_refill(rate: float, burst: int, steps: list[float]) -> None:
    """Over any run, allowed requests <= burst + rate * elapsed, and a refusal's wait is >= 1 s."""
    limiter, clock = _limiter(rate=rate, burst=burst)
    allowed = 0
    for step in steps:
        clock.advance(step)
        wait = limiter.take("k")
        if wait is None:
            allowed += 1
        else:
            assert wait >= 1 and wait == int(wait)
    assert allowed <= burst + rate * sum(steps) + 1e-6


def test_the_429_names_the_setting_and_sets_retry_after() -> None:
    exc = too_many_requests(2.2)
    assert exc.status_code == 429
    assert exc.headers == {"Retry-After": "3"}
    assert "server.rate_limit_per_s" in exc.detail and "RAG_SERVER__RATE_LIMIT_PER_S" in exc.detail
    assert too_many_requests(0.0).headers == {"Retry-After": "1"}
    assert getattr(exc, "code", None) == "rate_limit_exceeded"  # OpenAI's, on the chat routes
