"""The three outputs: results.json (everything), results.csv (one row per sample) and report.html
(self-contained: inline CSS and SVG, no scripts, opens offline).

The HTML comes from the Jinja2 template eval/templates/report.html.j2 with autoescaping on:
questions, answers and contexts are document text, so they must be shown, never interpreted
(a context holding ``<script>`` stays text). This module only prepares plain values for it.
"""

from __future__ import annotations

import contextlib
import csv
import json
import platform
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from eval.robustness import originals
from eval.runner import METRICS

CSV_EFFICIENCY = (
    "retrieve_ms",
    "generate_ms",
    "prefill_ms",
    "decode_ms",
    "prompt_tokens",
    "completion_tokens",
)
CSV_FIELDS = (
    "id",
    "key",
    "variant",
    "question",
    "refused",
    "error",
    *METRICS,
    *CSV_EFFICIENCY,
    "unsupported_statements",
)
LABELS = {
    "faithfulness": "Faithfulness",
    "answer_relevance": "Answer relevance (embedding)",
    "answer_relevance_generated": "Answer relevance (generated questions)",
    "context_precision": "Context precision",
    "context_recall": "Context recall",
    "context_relevance": "Context relevance",
    "answer_correctness": "Answer correctness",
    "refusal_correctness": "Refusal correctness",
}


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in (
        "rag-service",
        "llama-cpp-python",
        "torch",
        "sentence-transformers",
        "transformers",
        "faiss-cpu",
        "numpy",
    ):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[dist] = metadata.version(dist)
    return out


def build_results(
    records: list[dict], aggregates: dict, config: dict, baseline: dict | None
) -> dict[str, Any]:
    results = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": config,
        "versions": versions(),
        "aggregates": aggregates,
        "samples": records,
    }
    if baseline is not None:
        results["baseline"] = {"path": baseline.get("_path"), "comparison": compare(aggregates, baseline)}
    return results


def compare(aggregates: dict, baseline: dict) -> dict[str, dict]:
    base = baseline.get("aggregates", {}).get("metrics", {})
    out = {}
    for m in aggregates["metrics"]:
        now, before = aggregates["metrics"][m].get("mean"), base.get(m, {}).get("mean")
        if now is None and before is None:
            continue
        delta = round(now - before, 4) if now is not None and before is not None else None
        # "overlap": the CIs overlap, so the change may be noise
        overlap = None
        b = base.get(m, {})
        a = aggregates["metrics"][m]
        if delta is not None and None not in (a.get("ci_low"), b.get("ci_low")):
            overlap = not (a["ci_low"] > b["ci_high"] or b["ci_low"] > a["ci_high"])
        out[m] = {"mean": now, "baseline": before, "delta": delta, "ci_overlap": overlap}
    return out


def write_outputs(out_dir: Path, results: dict) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": out_dir / "results.json",
        "csv": out_dir / "results.csv",
        "html": out_dir / "report.html",
    }
    paths["json"].write_text(json.dumps(results, indent=2, ensure_ascii=False), encoding="utf-8")
    write_csv(paths["csv"], results["samples"])
    paths["html"].write_text(render_html(results), encoding="utf-8")
    return paths


def write_csv(path: Path, records: list[dict]) -> None:
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        w.writeheader()
        for r in records:
            eff = r.get("efficiency") or {}
            row = {
                "id": r.get("id") or "",
                "key": r["key"],
                "variant": r.get("variant") or "",
                "question": r["question"],
                "refused": r.get("refused", False),
                "error": r.get("error") or "",
                **{m: ("" if r["metrics"].get(m) is None else r["metrics"][m]) for m in METRICS},
                **{k: eff.get(k, "") for k in CSV_EFFICIENCY},
                "unsupported_statements": " | ".join(
                    s["text"] for s in r.get("statements", []) if not s["supported"]
                ),
            }
            w.writerow(row)


# ---------------------------------------------------------------- HTML
TEMPLATE = "report.html.j2"
DASH = Markup("&ndash;")  # shown for a value that does not exist (not scored, no baseline)
HIST_BINS = 10
HIST_WIDTH, HIST_HEIGHT, HIST_PAD = 260, 120, 20
CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,sans-serif;margin:2em auto;max-width:1100px;
color:#222;padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0}
td,th{border:1px solid #ddd;padding:.3em .6em;text-align:left;vertical-align:top}
th{background:#f4f4f4}td.num{text-align:right;font-variant-numeric:tabular-nums}
.up{color:#16794a}.down{color:#b3261e}.muted{color:#777}
.hist{display:inline-block;margin:0 1em 1em 0;vertical-align:top}
details{border:1px solid #ddd;border-radius:4px;margin:.4em 0;padding:.3em .6em}
summary{cursor:pointer}
.badge{display:inline-block;border-radius:3px;padding:0 .4em;font-size:.85em;margin-left:.4em}
.ok{background:#d8f3e3}.bad{background:#fbdad7}.ref{background:#e6e6fa}.err{background:#ffe9b3}
.stmt-bad{background:#fbdad7}.stmt-ok{background:#eaf7ef}
.ctx{white-space:pre-wrap;font-size:.9em;background:#fafafa;padding:.4em;border-left:3px solid #ccc}
.missing{font-family:monospace;color:#b3261e}
"""


def _environment() -> Environment:
    """Autoescape everything (the template is HTML whatever its name); StrictUndefined makes a
    misspelt name in the template an error instead of an empty string."""
    env = Environment(
        loader=PackageLoader("eval", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        keep_trailing_newline=True,
    )
    env.filters["num"] = _num
    env.filters["signed"] = _signed
    return env


def render_html(results: dict) -> str:
    agg = results["aggregates"]
    comparison = (results.get("baseline") or {}).get("comparison", {})
    return (
        _environment()
        .get_template(TEMPLATE)
        .render(
            css=Markup(CSS),  # ours, constant
            created=results["created"],
            config=results["config"],
            agg=agg,
            baseline=results.get("baseline"),
            comparison=comparison,
            summary=_summary_rows(agg["metrics"], comparison),
            efficiency=agg.get("efficiency") or {},
            robustness=_robustness_rows(agg.get("robustness")),
            perturbations=(agg.get("robustness") or {}).get("perturbations", []),
            calibration=[_reliability_diagram(name, c) for name, c in (agg.get("calibration") or {}).items()],
            histograms=[
                _histogram(m, [r["metrics"].get(m) for r in originals(results["samples"])])
                for m, a in agg["metrics"].items()
                if a["n"]
            ],
            samples=[_sample(r) for r in sorted(results["samples"], key=_sort_key)],
            config_json=json.dumps({"config": results["config"], "versions": results["versions"]}, indent=2),
        )
    )


def _summary_rows(metrics: dict, comparison: dict) -> list[dict[str, Any]]:
    rows = []
    for m, a in metrics.items():
        if not a["n"] and m not in comparison:
            continue
        c = comparison.get(m, {})
        d = c.get("delta")
        rows.append(
            {
                "label": LABELS[m],
                **a,
                "baseline": c.get("baseline"),
                "delta": d,
                "trend": "" if d is None or d == 0 else ("up" if d > 0 else "down"),
                "ci_overlap": c.get("ci_overlap"),
            }
        )
    return rows


def _robustness_rows(robustness: dict | None) -> list[dict[str, Any]]:
    if not robustness:
        return []
    rows = []
    for m, r in robustness["metrics"].items():
        if r["original"]["n"]:
            rows.append(
                {
                    "label": LABELS[m],
                    "original": r["original"]["mean"],
                    "worst": r["worst_case"]["mean"],
                    "drop": r["drop"],
                    "by": [r["by_perturbation"][p]["mean"] for p in robustness["perturbations"]],
                }
            )
    return rows


CALIBRATION_TITLES = {
    "support": "Support probability against the faithfulness label",
    "refusal": "Support probability against answerability (refusals)",
}


def _reliability_diagram(name: str, c: dict) -> dict[str, Any]:
    """Points (mean predicted, observed rate) per non-empty bin over the diagonal, as SVG numbers."""
    size, pad = HIST_HEIGHT * 2, HIST_PAD
    span = size - 2 * pad

    def xy(p: float, q: float) -> tuple[str, str]:
        return f"{pad + p * span:.1f}", f"{size - pad - q * span:.1f}"

    points = []
    for b in c["bins"]:
        if b["n"]:
            x, y = xy(b["mean_probability"], b["observed_rate"])
            radius = f"{2 + 6 * (b['n'] / c['n']) ** 0.5:.1f}"
            points.append(
                {
                    "x": x,
                    "y": y,
                    "r": radius,
                    "n": b["n"],
                    "low": b["low"],
                    "high": b["high"],
                    "p": f"{b['mean_probability']:.2f}",
                    "rate": f"{b['observed_rate']:.2f}",
                }
            )
    x0, y0 = xy(0, 0)
    x1, y1 = xy(1, 1)
    return {
        "title": CALIBRATION_TITLES.get(name, name),
        "n": c["n"],
        "ece": c["ece"],
        "size": size,
        "points": points,
        "diag": {"x0": x0, "y0": y0, "x1": x1, "y1": y1},
    }


def _histogram(metric: str, values: list[float | None]) -> dict[str, Any]:
    """Bar geometry for a 0..1 histogram, as strings with the precision the SVG needs."""
    vals = [v for v in values if v is not None]
    counts = [0] * HIST_BINS
    for v in vals:
        counts[min(int(v * HIST_BINS), HIST_BINS - 1)] += 1
    top = max(counts) or 1
    bw = (HIST_WIDTH - 2 * HIST_PAD) / HIST_BINS
    bars = []
    for i, c in enumerate(counts):
        bh = (HIST_HEIGHT - 2 * HIST_PAD) * c / top
        x, y = HIST_PAD + i * bw, HIST_HEIGHT - HIST_PAD - bh
        bars.append(
            {
                "x": f"{x:.1f}",
                "y": f"{y:.1f}",
                "width": f"{bw - 2:.1f}",
                "height": f"{bh:.1f}",
                "low": f"{i / HIST_BINS:.1f}",
                "high": f"{(i + 1) / HIST_BINS:.1f}",
                "count": c,
                "label_x": f"{x + bw / 2 - 1:.1f}",
                "label_y": f"{y - 3:.1f}",
            }
        )
    return {
        "label": LABELS[metric],
        "n": len(vals),
        "bars": bars,
        "width": HIST_WIDTH,
        "height": HIST_HEIGHT,
        "pad": HIST_PAD,
        "base": HIST_HEIGHT - HIST_PAD,
    }


def _sort_key(r: dict) -> tuple:
    f = r.get("metrics", {}).get("faithfulness")
    return (0 if r.get("error") else 1, 2 if f is None else 1, f if f is not None else 0.0)


def _sample(r: dict) -> dict[str, Any]:
    """One sample's values for the template; the text in it is escaped there."""
    m = r.get("metrics", {})
    useful = r.get("context_useful") or []
    contexts = r.get("contexts") or []
    return {
        "question": r["question"],
        "variant": r.get("variant") if r.get("variant") not in (None, "original") else None,
        "refused": bool(r.get("refused")),
        "error": r.get("error"),
        "faithfulness": m.get("faithfulness"),
        "scores": ", ".join(
            f"{LABELS[k].lower()} {v:.2f}" for k, v in m.items() if v is not None and k != "faithfulness"
        ),
        "generated": bool(r.get("generated")),
        "statements": r.get("statements") or [],
        "answer": r.get("answer"),
        "refusal_reason": r.get("refusal_reason"),
        "reference": r.get("reference"),
        "contexts": [
            {"text": c["text"], "source": c.get("source"), "useful": useful[i] if i < len(useful) else None}
            for i, c in enumerate(contexts)
        ],
    }


def _num(v: float | None) -> str:
    return DASH if v is None else f"{v:.3f}"


def _signed(v: float | None) -> str:
    return DASH if v is None else f"{v:+.3f}"


# ---------------------------------------------------------------- comparing runs
COMPARE_TEMPLATE = "compare.html.j2"


def write_comparison(out_dir: Path, result: dict) -> dict[str, Path]:
    """compare.json and compare.html (eval/compare.py's result) in out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "compare.json", "html": out_dir / "compare.html"}
    paths["json"].write_text(json.dumps(result, indent=2, ensure_ascii=False), encoding="utf-8")
    paths["html"].write_text(render_comparison(result), encoding="utf-8")
    return paths


def render_comparison(result: dict) -> str:
    rows = []
    for c in result["comparisons"]:
        for m, v in c["metrics"].items():
            if v["n"]:
                rows.append({"run": c["run"], "baseline": c["baseline"], "label": LABELS[m], **v})
    return (
        _environment()
        .get_template(COMPARE_TEMPLATE)
        .render(
            css=Markup(CSS),
            created=datetime.now(UTC).isoformat(timespec="seconds"),
            runs=result["runs"],
            rows=rows,
            win_rate=result["win_rate"],
            means=[
                {"label": LABELS[m], "cells": [result["means"][m][r] for r in result["runs"]]}
                for m in result["metrics"]
            ],
        )
    )
