"""The `metrics:` settings reach the metric functions: a changed threshold or weight changes the
score (so a configured value is never silently replaced by a module constant)."""

from __future__ import annotations

import pytest

from rag.config import MetricsSettings, load_settings
from rag.metrics import answer_correctness, context_relevance
from tests.eval.conftest import ZEPHYR

QUESTION = "How long does Zephyr keep daily snapshots?"


def test_context_relevance_follows_its_thresholds(cached_embedder) -> None:
    default = context_relevance(QUESTION, ZEPHYR, cached_embedder)
    strict = MetricsSettings(context_relevance_min_cosine=1.0, context_relevance_min_overlap=1.0)
    lenient = MetricsSettings(context_relevance_min_cosine=-1.0)
    assert default is not None and 0.0 < default < 1.0
    assert context_relevance(QUESTION, ZEPHYR, cached_embedder, strict) < default
    assert context_relevance(QUESTION, ZEPHYR, cached_embedder, lenient) == 1.0


def test_answer_correctness_follows_its_weight(judge, cached_embedder) -> None:
    reference = "Zephyr keeps daily snapshots for 14 days."
    answer = "Zephyr keeps daily snapshots for 14 days. It also mirrors them to Amazon S3."
    only_f1 = answer_correctness(
        answer, reference, judge, cached_embedder, MetricsSettings(correctness_f1_weight=1)
    )
    only_cos = answer_correctness(
        answer, reference, judge, cached_embedder, MetricsSettings(correctness_f1_weight=0)
    )
    assert only_f1 is not None and only_cos is not None
    assert only_f1.score == pytest.approx(only_f1.f1, abs=1e-4)
    assert only_cos.score == pytest.approx(only_cos.similarity, abs=1e-4)


def test_the_metrics_section_is_loaded_from_yaml(tmp_path) -> None:
    cfg = tmp_path / "m.yaml"
    cfg.write_text("metrics:\n  context_relevance_min_cosine: 0.9\n  generated_questions: 5\n")
    metrics = load_settings(config_file=cfg).metrics
    assert (metrics.context_relevance_min_cosine, metrics.generated_questions) == (0.9, 5)
