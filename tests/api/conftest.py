from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from api.app import create_app
from rag.components import build_components
from rag.config import Settings, load_settings
from rag.protocols import Embedder, Generator
from tests.serving import running_server, serving_in_thread

WAITING_BOUND = 48  # server.max_waiting_questions of llm_server


@pytest.fixture(scope="session")
def llm_server(built_index: Settings, embedder: Embedder, generator: Generator) -> Iterator[httpx.Client]:
    """The real app with the session's real generator and embedder (no second model load), served
    in this process by uvicorn on loopback, so tests still talk HTTP. Slow tests only."""
    # More waiting questions than the server's thread pool has threads (40), for the starvation test.
    # No answer cache: these tests ask the same questions again and need each answer to go through
    # the gate and the generator (a cached answer would pass the gate tests unseen).
    overrides = {"server.max_waiting_questions": WAITING_BOUND, "cache.enabled": False}
    settings = load_settings(index_dir=built_index.index_dir, **overrides)
    components = build_components(settings, embedder=embedder, generator=generator)
    with serving_in_thread(create_app(settings, components=components)) as client:
        health = client.get("/healthz").json()
        assert health["generator"] == "ready", health  # the given generator, none other loaded
        yield client


@pytest.fixture(scope="session")
def light_server(built_index: Settings) -> Iterator[httpx.Client]:
    """`rag serve` as a real process (the smoke test of the command: its tests check health,
    validation and search over HTTP), whose generator is an OpenAI-compatible endpoint that is
    not running: it loads in no time. Questions that reach generation get a 502 from it, which
    one test checks."""
    env = {"RAG_GENERATOR__BACKEND": "openai", "RAG_GENERATOR__BASE_URL": "http://127.0.0.1:9/v1"}
    with running_server(built_index.index_dir, env=env) as client:
        yield client
