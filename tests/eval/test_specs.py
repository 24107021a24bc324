"""Run specs and run comparison end to end through `rag eval`, on the session's real index and
MiniLM (no generator: the rows carry their answers, the contexts are retrieved).

The degraded configuration is `retrieval.top_k: 1`: each reference below needs two documents of
the test corpus, so one retrieved chunk can recall at most part of it. Comparing a run with its
own spec must show no significant difference; comparing it with top_k 1 must flag the drop in
context recall as significant (and --fail-on-regression must then exit 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from cli.main import app

# Questions over the test corpus (tests/conftest.py) with their answers; every reference joins
# facts from two of its documents.
DATA = Path(__file__).parents[1] / "data" / "two_document_questions.jsonl"
ROWS = DATA.read_text(encoding="utf-8").splitlines()


@pytest.fixture(autouse=True)
def _session_embedder(monkeypatch, cached_embedder) -> None:
    """The CLI builds its embedder with make_embedder: hand it the session's real MiniLM."""
    monkeypatch.setattr("rag.embedding.make_embedder", lambda settings: cached_embedder)


@pytest.fixture(scope="module")
def specs(tmp_path_factory, built_index) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("specs")
    data = root / "two_docs.jsonl"
    data.write_text(DATA.read_text(encoding="utf-8"))
    base = {
        "dataset": data.name,
        "index": str(built_index.index_dir),
        "judge": "support",
        "seed": 0,
        "metrics": ["context_recall", "context_precision", "faithfulness", "answer_relevance"],
    }
    files = {
        "baseline": {**base, "name": "baseline"},
        "again": {**base, "name": "again"},
        "top1": {**base, "name": "top1", "pipeline": {"retrieval": {"top_k": 1}}},
        "robust": {**base, "name": "robust", "perturbations": ["lowercase", "typos", "paraphrase"]},
    }
    paths = {}
    for name, spec in files.items():
        paths[name] = root / f"{name}.yaml"
        paths[name].write_text(yaml.safe_dump(spec))
    return paths


@pytest.fixture(scope="module")
def runs(specs, tmp_path_factory, cached_embedder) -> tuple[Path, object]:
    out = tmp_path_factory.mktemp("runs")
    args = ["eval"] + [x for name in ("baseline", "again", "top1") for x in ("--spec", str(specs[name]))]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("rag.embedding.make_embedder", lambda settings: cached_embedder)
        result = CliRunner().invoke(app, [*args, "--out", str(out)])
    return out, result


def test_each_spec_runs_into_its_own_folder_with_spec_and_versions(runs, built_index) -> None:
    out, result = runs
    assert result.exit_code == 0, result.output
    for name in ("baseline", "again", "top1"):
        folder = out / name
        assert {"results.json", "report.html", "spec.yaml", "versions.json"} <= {
            p.name for p in folder.iterdir()
        }
        versions = json.loads((folder / "versions.json").read_text())
        assert versions["python"] and versions["rag-service"]
        assert isinstance(versions["index_version"], int) and versions["index_version"] >= 1
    top1 = json.loads((out / "top1" / "results.json").read_text())
    assert top1["config"]["retrieval"]["top_k"] == 1
    assert set(top1["aggregates"]["metrics"]) == {
        "context_recall",
        "context_precision",
        "faithfulness",
        "answer_relevance",
    }
    assert (out / "compare" / "compare.html").is_file()


def test_a_run_compared_with_itself_differs_in_nothing(runs) -> None:
    out, _ = runs
    result = CliRunner().invoke(
        app, ["eval", "compare", str(out / "baseline"), str(out / "again"), "--fail-on-regression"]
    )
    assert result.exit_code == 0, result.output
    cmp = json.loads((out / "compare" / "compare.json").read_text())
    again = next(c for c in cmp["comparisons"] if c["run"] == "again")
    for m, v in again["metrics"].items():
        assert v["n"] == len(ROWS) or m == "faithfulness", m
        assert not v["significant"] and v["delta"] == 0 and v["wins"] == v["losses"] == 0


def test_top_k_1_is_a_significant_drop_in_context_recall(runs) -> None:
    out, _ = runs
    cmp = json.loads((out / "compare" / "compare.json").read_text())
    top1 = next(c for c in cmp["comparisons"] if c["run"] == "top1")["metrics"]["context_recall"]
    assert top1["significant"] and top1["delta"] < 0 and top1["ci_high"] < 0
    assert top1["losses"] > top1["wins"]
    assert cmp["win_rate"]["top1"] < cmp["win_rate"]["baseline"]
    gate = CliRunner().invoke(
        app,
        [
            "eval",
            "compare",
            str(out / "baseline"),
            str(out / "top1"),
            "--fail-on-regression",
            "--out",
            str(out / "gate"),
        ],
    )
    assert gate.exit_code == 2 and "context_recall fell by" in gate.output
    html = (out / "gate" / "compare.html").read_text()
    assert "Paired differences" in html and "top1" in html


def test_fail_under_gates_the_compared_run(runs) -> None:
    out, _ = runs
    result = CliRunner().invoke(
        app,
        ["eval", "compare", str(out / "baseline"), str(out / "top1"), "--fail-under", "context_recall=0.99"],
    )
    assert result.exit_code == 2 and "top1: context_recall" in result.output


def test_perturbed_run_reports_worst_case_and_drop(specs, tmp_path, cached_embedder) -> None:
    result = CliRunner().invoke(app, ["eval", "--spec", str(specs["robust"]), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "robust" / "results.json").read_text())
    rob = data["aggregates"]["robustness"]
    assert rob["perturbations"] == ["lowercase", "paraphrase", "typos"] and rob["n_questions"] == len(ROWS)
    recall = rob["metrics"]["context_recall"]
    assert recall["worst_case"]["mean"] <= recall["original"]["mean"]
    assert recall["drop"] == pytest.approx(
        recall["original"]["mean"] - recall["worst_case"]["mean"], abs=1e-3
    )
    assert data["aggregates"]["n_samples"] == len(ROWS) and data["aggregates"]["n_variants"] > len(ROWS)
    assert "Robustness" in (tmp_path / "robust" / "report.html").read_text()


def test_bad_spec_names_the_field(tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("dataset: x.jsonl\nperturbations: [tpyos]\ntop_k: 3\n")
    result = CliRunner().invoke(app, ["eval", "--spec", str(bad)])
    assert result.exit_code == 1
    assert "perturbations" in result.output and "top_k" in result.output


def test_auto_judge_is_the_ensemble_only_when_the_run_generates_with_logits() -> None:
    from eval.runner import resolve_judge
    from rag.config import load_settings

    local = load_settings(**{"generator.backend": "llamacpp"})
    remote = load_settings(**{"generator.backend": "openai"})
    assert resolve_judge("auto", local, need_generation=False) == "support"  # given answers: seconds
    assert resolve_judge("auto", local, need_generation=True) == "ensemble"
    assert resolve_judge("auto", remote, need_generation=True) == "support"  # no logits over HTTP
    assert resolve_judge("llm", local, need_generation=False) == "llm"
