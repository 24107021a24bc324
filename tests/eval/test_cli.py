"""`rag eval` end to end on a small data set with answers and contexts (no generator, no index):
the three outputs, the exit codes of --fail-under, --baseline, --limit, and input errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from cli.eval import eval_command, parse_thresholds
from rag.errors import RagError
from tests.eval.conftest import ZEPHYR

app = typer.Typer()
app.command("eval")(eval_command)


@app.command("noop")
def _noop() -> None:  # a second command keeps typer from collapsing the app into "eval" itself
    pass


ROWS = [
    {
        "question": "How long are daily snapshots kept?",
        "answer": "Daily snapshots are kept for 14 days.",
        "contexts": ZEPHYR,
        "reference": "Zephyr keeps daily snapshots for 14 days.",
        "answerable": True,
    },
    {
        "question": "Which port does the relay use?",
        "answer": "The relay uses TCP port 9000.",
        "contexts": ZEPHYR,
        "answerable": True,
    },
    {
        "question": "Does Zephyr support S3?",
        "answer": "The documents do not contain the answer to this question.",
        "contexts": ZEPHYR,
        "answerable": False,
    },
]


@pytest.fixture(autouse=True)
def _session_embedder(monkeypatch, cached_embedder) -> None:
    """`rag eval` builds its embedder with make_embedder; hand it the session's (same real model,
    loaded once) instead of loading MiniLM again for every invocation."""
    monkeypatch.setattr("rag.embedding.make_embedder", lambda settings: cached_embedder)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "qa.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return path


@pytest.fixture(scope="module")
def first_run(dataset: Path, tmp_path_factory, cached_embedder) -> tuple[Path, object]:
    out = tmp_path_factory.mktemp("out")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("rag.embedding.make_embedder", lambda settings: cached_embedder)
        result = CliRunner().invoke(app, ["eval", str(dataset), "--out", str(out)])
    return out, result


def test_writes_three_outputs(first_run) -> None:
    out, result = first_run
    assert result.exit_code == 0, result.output
    data = json.loads((out / "results.json").read_text())
    assert data["aggregates"]["n_samples"] == 3 and data["aggregates"]["n_refused"] == 1
    assert data["aggregates"]["metrics"]["faithfulness"]["mean"] == 0.5
    assert data["config"]["judge"] == "support" and "python" in data["versions"]
    assert data["samples"][1]["statements"][0]["supported"] is False
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert [r["faithfulness"] for r in rows] == ["1.0", "0.0", ""]
    assert rows[2]["refused"] == "True"
    html = (out / "report.html").read_text()
    assert "<svg" in html and "stmt-bad" in html and "refused" in html
    assert "<script" not in html and "http://" not in html and "https://" not in html


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--fail-under", "faithfulness=0.4"], 0, None),
        (["--fail-under", "faithfulness=0.9"], 2, "faithfulness = 0.500 is below 0.9"),
        (
            ["--fail-under", "faithfulness=0.4", "--fail-under", "answer_relevance=0.99"],
            2,
            "answer_relevance",
        ),
        (["--fail-under", "answer_relevance_generated=0.1"], 2, "has no scored samples"),
        (["--fail-under", "bogus=1"], 1, "METRIC=VALUE"),
    ],
)
def test_fail_under_exit_codes(first_run, dataset: Path, args, code, message) -> None:
    out, _ = first_run  # same --out: every sample is resumed, so this is quick
    result = CliRunner().invoke(app, ["eval", str(dataset), "--out", str(out), *args])
    assert result.exit_code == code, result.output
    if message:
        assert message in result.output


def test_baseline_comparison_and_limit(first_run, dataset: Path, tmp_path: Path) -> None:
    out, _ = first_run
    result = CliRunner().invoke(
        app,
        [
            "eval",
            str(dataset),
            "--out",
            str(tmp_path),
            "--limit",
            "1",
            "--baseline",
            str(out / "results.json"),
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["aggregates"]["n_samples"] == 1
    cmp = data["baseline"]["comparison"]["faithfulness"]
    assert cmp == {"mean": 1.0, "baseline": 0.5, "delta": 0.5, "ci_overlap": True}
    assert "baseline" in (tmp_path / "report.html").read_text()


def test_csv_dataset_with_json_contexts(tmp_path: Path) -> None:
    path = tmp_path / "qa.csv"
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["question", "answer", "contexts", "answerable"])
        w.writeheader()
        w.writerow(
            {
                "question": "Which port?",
                "answer": "The relay listens on TCP port 7341.",
                "contexts": json.dumps(ZEPHYR),
                "answerable": "yes",
            }
        )
    result = CliRunner().invoke(app, ["eval", str(path), "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "o" / "results.json").read_text())
    assert data["samples"][0]["metrics"]["faithfulness"] == 1.0


def test_rows_without_answers_need_an_index(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    path.write_text('{"question": "Which port?"}\n')
    result = CliRunner().invoke(app, ["eval", str(path), "--out", str(tmp_path / "o")])
    assert result.exit_code == 1 and "--index" in " ".join(result.output.split())


def test_bad_dataset_row_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    path.write_text('{"question": "ok", "answer": "a", "contexts": ["c"]}\n{"answer": "no question"}\n')
    result = CliRunner().invoke(app, ["eval", str(path), "--out", str(tmp_path / "o")])
    flat = " ".join(result.output.split())  # rich wraps long lines
    assert result.exit_code == 1 and "q.jsonl:2: question: Field required" in flat


def test_parse_thresholds() -> None:
    assert parse_thresholds(["faithfulness=0.8", "context-recall=0.5"]) == {
        "faithfulness": 0.8,
        "context_recall": 0.5,
    }
    with pytest.raises(RagError):
        parse_thresholds(["faithfulness=high"])
