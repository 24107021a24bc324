"""The statistics behind `rag eval compare`, calibration and robustness, on plain numbers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eval.calibration import expected_calibration_error, reliability
from eval.compare import compare_runs, mean_win_rate, paired, regressions
from eval.robustness import robustness

scores = st.lists(st.floats(0, 1, allow_nan=False), min_size=2, max_size=40)


@given(scores)
def test_a_run_against_itself_is_never_significant(values) -> None:
    a = {f"q{i}": v for i, v in enumerate(values)}
    r = paired(a, dict(a))
    assert r["delta"] == 0 and not r["significant"] and r["ties"] == len(values)


@given(st.lists(st.floats(0, 0.5, allow_nan=False), min_size=5, max_size=40), st.floats(0.05, 0.5))
def test_a_uniform_gain_on_every_question_is_significant(values, gain) -> None:
    a = {f"q{i}": v for i, v in enumerate(values)}
    b = {k: v + gain for k, v in a.items()}
    r = paired(a, b)
    assert r["significant"] and r["ci_low"] > 0 and r["wins"] == len(values)


def test_noise_around_zero_is_not_significant() -> None:
    a = {f"q{i}": 0.5 for i in range(20)}
    b = {f"q{i}": 0.5 + (0.1 if i % 2 else -0.1) for i in range(20)}
    r = paired(a, b)
    assert r["delta"] == pytest.approx(0) and not r["significant"] and r["wins"] == r["losses"] == 10


def test_only_questions_scored_in_both_runs_are_paired() -> None:
    r = paired({"a": 1.0, "b": 0.0}, {"b": 1.0, "c": 0.0})
    assert r["n"] == 1 and r["delta"] == 1.0 and not r["significant"]  # one pair proves nothing


def test_mean_win_rate_counts_ties_as_half() -> None:
    # metric 1: run 0 best; metric 2: runs 0 and 1 tie, run 2 lowest
    assert mean_win_rate([[0.9, 0.5, 0.1], [0.5, 0.5, 0.2]]) == [0.875, 0.625, 0.0]


def _run(name: str, values: list[float]) -> dict:
    return {
        "_name": name,
        "aggregates": {"metrics": {}},
        "samples": [{"key": f"k{i}", "metrics": {"context_recall": v}} for i, v in enumerate(values)],
    }


def test_regressions_name_the_run_and_metric() -> None:
    result = compare_runs([_run("base", [1.0] * 8), _run("worse", [0.5] * 8)], ["context_recall"])
    (line,) = regressions(result)
    assert line.startswith("worse: context_recall fell by 0.500 against base")
    assert (
        regressions(compare_runs([_run("base", [1.0] * 8), _run("same", [1.0] * 8)], ["context_recall"]))
        == []
    )


def test_expected_calibration_error() -> None:
    # perfectly calibrated: in the 0.2 bin one of five is positive, in the 0.8 bin four of five
    probs = [0.2] * 5 + [0.8] * 5
    outcomes = [1, 0, 0, 0, 0, 1, 1, 1, 1, 0]
    assert expected_calibration_error(probs, outcomes) == pytest.approx(0.0)
    # always 0.9 while half are positive: off by 0.4
    assert expected_calibration_error([0.9] * 4, [1, 0, 1, 0]) == pytest.approx(0.4)
    assert expected_calibration_error([], []) is None
    bins = reliability([0.0, 1.0, 0.55], [0, 1, 1], bins=10)
    assert [b.n for b in bins] == [1, 0, 0, 0, 0, 1, 0, 0, 0, 1]  # 1.0 lands in the last bin


def test_robustness_takes_each_questions_worst_variant() -> None:
    records = [
        {"key": "a", "origin": "a", "variant": "original", "metrics": {"m": 1.0}},
        {"key": "a1", "origin": "a", "variant": "typos", "metrics": {"m": 0.4}},
        {"key": "a2", "origin": "a", "variant": "lowercase", "metrics": {"m": None}},
        {"key": "b", "origin": "b", "variant": "original", "metrics": {"m": 0.6}},
        {"key": "b1", "origin": "b", "variant": "typos", "metrics": {"m": 0.8}},
    ]
    r = robustness(records, ["m"])["metrics"]["m"]
    assert r["original"]["mean"] == pytest.approx(0.8)
    assert r["worst_case"]["mean"] == pytest.approx(0.5)  # min(1.0, 0.4) and min(0.6, 0.8)
    assert r["drop"] == pytest.approx(0.3)
    assert r["by_perturbation"]["typos"]["mean"] == pytest.approx(0.6)
    assert robustness([{"key": "x", "metrics": {"m": 1.0}}], ["m"]) is None
