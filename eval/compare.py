"""Compare evaluation runs question by question: is run B better or worse than run A, and is the
difference more than the noise of which questions happened to be asked?

For each metric and each run after the first (the baseline), over the questions both runs scored:
- the mean of the per-question differences, with a 95 % *paired* bootstrap confidence interval
  (questions are resampled, each keeping its two scores), and ``significant`` when the interval
  excludes 0. Pairing is what makes a small real change visible: the spread between easy and hard
  questions cancels out of the differences;
- wins, losses and ties per question;
- HELM's mean win rate: per metric, the share of the other runs whose mean a run beats (a tie
  counts a half), averaged over metrics.

Every metric here is better when higher. Only unperturbed questions are compared (a run's
robustness is in its own report).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from eval.robustness import originals
from rag.errors import RagError

RESAMPLES = 2000
SEED = 0
TIE = 1e-9


class CompareError(RagError):
    """A run folder cannot be compared; the message names it."""


def load_run(path: Path) -> dict[str, Any]:
    """A run's results.json, from the run folder or the file itself."""
    file = path / "results.json" if path.is_dir() else path
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CompareError(
            f"{path}: no readable results.json ({exc}); run `rag eval` into it first"
        ) from None
    if "samples" not in data or "aggregates" not in data:
        raise CompareError(f"{file}: not a results.json written by `rag eval`")
    data["_name"] = path.name if path.is_dir() else path.parent.name
    return data


def compare_runs(runs: Sequence[dict[str, Any]], metrics: Sequence[str]) -> dict[str, Any]:
    if len(runs) < 2:
        raise CompareError("compare needs at least two runs: the baseline first, then the others")
    names = _unique_names(runs)
    values = [_per_question(run, metrics) for run in runs]
    base = values[0]
    comparisons = []
    for name, other in zip(names[1:], values[1:], strict=True):
        comparisons.append(
            {
                "run": name,
                "baseline": names[0],
                "metrics": {m: paired(base.get(m, {}), other.get(m, {})) for m in metrics},
            }
        )
    means = {m: [_mean(v.get(m, {})) for v in values] for m in metrics}
    return {
        "runs": names,
        "metrics": list(metrics),
        "comparisons": comparisons,
        "means": {m: dict(zip(names, ms, strict=True)) for m, ms in means.items()},
        "win_rate": dict(zip(names, mean_win_rate(list(means.values())), strict=True)),
    }


def paired(a: dict[str, float], b: dict[str, float]) -> dict[str, Any]:
    """B minus A over the questions both scored, with a paired bootstrap 95 % interval."""
    keys = sorted(set(a) & set(b))
    out: dict[str, Any] = {
        "n": len(keys),
        "mean_a": None,
        "mean_b": None,
        "delta": None,
        "ci_low": None,
        "ci_high": None,
        "significant": False,
        "wins": 0,
        "losses": 0,
        "ties": 0,
        "questions": [],
    }
    if not keys:
        return out
    x = np.array([a[k] for k in keys])
    y = np.array([b[k] for k in keys])
    d = y - x
    rng = np.random.default_rng(SEED)
    means = d[rng.integers(0, len(d), size=(RESAMPLES, len(d)))].mean(axis=1)
    low, high = (float(v) for v in np.percentile(means, [2.5, 97.5]))
    out.update(
        mean_a=round(float(x.mean()), 4),
        mean_b=round(float(y.mean()), 4),
        delta=round(float(d.mean()), 4),
        ci_low=round(low, 4),
        ci_high=round(high, 4),
        significant=len(d) > 1 and (low > 0 or high < 0),
        wins=int((d > TIE).sum()),
        losses=int((d < -TIE).sum()),
        ties=int((abs(d) <= TIE).sum()),
        questions=[
            {"key": k, "a": float(x[i]), "b": float(y[i])} for i, k in enumerate(keys) if abs(d[i]) > TIE
        ],
    )
    return out


def mean_win_rate(means_per_metric: Sequence[Sequence[float | None]]) -> list[float | None]:
    """HELM's summary: per metric, the share of other runs a run beats on the mean (tie = 1/2),
    averaged over the metrics where the run has a mean."""
    n_runs = len(means_per_metric[0]) if means_per_metric else 0
    rates: list[list[float]] = [[] for _ in range(n_runs)]
    for means in means_per_metric:
        present = [i for i, m in enumerate(means) if m is not None]
        if len(present) < 2:
            continue
        for i in present:
            others = [means[j] for j in present if j != i]
            score = sum(
                1.0 if means[i] > o + TIE else 0.5 if abs(means[i] - o) <= TIE else 0.0 for o in others
            )
            rates[i].append(score / len(others))
    return [round(sum(r) / len(r), 4) if r else None for r in rates]


def regressions(result: dict[str, Any]) -> list[str]:
    """Significant drops against the baseline, one line each (for --fail-on-regression)."""
    out = []
    for c in result["comparisons"]:
        for m, v in c["metrics"].items():
            if v["significant"] and v["delta"] < 0:
                out.append(
                    f"{c['run']}: {m} fell by {-v['delta']:.3f} against {c['baseline']} "
                    f"(95 % CI {v['ci_low']:.3f} to {v['ci_high']:.3f}, n={v['n']})"
                )
    return out


def _per_question(run: dict[str, Any], metrics: Sequence[str]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {m: {} for m in metrics}
    for r in originals(run["samples"]):
        key = r.get("id") or r["key"]
        for m in metrics:
            v = r.get("metrics", {}).get(m)
            if v is not None:
                out[m][key] = float(v)
    return out


def _mean(values: dict[str, float]) -> float | None:
    return round(sum(values.values()) / len(values), 4) if values else None


def _unique_names(runs: Sequence[dict[str, Any]]) -> list[str]:
    names: list[str] = []
    for run in runs:
        name = run.get("_name") or "run"
        names.append(name if name not in names else f"{name}-{len(names) + 1}")
    return names
