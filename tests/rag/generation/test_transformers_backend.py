"""The local generator with the REAL packaged Qwen2.5-Coder-1.5B (about 65 s and 7 GB to load,
a few tokens per second), so every generation here is short and greedy."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from rag.config import GeneratorSettings
from rag.generation import make_generator
from rag.generation.transformers_backend import TransformersGenerator, _StopFilter, truncate_at_stop
from rag.protocols import GenerationParams, Generator, Message, YesNoScorer

FRANCE: list[Message] = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]
HASH_TABLE: list[Message] = [{"role": "user", "content": "Explain in detail how a hash table works."}]


def _ask(question: str) -> list[Message]:
    return [{"role": "user", "content": f"{question} Answer yes or no."}]


@pytest.fixture(scope="module")
def generator() -> Iterator[TransformersGenerator]:
    generator = make_generator(GeneratorSettings(backend="transformers", model="qwen2.5-coder-1.5b"))
    assert isinstance(generator, TransformersGenerator)
    started = time.perf_counter()
    generator.load()
    print(f"\nmodel load: {time.perf_counter() - started:.1f} s")
    yield generator


@pytest.mark.slow
def test_implements_protocols(generator: TransformersGenerator) -> None:
    assert isinstance(generator, Generator) and isinstance(generator, YesNoScorer)


@pytest.mark.slow
def test_greedy_answer(generator: TransformersGenerator) -> None:
    result = generator.generate(FRANCE, GenerationParams(max_tokens=8))
    stats = generator.last_stats
    print(
        f"\nprompt {stats.prompt_tokens} tok in {stats.prefill_s:.2f} s "
        f"({stats.prompt_tokens_per_s:.1f} tok/s); {stats.completion_tokens} generated, "
        f"{stats.prefill_s + stats.decode_s:.2f} s in all"
    )
    assert "Paris" in result.text
    assert result.finish_reason == "stop"  # ended on <|im_end|>, well before 8 tokens
    assert result.prompt_tokens > 20 and 1 <= result.completion_tokens < 8


@pytest.mark.slow
def test_stream_matches_generate(generator: TransformersGenerator) -> None:
    params = GenerationParams(max_tokens=8)
    pieces = list(generator.stream(FRANCE, params))
    assert pieces and all(pieces)
    assert "".join(pieces) == generator.generate(FRANCE, params).text


@pytest.mark.slow
def test_length_limit_and_decode_speed(generator: TransformersGenerator) -> None:
    result = generator.generate(HASH_TABLE, GenerationParams(max_tokens=12))
    stats = generator.last_stats
    print(
        f"\nprompt {stats.prompt_tokens_per_s:.1f} tok/s, "
        f"generation {stats.completion_tokens_per_s:.2f} tok/s "
        f"({stats.completion_tokens} tokens, {stats.decode_s:.1f} s after the first)"
    )
    assert result.finish_reason == "length"
    assert result.completion_tokens == 12
    assert "hash" in result.text.lower()


@pytest.mark.slow
def test_stop_string_cuts_generate_and_stream(generator: TransformersGenerator) -> None:
    params = GenerationParams(max_tokens=12, stop=("table",))
    result = generator.generate(HASH_TABLE, params)
    assert result.finish_reason == "stop"
    assert "table" not in result.text and result.completion_tokens < 12  # generation stopped early
    assert "".join(generator.stream(HASH_TABLE, params)) == result.text


@pytest.mark.slow
def test_yes_probability_separates_true_and_false(generator: TransformersGenerator) -> None:
    true_p = generator.yes_probability(_ask("Is Paris the capital of France?"))
    false_p = generator.yes_probability(_ask("Is Berlin the capital of France?"))
    print(f"\nP(yes): true {true_p:.3f}, false {false_p:.3f}")
    assert true_p > 0.8 and false_p < 0.2


@pytest.mark.slow
def test_abandoned_stream_releases_the_model(generator: TransformersGenerator) -> None:
    stream = generator.stream(HASH_TABLE, GenerationParams(max_tokens=16))
    next(stream)
    stream.close()  # a client that disconnects after the first piece
    assert "Paris" in generator.generate(FRANCE, GenerationParams(max_tokens=8)).text


def test_truncate_at_earliest_stop() -> None:
    assert truncate_at_stop("a b. c\n\nd", ("\n\n", ".")) == ("a b", True)
    assert truncate_at_stop("abc", ("x",)) == ("abc", False)


def test_stop_filter_holds_back_partial_stop_strings() -> None:
    pieces = list(_StopFilter(("ENDING",)).filter(iter(["Hello wor", "ld END", "ING more"])))
    assert "".join(pieces) == "Hello world "
    assert all("END" not in p for p in pieces)  # "END" was held back until "ING" settled it
    assert "".join(_StopFilter(("ENDING",)).filter(iter(["ab", "c"]))) == "abc"
