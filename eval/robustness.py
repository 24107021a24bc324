"""Robustness as HELM measures it: each question is also asked perturbed (eval/perturb.py), and a
question's robust score on a metric is its *worst* score across the original and its variants.
The report shows the drop from the original mean to that worst-case mean, per metric."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from eval.dataset import Sample, sample_key
from eval.perturb import perturbations
from eval.stats import summarize

ORIGINAL = "original"


def expand(samples: Sequence[Sample], names: Sequence[str], seed: int) -> list[Sample]:
    """Each sample, then its perturbed variants (a variant equal to the original or to an earlier
    variant is skipped). Variants carry ``variant`` and ``origin`` (the original's key); a given
    answer is kept, so with fixed answers only question-dependent metrics and retrieval move."""
    out: list[Sample] = []
    for s in samples:
        origin = sample_key(s.question, s.answer, s.contexts)
        out.append(s.model_copy(update={"variant": ORIGINAL, "origin": origin}))
        seen = {s.question}
        for name, question in perturbations(s.question, names, seed).items():
            if question in seen:
                continue
            seen.add(question)
            out.append(s.model_copy(update={"question": question, "variant": name, "origin": origin}))
    return out


def robustness(records: Iterable[dict[str, Any]], metrics: Sequence[str]) -> dict[str, Any] | None:
    """Per metric: the original mean, the worst-case mean over each question's variants, the drop,
    and each perturbation's own mean. None when no record is a perturbed variant."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault(r.get("origin") or r["key"], []).append(r)
    variants = sorted({r.get("variant") for g in groups.values() for r in g} - {ORIGINAL, None})
    if not variants:
        return None
    out: dict[str, Any] = {"perturbations": variants, "n_questions": len(groups), "metrics": {}}
    for m in metrics:
        original = [_value(r, m) for g in groups.values() for r in g if r.get("variant") == ORIGINAL]
        worst = [_worst(g, m) for g in groups.values()]
        per = {
            v: summarize([_value(r, m) for g in groups.values() for r in g if r.get("variant") == v])
            for v in variants
        }
        o, w = summarize(original), summarize(worst)
        drop = None if o["mean"] is None or w["mean"] is None else round(o["mean"] - w["mean"], 4)
        out["metrics"][m] = {"original": o, "worst_case": w, "drop": drop, "by_perturbation": per}
    return out


def originals(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records of the unperturbed questions (all records when none are perturbed)."""
    return [r for r in records if r.get("variant") in (None, ORIGINAL)]


def _value(record: dict[str, Any], metric: str) -> float | None:
    return record.get("metrics", {}).get(metric)


def _worst(group: list[dict[str, Any]], metric: str) -> float | None:
    values = [v for v in (_value(r, metric) for r in group) if v is not None]
    return min(values) if values else None
