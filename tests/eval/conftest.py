"""Fixtures for the evaluator tests: the real support judge over the session's MiniLM embedder,
and (slow tier only) the session's real default generator (tests/conftest.py `generator`)."""

from __future__ import annotations

import pytest

from rag.config import GroundingSettings, Settings
from rag.embedding.caching import CachingEmbedder
from rag.grounding.support import LexicalSupportJudge
from rag.protocols import Embedder, Generator

ZEPHYR = [
    "Zephyr stores snapshots in /var/lib/zephyr/snapshots and writes its own log to "
    "/var/log/zephyr/zephyr.log.",
    "By default Zephyr keeps daily snapshots for 14 days and weekly snapshots for 8 weeks. "
    "Older snapshots are pruned by the command zephyr prune, which runs every night at 03:30.",
    "The zephyr-relay daemon sends snapshots to a remote site. It listens on TCP port 7341 and "
    "accepts connections only from hosts listed in /etc/zephyr/relay.allow.",
]


@pytest.fixture(scope="session")
def cached_embedder(embedder: Embedder) -> CachingEmbedder:
    """The session's real MiniLM behind the evaluator's cache (as `rag eval` uses it): the same
    sentences recur across these tests, and each is embedded once."""
    return CachingEmbedder(embedder)


@pytest.fixture(scope="session")
def judge(cached_embedder: CachingEmbedder) -> LexicalSupportJudge:
    return LexicalSupportJudge(GroundingSettings(), cached_embedder)


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings()


@pytest.fixture(scope="session")
def local_generator(generator: Generator) -> Generator:
    """The session's real default generator (loaded once for all tiers' slow tests)."""
    return generator
