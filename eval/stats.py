"""Aggregates: mean with a seeded 95 % bootstrap confidence interval, skipping nulls."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0


def summarize(
    values: Sequence[float | None], resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED
) -> dict:
    """{mean, ci_low, ci_high, n, n_null}; mean and CI are None when no value is present."""
    present = np.asarray([v for v in values if v is not None], dtype=float)
    out: dict = {"n": int(present.size), "n_null": len(values) - int(present.size)}
    if present.size == 0:
        return {**out, "mean": None, "ci_low": None, "ci_high": None}
    mean = float(present.mean())
    if present.size == 1:
        low = high = mean
    else:
        rng = np.random.default_rng(seed)
        idx = rng.integers(0, present.size, size=(resamples, present.size))
        means = present[idx].mean(axis=1)
        low, high = (float(x) for x in np.percentile(means, [2.5, 97.5]))
    return {**out, "mean": round(mean, 4), "ci_low": round(low, 4), "ci_high": round(high, 4)}


def percentile(values: Sequence[float | None], q: float) -> float | None:
    present = [v for v in values if v is not None]
    return round(float(np.percentile(present, q)), 1) if present else None
