"""The client tests talk HTTP to the session's real servers (tests/conftest.py): ``light_server``
(`rag serve` in a subprocess, real MiniLM and index, no LLM) and, in slow tests, ``llm_server``
(the real generator)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from client.http import RagClient

RELAY_QUESTION = "Which TCP port does the zephyr-relay daemon listen on?"
RELAY_PORT = "7341"


@pytest.fixture(scope="session")
def base_url(light_server: httpx.Client) -> str:
    return str(light_server.base_url)


@pytest.fixture
def client(base_url: str) -> Iterator[RagClient]:
    with RagClient(base_url) as rag:
        yield rag
