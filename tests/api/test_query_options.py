"""/v1/query's per-request sampling settings, cache switch and usage report, in process with the
real embedder and index and a declared scripted generator (it records the parameters each call
receives, which is what these tests check; the real model runs in the slow tier)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from rag.components import build_components
from rag.config import Settings
from rag.protocols import Embedder, GenerationParams, GenerationStats, Message
from tests.rag.test_pipeline import ScriptedGenerator

RELAY = "Which TCP port does the zephyr-relay daemon listen on?"


class RecordingGenerator(ScriptedGenerator):
    """The scripted fake, also keeping each call's GenerationParams and reporting usage."""

    def __init__(self, *pieces: str) -> None:
        super().__init__(*pieces)
        self.params: list[GenerationParams] = []
        self.last_stats = GenerationStats()

    def stream(self, messages: list[Message], params: GenerationParams) -> Iterator[str]:
        self.params.append(params)
        self.last_stats = GenerationStats(120, 9, 0.5, 0.25)
        yield from super().stream(messages, params)


@pytest.fixture
def client_and_generator(
    built_index: Settings, embedder: Embedder
) -> Iterator[tuple[TestClient, RecordingGenerator]]:
    generator = RecordingGenerator("The zephyr-relay daemon listens on TCP port 7341.")
    components = build_components(built_index, embedder=embedder, generator=generator)
    with TestClient(create_app(built_index, components=components), base_url="http://127.0.0.1") as client:
        yield client, generator


def test_generation_options_reach_the_generator_and_the_rest_keep_their_defaults(
    client_and_generator,
) -> None:
    client, generator = client_and_generator
    options = {"temperature": 0.7, "top_k": 20, "seed": 7, "stop": ["\n\n"], "max_tokens": 50}
    r = client.post("/v1/query", json={"question": RELAY, "generation": options, "cache": False})
    assert r.status_code == 200, r.text
    p = generator.params[-1]
    assert (p.temperature, p.top_k, p.seed, p.stop, p.max_tokens) == (0.7, 20, 7, ("\n\n",), 50)
    assert (p.top_p, p.repetition_penalty) == (1.0, 1.0)  # not given: the configured defaults


def test_usage_is_reported_and_a_repeat_comes_from_the_cache(client_and_generator) -> None:
    client, generator = client_and_generator
    first = client.post("/v1/query", json={"question": RELAY}).json()
    assert first["usage"] == {
        "prompt_tokens": 120,
        "completion_tokens": 9,
        "prefill_ms": 500.0,
        "decode_ms": 250.0,
    }
    assert first["cached"] is None and first["index_version"] is not None
    calls = len(generator.params)
    again = client.post("/v1/query", json={"question": RELAY}).json()
    assert (
        again["cached"] == "exact" and again["answer"] == first["answer"] and len(generator.params) == calls
    )
    assert again["usage"]["prompt_tokens"] == 0  # nothing was generated for it
    fresh = client.post("/v1/query", json={"question": RELAY, "cache": False}).json()
    assert fresh["cached"] is None and len(generator.params) == calls + 1


@pytest.mark.parametrize(
    "options",
    [{"temperature": 3}, {"top_p": 0}, {"max_tokens": 0}, {"stop": ["x"] * 9}, {"seed": -1}, {"temp": 1}],
)
def test_bad_generation_options_are_422(client_and_generator, options: dict) -> None:
    client, _ = client_and_generator
    r = client.post("/v1/query", json={"question": RELAY, "generation": options})
    assert r.status_code == 422, r.text
