"""The HTML report (eval/report.py + eval/templates/report.html.j2): autoescaped, so document
text is shown, never run; self-contained; the same content for every part of the results."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

from eval.report import render_html, write_outputs
from eval.runner import METRICS

ATTACK = "<script>alert(1)</script>"


def metric(mean: float | None, n: int = 2) -> dict[str, Any]:
    if mean is None:
        return {"mean": None, "ci_low": None, "ci_high": None, "n": 0, "n_null": n}
    return {"mean": mean, "ci_low": mean - 0.1, "ci_high": mean + 0.1, "n": n, "n_null": 1}


def results() -> dict[str, Any]:
    """Results as the runner writes them, with every kind of sample the report shows."""
    metrics = {m: metric(None) for m in METRICS}
    metrics["faithfulness"] = metric(0.5)
    metrics["context_relevance"] = metric(0.75)
    samples = [
        {
            "key": "a",
            "question": "Which port does the relay use? <b>bold?</b>",
            "answer": f"It listens on 7341. {ATTACK}",
            "generated": True,
            "metrics": {"faithfulness": 0.5, "context_relevance": 0.75},
            "statements": [
                {
                    "text": "It listens on 7341.",
                    "supported": True,
                    "score": 0.93,
                    "evidence": "It listens on TCP port 7341 & more.",
                    "missing": [],
                },
                {
                    "text": ATTACK,
                    "supported": False,
                    "score": 0.02,
                    "evidence": "",
                    "missing": ["<script>", "alert(1)"],
                },
            ],
            "reference": "Port 7341 <i>only</i>.",
            "context_useful": [True, False],
            "contexts": [
                {"text": f"The relay listens on TCP port 7341. {ATTACK}", "source": "docs/<relay>.md"},
                {"text": "Snapshots are kept for 14 days.", "source": None},
            ],
        },
        {
            "key": "b",
            "question": "What is the moon made of?",
            "answer": "The documents do not contain the answer to this question.",
            "refused": True,
            "refusal_reason": "below min_score <0.30>",
            "metrics": {"faithfulness": None},
            "contexts": [],
        },
        {"key": "c", "question": "Broken row", "error": f"judge failed: {ATTACK}", "metrics": {}},
    ]
    return {
        "created": "2026-12-01T22:00:00+00:00",
        "config": {"dataset": "qa<1>.jsonl", "judge": "support"},
        "versions": {"python": "3.11"},
        "aggregates": {
            "n_samples": 3,
            "n_refused": 1,
            "n_errors": 1,
            "n_generated": 1,
            "metrics": metrics,
            "efficiency": {"retrieve_ms": {"mean": 3.5, "p50": 3.0, "p95": 6.0, "n": 2}},
        },
        "samples": samples,
        "baseline": {
            "path": "old/results.json",
            "comparison": {
                "faithfulness": {"mean": 0.5, "baseline": 0.4, "delta": 0.1, "ci_overlap": True},
                "context_relevance": {"mean": 0.75, "baseline": 0.8, "delta": -0.05, "ci_overlap": False},
            },
        },
    }


def test_document_text_is_escaped_never_markup() -> None:
    html = render_html(results())
    assert "<script" not in html
    # in a statement, a context and an error (an answer with statements is shown as those)
    assert html.count("&lt;script&gt;alert(1)&lt;/script&gt;") == 3
    assert "<b>bold?</b>" not in html and "&lt;b&gt;bold?&lt;/b&gt;" in html
    assert "<i>only</i>" not in html and "docs/&lt;relay&gt;.md" in html
    assert "&amp; more" in html and "qa&lt;1&gt;.jsonl" in html


def test_entities_render_once_not_double_escaped() -> None:
    html = render_html(results())
    assert "&amp;ndash;" not in html and "&amp;middot;" not in html
    assert "evidence: &ndash;" in html  # a statement without evidence shows a dash
    assert "0.400 &ndash; 0.600" in html  # the faithfulness CI


def test_the_report_has_every_part_and_is_self_contained() -> None:
    html = render_html(results())
    for part in ("Summary", "Efficiency", "Distributions", "Samples", "Configuration"):
        assert f"<h2>{part}</h2>" in html
    assert html.count("<details>") == 3 and html.count("<svg") == 2
    assert "badge ref'>refused" in html and "badge err'>error" in html and "+0.100" in html
    assert "class='num down'>-0.050" in html and "(within CI)" in html
    assert "stmt-bad" in html and "missing: &lt;script&gt;, alert(1)" in html
    assert "refusal reason: below min_score &lt;0.30&gt;" in html
    assert not re.search(r"""(?:src|href)\s*=|https?://|@import|url\(""", html)


def test_write_outputs_writes_the_rendered_report(tmp_path: Path) -> None:
    data = results()
    paths = write_outputs(tmp_path, copy.deepcopy(data))
    assert paths["html"].read_text(encoding="utf-8") == render_html(data)
