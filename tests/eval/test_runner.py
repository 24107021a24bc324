"""The evaluator loop: refusals flagged, efficiency recorded, and resume after an interruption."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eval.dataset import Sample
from eval.runner import PARTIAL, Evaluator, aggregate
from rag.grounding.support import LexicalSupportJudge
from tests.eval.conftest import ZEPHYR

SAMPLES = [
    Sample(
        question="How long are daily snapshots kept?",
        answer="Zephyr keeps its daily snapshots for 14 days.",
        contexts=ZEPHYR,
        reference="Zephyr keeps daily snapshots for 14 days.",
        answerable=True,
    ),
    Sample(
        question="Does Zephyr support S3?",
        answer="The documents do not contain the answer to this question.",
        contexts=ZEPHYR,
        answerable=False,
    ),
    Sample(
        question="Which port does the relay use?",
        answer="The relay uses TCP port 9000.",
        contexts=ZEPHYR,
        answerable=True,
    ),
]


@pytest.fixture
def evaluator(settings, cached_embedder, judge) -> Evaluator:
    return Evaluator(settings, cached_embedder, judge)


def test_scores_and_flags_refusal(evaluator: Evaluator) -> None:
    good, refusal, wrong = (evaluator.score(s) for s in SAMPLES)
    assert good["metrics"]["faithfulness"] == 1.0
    assert good["metrics"]["answer_correctness"] > 0.9
    assert good["metrics"]["context_recall"] == 1.0
    assert refusal["refused"] is True
    assert refusal["metrics"]["faithfulness"] is None and refusal["metrics"]["answer_relevance"] is None
    assert refusal["metrics"]["refusal_correctness"] == 1.0
    assert wrong["metrics"]["faithfulness"] == 0.0 and wrong["metrics"]["refusal_correctness"] == 1.0
    agg = aggregate([good, refusal, wrong])
    assert agg["n_refused"] == 1
    assert agg["metrics"]["faithfulness"]["n"] == 2 and agg["metrics"]["faithfulness"]["n_null"] == 1
    assert agg["metrics"]["faithfulness"]["mean"] == 0.5
    json.dumps(agg, allow_nan=False)  # no NaN anywhere


def test_resume_skips_finished_samples(evaluator: Evaluator, tmp_path: Path, monkeypatch) -> None:
    first = evaluator.run(SAMPLES[:2], tmp_path)
    lines = (tmp_path / PARTIAL).read_text().splitlines()
    assert len(lines) == 2
    # simulate a crash in the middle of writing a third record
    with (tmp_path / PARTIAL).open("a") as f:
        f.write('{"key": "torn')
    calls = []
    original = evaluator.score
    monkeypatch.setattr(evaluator, "score", lambda s: calls.append(s.question) or original(s))
    seen = []
    again = evaluator.run(SAMPLES, tmp_path, on_progress=lambda done, total, cached: seen.append(cached))
    assert calls == [SAMPLES[2].question]  # only the unfinished sample was scored
    assert seen == [True, True, False]
    assert [r["key"] for r in again[:2]] == [r["key"] for r in first]
    assert again[0]["metrics"] == first[0]["metrics"]


def test_changed_judge_settings_do_not_reuse_results(
    evaluator, settings, cached_embedder, tmp_path: Path
) -> None:
    evaluator.run(SAMPLES[:1], tmp_path)
    stricter = settings.model_copy(deep=True)
    stricter.grounding.min_support = 0.9
    other = Evaluator(stricter, cached_embedder, LexicalSupportJudge(stricter.grounding, cached_embedder))
    assert other.fingerprint != evaluator.fingerprint
    seen = []
    other.run(SAMPLES[:1], tmp_path, on_progress=lambda d, t, cached: seen.append(cached))
    assert seen == [False]


def test_rows_without_contexts_need_an_index(evaluator: Evaluator) -> None:
    record = evaluator.score(Sample(question="Which port?", answer="Port 7341."))
    assert record["metrics"]["faithfulness"] is None
    assert "--index" in record["error"]
