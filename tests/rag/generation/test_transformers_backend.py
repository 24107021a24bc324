"""The transformers backend with the REAL packaged Qwen2.5-Coder-1.5B (about 80 s and 7 GB to
load, a few tokens per second), so every generation here is short and greedy.

When the configured default backend is this one, the tests use the session's generator
(tests/conftest.py `generator`: the model loads once per session); otherwise they build this
backend themselves, since what they test is this backend."""

from __future__ import annotations

import time

import pytest

from rag.config import GeneratorSettings, load_settings
from rag.generation.transformers_backend import TransformersGenerator, _StopFilter, truncate_at_stop
from rag.protocols import GenerationParams, Generator, Loadable, Message, YesNoScorer

FRANCE: list[Message] = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]
HASH_TABLE: list[Message] = [{"role": "user", "content": "Explain in detail how a hash table works."}]


def _ask(question: str) -> list[Message]:
    return [{"role": "user", "content": f"{question} Answer yes or no."}]


@pytest.fixture(scope="module")
def local(request: pytest.FixtureRequest) -> TransformersGenerator:
    """The session generator when it is a TransformersGenerator, else one of this backend."""
    if load_settings().generator.backend == "transformers":
        generator = request.getfixturevalue("generator")
        assert isinstance(generator, TransformersGenerator), generator
        return generator
    own = TransformersGenerator(load_settings(**{"generator.backend": "transformers"}).generator)
    started = time.perf_counter()
    own.load()
    print(f"\nmodel load: {time.perf_counter() - started:.1f} s")
    return own


def test_is_a_loadable_yes_no_scoring_generator_without_loading() -> None:
    """What the rest of the code tells apart by these protocols: build_generator loads a Loadable
    up front, the LLM judge asks a YesNoScorer for P(yes) instead of parsing JSON. Constructing
    is cheap (no model, not even the GGUF is resolved), so this needs no 7 GB load."""
    generator = TransformersGenerator(GeneratorSettings(backend="transformers", model="/nowhere/m.gguf"))
    assert isinstance(generator, Generator)
    assert isinstance(generator, Loadable) and isinstance(generator, YesNoScorer)
    assert generator._model is None and generator._tokenizer is None  # nothing was loaded


@pytest.mark.slow
def test_greedy_answer(local: TransformersGenerator) -> None:
    result = local.generate(FRANCE, GenerationParams(max_tokens=8))
    stats = local.last_stats
    print(
        f"\nprompt {stats.prompt_tokens} tok in {stats.prefill_s:.2f} s "
        f"({stats.prompt_tokens_per_s:.1f} tok/s); {stats.completion_tokens} generated, "
        f"{stats.prefill_s + stats.decode_s:.2f} s in all"
    )
    assert "Paris" in result.text
    assert result.finish_reason == "stop"  # ended on <|im_end|>, well before 8 tokens
    assert result.prompt_tokens > 20 and 1 <= result.completion_tokens < 8


@pytest.mark.slow
def test_stream_matches_generate(local: TransformersGenerator) -> None:
    params = GenerationParams(max_tokens=8)
    pieces = list(local.stream(FRANCE, params))
    assert pieces and all(pieces)
    assert "".join(pieces) == local.generate(FRANCE, params).text


@pytest.mark.slow
def test_length_limit_and_decode_speed(local: TransformersGenerator) -> None:
    result = local.generate(HASH_TABLE, GenerationParams(max_tokens=12))
    stats = local.last_stats
    print(
        f"\nprompt {stats.prompt_tokens_per_s:.1f} tok/s, "
        f"generation {stats.completion_tokens_per_s:.2f} tok/s "
        f"({stats.completion_tokens} tokens, {stats.decode_s:.1f} s after the first)"
    )
    assert result.finish_reason == "length"
    assert result.completion_tokens == 12
    assert "hash" in result.text.lower()


@pytest.mark.slow
def test_stop_string_cuts_generate_and_stream(local: TransformersGenerator) -> None:
    params = GenerationParams(max_tokens=12, stop=("table",))
    result = local.generate(HASH_TABLE, params)
    assert result.finish_reason == "stop"
    assert "table" not in result.text and result.completion_tokens < 12  # generation stopped early
    assert "".join(local.stream(HASH_TABLE, params)) == result.text


@pytest.mark.slow
def test_yes_probability_separates_true_and_false(local: TransformersGenerator) -> None:
    true_p = local.yes_probability(_ask("Is Paris the capital of France?"))
    false_p = local.yes_probability(_ask("Is Berlin the capital of France?"))
    print(f"\nP(yes): true {true_p:.3f}, false {false_p:.3f}")
    assert true_p > 0.8 and false_p < 0.2


@pytest.mark.slow
def test_abandoned_stream_releases_the_model(local: TransformersGenerator) -> None:
    stream = local.stream(HASH_TABLE, GenerationParams(max_tokens=16))
    next(stream)
    stream.close()  # a client that disconnects after the first piece
    assert "Paris" in local.generate(FRANCE, GenerationParams(max_tokens=8)).text


def test_truncate_at_earliest_stop() -> None:
    assert truncate_at_stop("a b. c\n\nd", ("\n\n", ".")) == ("a b", True)
    assert truncate_at_stop("abc", ("x",)) == ("abc", False)


def test_stop_filter_holds_back_partial_stop_strings() -> None:
    pieces = list(_StopFilter(("ENDING",)).filter(iter(["Hello wor", "ld END", "ING more"])))
    assert "".join(pieces) == "Hello world "
    assert all("END" not in p for p in pieces)  # "END" was held back until "ING" settled it
    assert "".join(_StopFilter(("ENDING",)).filter(iter(["ab", "c"]))) == "abc"
