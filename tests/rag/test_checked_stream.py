"""Pipeline.checked_stream and Pipeline.events (rag/pipeline.py): checked sentences as the draft is
written, over the real MiniLM embedder, the real index of the test corpus and the real support
judge, with the declared scripted generator of test_pipeline.py (a fixed draft, so each check is
about the pipeline's decisions; the real model runs in tests/api/test_streaming_e2e.py)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from rag.components import Components, build_components
from rag.config import Settings, load_settings
from rag.pipeline import Answer, CheckedSentence, Pipeline
from rag.protocols import Embedder, GenerationParams, Generator, Message
from tests.rag.test_pipeline import PipelineFor, ScriptedGenerator

WEEKLY = "How long does Zephyr keep weekly and daily snapshots?"
ANSWER = [
    "Zephyr keeps daily snapshots ",
    "for 14 days. ",
    "Weekly snapshots are kept ",
    "for 8 weeks. ",
    "Older snapshots are pruned by zephyr prune",
]


@pytest.fixture(scope="module")
def shared(built_index: Settings, embedder: Embedder) -> Components:
    return build_components(built_index, embedder=embedder)


@pytest.fixture
def pipeline_for(built_index: Settings, shared: Components) -> PipelineFor:
    """pipeline_for(generator): a Pipeline over the session's index, with its own answer cache."""

    def make(generator: Generator) -> Pipeline:
        settings = load_settings(index_dir=built_index.index_dir)
        c = build_components(
            settings,
            embedder=shared.embedder,
            store=shared.store,
            retriever=shared.retriever,
            generator=generator,
        )
        return c.pipeline()

    return make


def split(items: list) -> tuple[list[CheckedSentence], Answer]:
    assert isinstance(items[-1], Answer) and not any(isinstance(i, Answer) for i in items[:-1])
    return [i for i in items if isinstance(i, CheckedSentence)], items[-1]


def test_each_sentence_comes_as_soon_as_it_is_complete_and_joined_they_are_the_answer(
    pipeline_for: PipelineFor,
) -> None:
    items = list(pipeline_for(ScriptedGenerator(*ANSWER)).events(WEEKLY, use_cache=False))
    order = [("piece" if isinstance(i, str) else type(i).__name__) for i in items]
    # The first sentence is out as soon as the word after it is written ("Weekly "), long before
    # the draft ends.
    assert order[:4] == ["piece", "piece", "piece", "CheckedSentence"]
    sentences, final = split(items)
    assert not final.refused, final.reason
    assert len(sentences) == 3
    assert "".join(s.text for s in sentences) == final.answer
    assert final.sentences == sentences
    assert sentences[2].text.startswith(" Older snapshots")  # the separator travels with it


def test_markers_and_citations_agree_between_the_sentences_and_the_answer(pipeline_for: PipelineFor) -> None:
    sentences, final = split(list(pipeline_for(ScriptedGenerator(*ANSWER)).checked_stream(WEEKLY)))
    for s in sentences:
        assert {int(n) for n in re.findall(r"\[(\d+)\]", s.text)} == {c.n for c in s.citations}
        for c in s.citations:
            assert final.contexts[c.n - 1] is c.hit
    assert {c.n for s in sentences for c in s.citations} == {c.n for c in final.citations}
    assert any("14 days" in c.hit.chunk.text for s in sentences[:1] for c in s.citations)


def test_an_unsupported_sentence_is_withheld_from_the_stream_and_from_every_answer(
    pipeline_for: PipelineFor,
) -> None:
    invented = "Snapshots are encrypted with AES-256 by default. "
    pieces = [*ANSWER[:2], invented, *ANSWER[2:]]
    sentences, final = split(list(pipeline_for(ScriptedGenerator(*pieces)).checked_stream(WEEKLY)))
    assert not final.refused and "withheld" in final.reason
    assert "AES" not in final.answer and all("AES" not in s.text for s in sentences)
    assert "".join(s.text for s in sentences) == final.answer
    assert "AES-256" in final.draft  # what the model wrote is kept for debugging
    plain = pipeline_for(ScriptedGenerator(*pieces)).answer(WEEKLY, use_cache=False)
    assert plain.answer == final.answer  # the non-streamed answer is the same


def test_an_unsupported_answer_ends_in_the_refusal_and_shows_no_sentence(pipeline_for: PipelineFor) -> None:
    pieces = ["Zephyr encrypts snapshots ", "with AES-256 and rotates keys ", "every 90 days via KMS."]
    pipeline = pipeline_for(ScriptedGenerator(*pieces))
    sentences, final = split(list(pipeline.checked_stream("Which cipher does Zephyr use for snapshots?")))
    assert sentences == [] and final.refused, final.reason
    assert final.answer == pipeline.settings.grounding.refusal_message and final.citations == []


def test_a_cached_answer_shows_its_sentences_at_once(pipeline_for: PipelineFor) -> None:
    generator = ScriptedGenerator(*ANSWER)
    pipeline = pipeline_for(generator)
    first, answer = split(list(pipeline.checked_stream(WEEKLY)))
    again, cached = split(list(pipeline.checked_stream(WEEKLY)))
    assert len(generator.prompts) == 1 and cached.cached == "exact"
    assert [s.text for s in again] == [s.text for s in first]
    assert cached.answer == answer.answer


class ClosableGenerator(ScriptedGenerator):
    """The scripted fake, recording whether its stream was closed before it ended."""

    closed_early = False

    def stream(self, messages: list[Message], params: GenerationParams) -> Iterator[str]:
        finished = False
        try:
            yield from super().stream(messages, params)
            finished = True
        finally:
            self.closed_early = not finished


def test_closing_the_checked_stream_closes_the_model_stream_at_once(pipeline_for: PipelineFor) -> None:
    generator = ClosableGenerator(*ANSWER)
    stream = pipeline_for(generator).checked_stream(WEEKLY, use_cache=False)
    assert isinstance(next(stream), CheckedSentence)
    stream.close()
    assert generator.closed_early
