"""The API tests' servers, ``llm_server`` and ``light_server``, are session fixtures of
tests/conftest.py, shared with tests/client/."""

from types import SimpleNamespace
from typing import Any

from api.keys import KeyRing
from api.ratelimit import RateLimiter
from rag.config import Settings
from tests.conftest import WAITING_BOUND

__all__ = ["WAITING_BOUND", "stand_in_state"]  # test_gate_e2e.py imports WAITING_BOUND from here


def stand_in_state(settings: Settings, **parts: Any) -> SimpleNamespace:
    """A stand-in for api.state.AppState on a tiny app that mounts only the routers under test:
    the real key ring and rate limiter of ``settings`` (so authentication runs as in the server),
    collections that resolve to empty stand-ins (for checks that come before any index is
    touched), and ``parts`` (an embedder, ...)."""
    default = SimpleNamespace(name="default", settings=settings)
    collections = SimpleNamespace(get=lambda name, create=False: default, default=lambda: default)
    server = settings.server
    return SimpleNamespace(
        settings=settings,
        keys=KeyRing.from_settings(settings),
        limiter=RateLimiter(server.rate_limit_per_s, server.rate_limit_burst),
        collections=collections,
        **parts,
    )
