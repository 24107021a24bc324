"""The three outputs: results.json (everything), results.csv (one row per sample) and report.html
(self-contained: inline CSS and SVG, no scripts, opens offline)."""

from __future__ import annotations

import contextlib
import csv
import html
import json
import platform
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from eval.runner import METRICS

CSV_FIELDS = (
    "id",
    "key",
    "question",
    "refused",
    "error",
    *METRICS,
    "retrieve_ms",
    "generate_ms",
    "prompt_tokens",
    "completion_tokens",
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
    for dist in ("rag-service", "torch", "sentence-transformers", "transformers", "faiss-cpu", "numpy"):
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
    for m in METRICS:
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
                "question": r["question"],
                "refused": r.get("refused", False),
                "error": r.get("error") or "",
                **{m: ("" if r["metrics"].get(m) is None else r["metrics"][m]) for m in METRICS},
                **{
                    k: eff.get(k, "")
                    for k in ("retrieve_ms", "generate_ms", "prompt_tokens", "completion_tokens")
                },
                "unsupported_statements": " | ".join(
                    s["text"] for s in r.get("statements", []) if not s["supported"]
                ),
            }
            w.writerow(row)


# ---------------------------------------------------------------- HTML
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


def render_html(results: dict) -> str:
    agg = results["aggregates"]
    cfg = results["config"]
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        "<title>RAG evaluation report</title><style>",
        CSS,
        "</style></head><body>",
        "<h1>RAG evaluation report</h1>",
        f"<p class=muted>{_e(results['created'])} &middot; "
        f"data set <code>{_e(cfg.get('dataset'))}</code> &middot; judge <b>{_e(cfg.get('judge'))}</b>"
        f" &middot; {agg['n_samples']} samples, {agg['n_refused']} refused, "
        f"{agg['n_errors']} with errors, {agg['n_generated']} answered by the pipeline</p>",
        _summary_table(results),
        _efficiency_table(agg),
        "<h2>Distributions</h2>",
        *[
            _histogram(m, [r["metrics"].get(m) for r in results["samples"]])
            for m in METRICS
            if agg["metrics"][m]["n"]
        ],
        "<h2>Samples</h2><p class=muted>Lowest faithfulness first; unsupported statements are "
        "highlighted in red, "
        "with the terms the contexts lack.</p>",
        *[_sample(r) for r in sorted(results["samples"], key=_sort_key)],
        "<h2>Configuration</h2><pre>",
        _e(json.dumps({"config": cfg, "versions": results["versions"]}, indent=2)),
        "</pre>",
        "</body></html>",
    ]
    return "".join(parts)


def _summary_table(results: dict) -> str:
    agg = results["aggregates"]["metrics"]
    comparison = (results.get("baseline") or {}).get("comparison", {})
    head = "<tr><th>metric</th><th>mean</th><th>95 % CI</th><th>n</th><th>not scored</th>"
    if comparison:
        head += "<th>baseline</th><th>change</th>"
    rows = [head + "</tr>"]
    for m in METRICS:
        a = agg[m]
        if not a["n"] and m not in comparison:
            continue
        ci = f"{a['ci_low']:.3f} &ndash; {a['ci_high']:.3f}" if a["mean"] is not None else "&ndash;"
        row = (
            f"<tr><td>{LABELS[m]}</td><td class=num>{_f(a['mean'])}</td><td class=num>{ci}</td>"
            f"<td class=num>{a['n']}</td><td class=num>{a['n_null']}</td>"
        )
        if comparison:
            c = comparison.get(m, {})
            d = c.get("delta")
            cls = "" if d is None or d == 0 else ("up" if d > 0 else "down")
            note = " <span class=muted>(within CI)</span>" if c.get("ci_overlap") else ""
            row += f"<td class=num>{_f(c.get('baseline'))}</td><td class='num {cls}'>{_signed(d)}{note}</td>"
        rows.append(row + "</tr>")
    base = results.get("baseline")
    caption = f"<p class=muted>Compared with <code>{_e(base.get('path'))}</code></p>" if base else ""
    return "<h2>Summary</h2>" + caption + "<table>" + "".join(rows) + "</table>"


def _efficiency_table(agg: dict) -> str:
    eff = agg.get("efficiency") or {}
    if not eff:
        return ""
    rows = ["<tr><th>efficiency</th><th>mean</th><th>p50</th><th>p95</th><th>n</th></tr>"]
    for k, v in eff.items():
        rows.append(
            f"<tr><td>{_e(k)}</td><td class=num>{v['mean']}</td><td class=num>{v['p50']}</td>"
            f"<td class=num>{v['p95']}</td><td class=num>{v['n']}</td></tr>"
        )
    return "<h2>Efficiency</h2><table>" + "".join(rows) + "</table>"


def _histogram(metric: str, values: list[float | None], bins: int = 10) -> str:
    vals = [v for v in values if v is not None]
    counts = [0] * bins
    for v in vals:
        counts[min(int(v * bins), bins - 1)] += 1
    w, h, pad = 260, 120, 20
    top = max(counts) or 1
    bw = (w - 2 * pad) / bins
    bars = []
    for i, c in enumerate(counts):
        bh = (h - 2 * pad) * c / top
        x, y = pad + i * bw, h - pad - bh
        bars.append(
            f"<rect x='{x:.1f}' y='{y:.1f}' width='{bw - 2:.1f}' height='{bh:.1f}' fill='#4a7fb5'>"
            f"<title>{i / bins:.1f}&ndash;{(i + 1) / bins:.1f}: {c}</title></rect>"
        )
        if c:
            bars.append(
                f"<text x='{x + bw / 2 - 1:.1f}' y='{y - 3:.1f}' font-size='9' "
                f"text-anchor='middle'>{c}</text>"
            )
    axis = (
        f"<line x1='{pad}' y1='{h - pad}' x2='{w - pad}' y2='{h - pad}' stroke='#999'/>"
        f"<text x='{pad}' y='{h - 5}' font-size='10'>0</text>"
        f"<text x='{w - pad}' y='{h - 5}' font-size='10' text-anchor='end'>1</text>"
    )
    return (
        f"<div class=hist><div><b>{LABELS[metric]}</b> <span class=muted>(n={len(vals)})</span></div>"
        f"<svg width='{w}' height='{h}' role='img' aria-label='{LABELS[metric]} histogram'>"
        f"{''.join(bars)}{axis}</svg></div>"
    )


def _sort_key(r: dict) -> tuple:
    f = r.get("metrics", {}).get("faithfulness")
    return (0 if r.get("error") else 1, 2 if f is None else 1, f if f is not None else 0.0)


def _sample(r: dict) -> str:
    m = r.get("metrics", {})
    badges = []
    if r.get("refused"):
        badges.append("<span class='badge ref'>refused</span>")
    if r.get("error"):
        badges.append("<span class='badge err'>error</span>")
    f = m.get("faithfulness")
    if f is not None:
        badges.append(f"<span class='badge {'ok' if f >= 0.999 else 'bad'}'>faithfulness {f:.2f}</span>")
    scores = ", ".join(
        f"{LABELS[k].lower()} {v:.2f}" for k, v in m.items() if v is not None and k != "faithfulness"
    )
    out = [f"<details><summary>{_e(r['question'])}{''.join(badges)}</summary>"]
    if r.get("error"):
        out.append(f"<p><b>Not scored:</b> {_e(r['error'])}</p>")
    out.append(f"<p class=muted>{_e(scores)}</p>")
    out.append(f"<p><b>Answer</b>{' (generated by the pipeline)' if r.get('generated') else ''}:</p>")
    if r.get("statements"):
        out.append("<ul>")
        for s in r["statements"]:
            cls = "stmt-ok" if s["supported"] else "stmt-bad"
            extra = ""
            if not s["supported"] and s.get("missing"):
                extra = " <span class=missing>missing: " + _e(", ".join(s["missing"][:8])) + "</span>"
            ev = f"<br><span class=muted>evidence: {_e(s.get('evidence') or '&ndash;')}</span>"
            out.append(
                f"<li class={cls}>{_e(s['text'])} "
                f"<span class=muted>(p={s['score']:.2f})</span>{extra}{ev}</li>"
            )
        out.append("</ul>")
    else:
        out.append(f"<p>{_e(r.get('answer') or '')}</p>")
        if r.get("refused") and r.get("refusal_reason"):
            out.append(f"<p class=muted>refusal reason: {_e(r['refusal_reason'])}</p>")
    if r.get("reference"):
        out.append(f"<p><b>Reference:</b> {_e(r['reference'])}</p>")
    useful = r.get("context_useful") or []
    for i, c in enumerate(r.get("contexts") or []):
        tag = ""
        if i < len(useful):
            tag = (
                " <span class='badge ok'>useful</span>"
                if useful[i]
                else " <span class='badge bad'>not useful</span>"
            )
        src = f" <span class=muted>{_e(c.get('source'))}</span>" if c.get("source") else ""
        out.append(f"<div><b>[{i + 1}]</b>{src}{tag}<div class=ctx>{_e(c['text'])}</div></div>")
    out.append("</details>")
    return "".join(out)


def _e(v: Any) -> str:
    return html.escape("" if v is None else str(v))


def _f(v: float | None) -> str:
    return "&ndash;" if v is None else f"{v:.3f}"


def _signed(v: float | None) -> str:
    return "&ndash;" if v is None else f"{v:+.3f}"
