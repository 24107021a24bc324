"""Each metric on hand-made cases whose right score is known, with the real judge and embedder."""

from __future__ import annotations

import pytest

from rag.metrics import (
    answer_correctness,
    answer_relevance_embedding,
    answer_relevance_questions,
    context_precision,
    context_recall,
    context_relevance,
    faithfulness,
    refusal_correct,
)
from tests.eval.conftest import ZEPHYR


def test_fully_supported_answer_scores_one(judge) -> None:
    answer = "Zephyr keeps daily snapshots for 14 days [2]. The relay listens on TCP port 7341."
    score, verdicts = faithfulness(answer, ZEPHYR, judge)
    assert score == 1.0
    assert len(verdicts) == 2 and all(v.supported for v in verdicts)
    assert "14 days" in verdicts[0].evidence and verdicts[0].context_index == 1


def test_fully_fabricated_answer_scores_zero(judge) -> None:
    answer = "Zephyr encrypts backups with AES-256 in Amazon S3. Restores need the kubectl zephyr plugin."
    score, verdicts = faithfulness(answer, ZEPHYR, judge)
    assert score == 0.0
    assert all(not v.supported for v in verdicts)
    assert "aes-256" in verdicts[0].missing  # the judge names what the contexts lack


def test_one_wrong_detail_costs_its_clause_only(judge) -> None:
    answer = "Zephyr keeps daily snapshots for 14 days, and the relay daemon listens on TCP port 8080."
    score, verdicts = faithfulness(answer, ZEPHYR, judge)
    assert [v.supported for v in verdicts] == [True, False]
    assert score == 0.5
    assert "8080" in verdicts[1].missing


def test_no_checkable_statement_is_none_not_nan(judge) -> None:
    assert faithfulness("", ZEPHYR, judge) == (None, [])


def test_answer_relevance_embedding_orders_on_and_off_topic(cached_embedder) -> None:
    q = "How long does Zephyr keep daily snapshots?"
    on = answer_relevance_embedding(q, "Zephyr keeps daily snapshots for 14 days.", cached_embedder)
    off = answer_relevance_embedding(q, "Bread bakes at 220 degrees for 35 minutes.", cached_embedder)
    assert 0.0 <= off < 0.3 < 0.6 < on <= 1.0


def test_answer_relevance_from_generated_questions(cached_embedder) -> None:
    q = "How long does Zephyr keep daily snapshots?"
    same = answer_relevance_questions(q, [q, q], cached_embedder)
    assert same == pytest.approx(1.0, abs=1e-3)
    assert answer_relevance_questions(q, [], cached_embedder) is None


def test_context_precision_is_rank_aware(judge) -> None:
    reference = "Zephyr keeps daily snapshots for 14 days."
    useful_first, flags = context_precision(reference, [ZEPHYR[1], ZEPHYR[2]], judge)
    assert flags == [True, False] and useful_first == 1.0
    useful_second, flags = context_precision(reference, [ZEPHYR[2], ZEPHYR[1]], judge)
    assert flags == [False, True] and useful_second == 0.5
    none_useful, _ = context_precision(reference, [ZEPHYR[2]], judge)
    assert none_useful == 0.0


def test_context_recall_counts_reference_sentences(judge) -> None:
    reference = "Zephyr keeps daily snapshots for 14 days. The relay listens on TCP port 7341."
    assert context_recall(reference, ZEPHYR, judge)[0] == 1.0
    assert context_recall(reference, [ZEPHYR[1]], judge)[0] == 0.5
    assert context_recall(reference, [], judge)[0] == 0.0


def test_context_relevance_prefers_on_topic_passages(cached_embedder) -> None:
    q = "Which port does the zephyr-relay daemon listen on?"
    on = context_relevance(q, [ZEPHYR[2]], cached_embedder)
    off = context_relevance(
        q, ["Bread bakes at 220 degrees. Knead the dough for ten minutes."], cached_embedder
    )
    assert on is not None and off is not None
    assert on >= 0.5 and off == 0.0


def test_answer_correctness_identical_and_fabricated(judge, cached_embedder) -> None:
    reference = "Zephyr keeps daily snapshots for 14 days."
    same = answer_correctness(reference, reference, judge, cached_embedder)
    assert same is not None and same.tp == 1 and same.fp == same.fn == 0
    assert same.score == pytest.approx(1.0, abs=1e-3)
    wrong = answer_correctness(
        "Zephyr stores backups in Amazon S3 buckets.", reference, judge, cached_embedder
    )
    assert wrong is not None and wrong.tp == 0 and wrong.f1 == 0.0
    assert wrong.score <= 0.25  # only the similarity part remains
    partial = answer_correctness(
        "Zephyr keeps daily snapshots for 14 days. It also mirrors them to Amazon S3.",
        reference,
        judge,
        cached_embedder,
    )
    assert partial is not None and (partial.tp, partial.fp, partial.fn) == (1, 1, 0)
    assert partial.f1 == pytest.approx(2 / 3, abs=1e-3)


def test_refusal_correctness() -> None:
    assert refusal_correct(True, False) == 1.0
    assert refusal_correct(False, True) == 1.0
    assert refusal_correct(True, True) == 0.0
    assert refusal_correct(False, False) == 0.0
    assert refusal_correct(True, None) is None
