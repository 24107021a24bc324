from __future__ import annotations

import json
from pathlib import Path

import pytest

from eval.dataset import DatasetError, Sample, load_dataset, sample_key, synthesize, write_jsonl
from eval.stats import summarize


def test_sample_key_changes_with_what_is_scored() -> None:
    k = sample_key("q", "a", ["c"])
    assert k == sample_key("q", "a", ["c"])
    assert (
        len({k, sample_key("q", "a2", ["c"]), sample_key("q", "a", ["c2"]), sample_key("q", None, None)}) == 4
    )


def test_csv_cells(tmp_path: Path) -> None:
    p = tmp_path / "d.csv"
    p.write_text('question,answerable,contexts,reference\nq1,no,"[""x""]",\nq2,,,ref\n')
    a, b = load_dataset(p)
    assert (a.answerable, a.contexts, a.reference) == (False, ["x"], None)
    assert (b.answerable, b.contexts, b.reference) == (None, None, "ref")


def test_bad_contexts_cell(tmp_path: Path) -> None:
    p = tmp_path / "d.csv"
    p.write_text("question,contexts\nq1,not json\n")
    with pytest.raises(DatasetError, match=r"d.csv:2: contexts.*JSON list"):
        load_dataset(p)


def test_labelled_set_shape() -> None:
    rows = load_dataset(Path(__file__).parents[1] / "data" / "faithfulness_labels.jsonl")
    assert len(rows) >= 60
    kinds = [r.model_extra["kind"] for r in rows]
    assert kinds.count("supported") == kinds.count("one_wrong_detail") == kinds.count("unsupported")


def test_synthesize_from_chunks(tmp_path: Path) -> None:
    chunks = [
        ("a.md", "Zephyr stores snapshots in /var/lib/zephyr/snapshots and writes a log file. Short one."),
        ("b.md", "The zephyr-relay daemon listens on TCP port 7341 for incoming snapshot transfers."),
    ]
    samples = synthesize(chunks, 5, seed=1)
    assert len(samples) == 2 and all(s.synthetic and s.reference and s.answerable for s in samples)
    assert any("port ____ for" in s.question for s in samples)
    assert any("in ____ and" in s.question for s in samples)
    write_jsonl(samples, tmp_path / "s.jsonl")
    again = load_dataset(tmp_path / "s.jsonl")
    assert [s.question for s in again] == [s.question for s in samples]
    assert json.loads((tmp_path / "s.jsonl").read_text().splitlines()[0])["synthetic"] is True


def test_bootstrap_summary() -> None:
    s = summarize([1.0, 0.0, None, 1.0, 1.0])
    assert s["n"] == 4 and s["n_null"] == 1 and s["mean"] == 0.75
    assert 0.0 <= s["ci_low"] <= 0.75 <= s["ci_high"] <= 1.0
    assert summarize([1.0, 0.0, None, 1.0, 1.0]) == s  # seeded: the same CI every run
    assert summarize([None, None])["mean"] is None
    assert summarize([0.5])["ci_low"] == 0.5


def test_sample_accepts_extra_fields() -> None:
    s = Sample.model_validate({"question": "q", "kind": "supported", "label": 1})
    assert s.model_extra == {"kind": "supported", "label": 1}
