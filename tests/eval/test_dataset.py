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
    # issue 17: at least 150 hand-written items, 50 with one wrong detail, 30 with a changed relation
    assert len(rows) >= 150
    kinds = [r.model_extra["kind"] for r in rows]
    assert kinds.count("one_wrong_detail") >= 50 and kinds.count("changed_relation") >= 30
    assert set(kinds) == {"supported", "one_wrong_detail", "changed_relation", "unsupported"}
    assert all((r.model_extra["label"] == 1) == (k == "supported") for r, k in zip(rows, kinds, strict=True))


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


# ---------------------------------------------------------------- RAGAS's column names
RAGAS_ROW = {
    "user_input": "Which port does zephyr-relay listen on?",
    "response": "It listens on TCP port 7341.",
    "retrieved_contexts": ["It listens on TCP port 7341."],
    "reference": "TCP port 7341.",
    "reference_contexts": ["The relay listens on TCP port 7341."],
}


def test_ragas_jsonl_rows_map_to_ours(tmp_path: Path) -> None:
    p = tmp_path / "r.jsonl"
    ours = {"question": "q2", "answer": "a2", "contexts": ["c2"]}
    p.write_text(json.dumps(RAGAS_ROW) + "\n" + json.dumps(ours) + "\n")
    a, b = load_dataset(p)
    assert (a.question, a.answer, a.contexts, a.reference) == (
        RAGAS_ROW["user_input"],
        RAGAS_ROW["response"],
        RAGAS_ROW["retrieved_contexts"],
        RAGAS_ROW["reference"],
    )
    assert a.model_extra == {"reference_contexts": RAGAS_ROW["reference_contexts"]}
    assert (b.question, b.answer, b.contexts) == ("q2", "a2", ["c2"])


def test_ragas_csv(tmp_path: Path) -> None:
    p = tmp_path / "r.csv"
    p.write_text('user_input,response,retrieved_contexts,reference\nq1,a1,"[""x"", ""y""]",ref\nq2,,,\n')
    a, b = load_dataset(p)
    assert (a.question, a.answer, a.contexts, a.reference) == ("q1", "a1", ["x", "y"], "ref")
    assert (b.question, b.answer, b.contexts, b.reference) == ("q2", None, None, None)


def test_ragas_errors_name_the_column_as_written(tmp_path: Path) -> None:
    p = tmp_path / "r.csv"
    p.write_text("user_input,retrieved_contexts\nq1,not json\n")
    with pytest.raises(DatasetError, match=r"r.csv:2: retrieved_contexts: .*JSON list"):
        load_dataset(p)
    p.write_text("response\na1\n")
    with pytest.raises(DatasetError, match=r"CSV header must include 'question' or RAGAS's 'user_input'"):
        load_dataset(p)


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [("question", "user_input"), ("answer", "response"), ("contexts", "retrieved_contexts")],
)
def test_one_field_under_both_names_is_refused(tmp_path: Path, ours: str, theirs: str) -> None:
    p = tmp_path / "r.jsonl"
    row = (
        {"question": "q", "user_input": "q"}
        if ours == "question"
        else {"question": "q", ours: "x", theirs: "x"}
    )
    p.write_text(json.dumps({"question": "fine"}) + "\n" + json.dumps(row) + "\n")
    with pytest.raises(DatasetError, match=rf"r.jsonl:2: both '{ours}' and '{theirs}' \(RAGAS's name"):
        load_dataset(p)


def test_write_ragas_columns_and_round_trip(tmp_path: Path) -> None:
    samples = [
        Sample(question="q1", answer="a1", contexts=["c1", "c2"], reference="r1", answerable=True, id="s1"),
        Sample(question="q2", answerable=False, kind="off_topic"),
        Sample(question="q3", synthetic=True, reference="r3"),
    ]
    write_jsonl(samples, tmp_path / "ours.jsonl")
    ours = load_dataset(tmp_path / "ours.jsonl")
    write_jsonl(ours, tmp_path / "ragas.jsonl", columns="ragas")
    first = json.loads((tmp_path / "ragas.jsonl").read_text().splitlines()[0])
    assert first == {
        "user_input": "q1",
        "reference": "r1",
        "answerable": True,
        "response": "a1",
        "retrieved_contexts": ["c1", "c2"],
        "synthetic": False,
        "id": "s1",
    }
    assert load_dataset(tmp_path / "ragas.jsonl") == ours == samples
    write_jsonl(load_dataset(tmp_path / "ragas.jsonl"), tmp_path / "again.jsonl")
    assert (tmp_path / "again.jsonl").read_text() == (tmp_path / "ours.jsonl").read_text()


def test_write_jsonl_takes_rows_and_checks_columns(tmp_path: Path) -> None:
    write_jsonl([RAGAS_ROW, {"question": "q", "answer": "a"}], tmp_path / "r.jsonl", columns="ragas")
    lines = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert lines[0] == RAGAS_ROW | {"synthetic": False}
    assert lines[1] == {"user_input": "q", "response": "a", "synthetic": False}
    with pytest.raises(DatasetError, match="unknown columns 'haystack'; use 'ours' or 'ragas'"):
        write_jsonl([], tmp_path / "x.jsonl", columns="haystack")  # type: ignore[arg-type]
    with pytest.raises(DatasetError, match="sample 1: extra field 'response' is RAGAS's name for 'answer'"):
        write_jsonl([Sample(question="q", response="a")], tmp_path / "x.jsonl", columns="ragas")
    assert not (tmp_path / "x.jsonl").exists()
