from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from rag.config import Settings
from tests.serving import running_server

WAITING_BOUND = 48  # server.max_waiting_questions of llm_server


@pytest.fixture(scope="session")
def llm_server(built_index: Settings) -> Iterator[httpx.Client]:
    """One `rag serve` with the real default generator for the whole session (it needs ~7 GB and
    about a minute to load, so every generation test shares it)."""
    # More waiting questions than the server's thread pool has threads (40), for the starvation test.
    env = {"RAG_SERVER__MAX_WAITING_QUESTIONS": str(WAITING_BOUND)}
    with running_server(built_index.index_dir, env=env, wait_for_generator=True) as client:
        yield client


@pytest.fixture(scope="session")
def light_server(built_index: Settings) -> Iterator[httpx.Client]:
    """A server whose generator is an OpenAI-compatible endpoint that is not running: it loads in
    no time, so tests of validation, search and health don't wait for the local LLM. Questions
    that reach generation get a 502 from it, which one test checks."""
    env = {"RAG_GENERATOR__BACKEND": "openai", "RAG_GENERATOR__BASE_URL": "http://127.0.0.1:9/v1"}
    with running_server(built_index.index_dir, env=env) as client:
        yield client
