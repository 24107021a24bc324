"""The llama.cpp backend with the REAL packaged Qwen2.5-Coder-1.5B GGUF (mapped as it is: ~1.1 GB,
a few seconds to load), short greedy generations.

When the configured default backend is this one the tests use the session's generator
(tests/conftest.py `generator`); otherwise they build this backend, since it is what they test.
"""

from __future__ import annotations

import pytest

from rag.config import GeneratorSettings, load_settings
from rag.generation.llamacpp_backend import LlamaCppGenerator
from rag.prompt import SYSTEM
from rag.protocols import (
    GenerationParams,
    Generator,
    Loadable,
    Message,
    ReportsUsage,
    TokenCounter,
    WarmsUp,
    YesNoScorer,
)

CONTEXT = (
    "The zephyr-relay daemon sends snapshots to a remote site. It listens on TCP port 7341 and "
    "accepts connections only from hosts listed in /etc/zephyr/relay.allow."
)
ASK = "Which TCP port does the zephyr-relay daemon listen on?"
QUESTION: list[Message] = [
    {"role": "system", "content": SYSTEM},
    {"role": "user", "content": f"Context passages:\n\n[1] (network.html)\n{CONTEXT}\n\nQuestion: {ASK}"},
]


def _verdict(statement: str) -> list[Message]:
    prompt = f"Context: {CONTEXT}\nStatement: {statement}\nIs the statement supported by the context?"
    return [{"role": "user", "content": prompt + " Answer yes or no."}]


@pytest.fixture(scope="module")
def local(request: pytest.FixtureRequest) -> LlamaCppGenerator:
    if load_settings().generator.backend == "llamacpp":
        generator = request.getfixturevalue("generator")
        assert isinstance(generator, LlamaCppGenerator), generator
        return generator
    own = LlamaCppGenerator(load_settings(**{"generator.backend": "llamacpp"}).generator)
    own.load()
    own.warm_up(SYSTEM)
    return own


def test_declares_its_capabilities_without_loading() -> None:
    generator = LlamaCppGenerator(GeneratorSettings(backend="llamacpp", model="/nowhere/m.gguf"))
    assert isinstance(generator, Generator) and isinstance(generator, Loadable)
    assert isinstance(generator, YesNoScorer) and isinstance(generator, WarmsUp)
    assert isinstance(generator, TokenCounter) and isinstance(generator, ReportsUsage)
    assert generator._llm is None  # constructing maps nothing


@pytest.mark.slow
def test_a_grounded_answer_with_usage(local: LlamaCppGenerator) -> None:
    text = "".join(local.stream(QUESTION, GenerationParams(max_tokens=40)))
    assert "7341" in text
    stats = local.last_stats
    assert stats.prompt_tokens > 50 and 0 < stats.completion_tokens <= 40
    assert stats.prefill_s > 0 and stats.decode_s >= 0
    assert local.count_tokens("port 7341") >= 2


@pytest.mark.slow
def test_stop_sequences_and_max_tokens(local: LlamaCppGenerator) -> None:
    text = "".join(local.stream(QUESTION, GenerationParams(max_tokens=40, stop=("7341",))))
    assert "7341" not in text
    assert local.last_stats.completion_tokens <= 40
    short = local.generate(QUESTION, GenerationParams(max_tokens=2))
    assert short.completion_tokens <= 2 and short.finish_reason == "length"


@pytest.mark.slow
def test_closing_a_stream_early_leaves_the_model_ready(local: LlamaCppGenerator) -> None:
    stream = local.stream(QUESTION, GenerationParams(max_tokens=200))
    next(stream)
    stream.close()  # what a client disconnect does
    again = local.generate(QUESTION, GenerationParams(max_tokens=40))
    assert "7341" in again.text  # the next prompt is not confused by the abandoned one


@pytest.mark.slow
def test_yes_probability_separates_supported_from_contradicted(local: LlamaCppGenerator) -> None:
    yes = local.yes_probability(_verdict("The relay listens on TCP port 7341."))
    no = local.yes_probability(_verdict("The relay listens on TCP port 8080."))
    assert 0.0 <= no < 0.5 < yes <= 1.0, (yes, no)


@pytest.mark.slow
def test_prompt_lookup_decoding_keeps_greedy_output_identical(local: LlamaCppGenerator) -> None:
    """Drafted tokens are verified against the model's own choice, so greedy text is unchanged.
    A second instance is needed (prompt lookup is fixed at load); it maps the same file, so the
    weights' pages are shared with the first."""
    settings = load_settings(**{"generator.backend": "llamacpp", "generator.prompt_lookup": True}).generator
    drafting = LlamaCppGenerator(settings)
    # Declared to the session's load counter (tests/conftest.py) as a deliberate second instance.
    object.__setattr__(drafting, "_tests_load_counted", True)
    params = GenerationParams(max_tokens=48)
    assert drafting.generate(QUESTION, params).text == local.generate(QUESTION, params).text
    del drafting  # frees its context at once
