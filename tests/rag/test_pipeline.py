"""Pipeline (rag/pipeline.py) on its own: the refusal gate, grounding, citation numbering and the
stream's order, over the real MiniLM embedder, the real FAISS index of the test corpus
(tests/conftest.py `built_index`) and the real support judge, with a scripted generator.

The slow tier runs the same path with the real model (tests/api/test_answers_e2e.py); here the
draft is fixed, so each check is about the pipeline's own decisions and runs in milliseconds.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import pytest

from rag.components import Components, build_components
from rag.config import Settings, load_settings
from rag.pipeline import Answer, Pipeline
from rag.protocols import Embedder, Generation, GenerationParams, Message

RELAY = "Which TCP port does the zephyr-relay daemon listen on?"
OFF_TOPIC = "Who wrote the novel Pride and Prejudice?"
REFUSAL = "Nothing about that in these documents."  # not the default, so it must come from settings


class ScriptedGenerator:
    """A declared fake generator: it replaces the 7 GB model so these tests check the pipeline's
    own logic in milliseconds. It writes the given pieces, whatever the prompt, and records every
    prompt it is sent (an empty record: the generator was never called)."""

    name = "scripted"

    def __init__(self, *pieces: str) -> None:
        self.pieces = list(pieces)
        self.prompts: list[list[Message]] = []

    def generate(self, messages: list[Message], params: GenerationParams) -> Generation:
        return Generation("".join(self.stream(messages, params)))

    def stream(self, messages: list[Message], params: GenerationParams) -> Iterator[str]:
        self.prompts.append(messages)
        yield from self.pieces


PipelineFor = Callable[..., Pipeline]


@pytest.fixture(scope="module")
def shared(built_index: Settings, embedder: Embedder) -> Components:
    """The store and retriever over the session's index, opened once for this module."""
    return build_components(built_index, embedder=embedder)


@pytest.fixture
def pipeline_for(built_index: Settings, shared: Components) -> PipelineFor:
    """pipeline_for(generator, **dotted_settings): a Pipeline over the session's index."""

    def make(generator: ScriptedGenerator, **overrides: object) -> Pipeline:
        settings = load_settings(index_dir=built_index.index_dir, **overrides)
        return build_components(
            settings,
            embedder=shared.embedder,
            store=shared.store,
            retriever=shared.retriever,
            generator=generator,
        ).pipeline()

    return make


def _markers(text: str) -> set[int]:
    return {int(n) for n in re.findall(r"\[(\d+)\]", text)}


def test_the_gate_refuses_below_min_score_without_calling_the_generator(pipeline_for: PipelineFor) -> None:
    probe = pipeline_for(ScriptedGenerator())
    best = max(h.dense_score for h in probe.search(RELAY) if h.dense_score is not None)
    assert best > probe.settings.retrieval.min_score  # on topic under the default threshold

    above = ScriptedGenerator("The zephyr-relay daemon listens on TCP port 7341.")
    refused = pipeline_for(above, **{"retrieval.min_score": best + 0.01}).answer(RELAY)
    assert refused.refused and above.prompts == []
    assert f"best score {best:.2f}" in refused.reason
    assert refused.answer == probe.settings.grounding.refusal_message and refused.citations == []
    assert refused.timings["generate_ms"] == 0.0

    below = ScriptedGenerator("The zephyr-relay daemon listens on TCP port 7341.")
    answered = pipeline_for(below, **{"retrieval.min_score": best - 0.01}).answer(RELAY)
    assert not answered.refused, answered.reason
    assert len(below.prompts) == 1 and "7341" in answered.answer


def test_an_off_topic_question_is_refused_with_the_configured_message(pipeline_for: PipelineFor) -> None:
    generator = ScriptedGenerator("Jane Austen wrote it.")
    answer = pipeline_for(generator, **{"grounding.refusal_message": REFUSAL}).answer(OFF_TOPIC)
    assert answer.refused and answer.answer == REFUSAL and answer.citations == []
    assert generator.prompts == []


def test_citations_number_the_chunk_holding_the_evidence(pipeline_for: PipelineFor) -> None:
    """The draft cites a passage that does not hold the fact: that marker is dropped and the
    answer cites the passage that does, by its number in the prompt."""
    hits = pipeline_for(ScriptedGenerator()).search(RELAY)
    holding = [n for n, h in enumerate(hits, 1) if "7341" in h.chunk.text]
    wrong = next(n for n, h in enumerate(hits, 1) if "7341" not in h.chunk.text)
    assert len(holding) == 1, holding
    generator = ScriptedGenerator(f"The zephyr-relay daemon listens on TCP port 7341 [{wrong}].")

    answer = pipeline_for(generator).answer(RELAY)

    assert not answer.refused, answer.reason
    assert _markers(answer.answer) == {c.n for c in answer.citations} == set(holding)
    for citation in answer.citations:
        assert answer.contexts[citation.n - 1] is citation.hit
        assert "7341" in citation.hit.chunk.text
        assert citation.hit.chunk.source.endswith("network.html")
    prompt = generator.prompts[0][-1]["content"]
    assert f'<passage n="{holding[0]}" source="network.html">' in prompt  # the number the model saw


def test_the_stream_yields_the_pieces_in_order_then_exactly_one_answer(pipeline_for: PipelineFor) -> None:
    pieces = ["Zephyr keeps weekly ", "snapshots for 8 weeks ", "by default."]
    generator = ScriptedGenerator(*pieces)
    items = list(pipeline_for(generator).answer_stream("How long does Zephyr keep weekly snapshots?"))

    assert items[:-1] == pieces
    assert isinstance(items[-1], Answer) and sum(isinstance(i, Answer) for i in items) == 1
    final = items[-1]
    assert final.draft == "".join(pieces)
    assert not final.refused, final.reason
    assert "8 weeks" in final.answer and final.citations


def test_a_refusal_written_by_the_model_is_recognised(pipeline_for: PipelineFor) -> None:
    draft = "The context does not mention which cipher Zephyr uses."
    generator = ScriptedGenerator(draft)
    # min_score -1: the gate lets every question through, so the verdict is the model's.
    settings = {"retrieval.min_score": -1.0, "grounding.refusal_message": REFUSAL}
    answer = pipeline_for(generator, **settings).answer("Which cipher does Zephyr use for snapshots?")

    assert len(generator.prompts) == 1
    assert answer.refused and answer.answer == REFUSAL and answer.citations == []
    assert answer.reason == "the model said the documents do not contain the answer"
    assert answer.draft == draft


def test_an_unsupported_draft_is_replaced_by_the_refusal_message(pipeline_for: PipelineFor) -> None:
    draft = "Zephyr encrypts every snapshot with AES-256, using a key kept in /etc/zephyr/keys."
    generator = ScriptedGenerator(draft)
    settings = {"retrieval.min_score": -1.0, "grounding.refusal_message": REFUSAL}
    pipeline = pipeline_for(generator, **settings)
    answer = pipeline.answer("Which cipher does Zephyr use for snapshots?")

    assert len(generator.prompts) == 1
    assert answer.refused and answer.answer == REFUSAL and answer.citations == []
    assert "supported by the retrieved chunks" in answer.reason and answer.draft == draft
    assert answer.grounding is not None
    assert answer.grounding.supported_fraction < pipeline.settings.grounding.min_supported_fraction
