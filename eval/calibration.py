"""Does a probability mean what it says? Reliability bins and expected calibration error (ECE).

Used for the judge's support probability (P(supported) against a label) and for refusals (the
answer path's confidence that an answer is grounded against whether the question was
answerable). ECE is the bin-size-weighted mean gap between the mean predicted probability and
the observed frequency in equal-width bins, as in Guo et al. 2017 and HELM's calibration metric.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

DEFAULT_BINS = 10


@dataclass(frozen=True)
class ReliabilityBin:
    low: float
    high: float
    n: int
    mean_probability: float | None  # None for an empty bin
    observed_rate: float | None

    def as_dict(self) -> dict:
        return asdict(self)


def reliability(
    probabilities: Sequence[float], outcomes: Sequence[bool | int], bins: int = DEFAULT_BINS
) -> list[ReliabilityBin]:
    """Equal-width bins over [0, 1]; a probability of exactly 1.0 falls in the last bin."""
    if len(probabilities) != len(outcomes):
        raise ValueError("probabilities and outcomes differ in length")
    members: list[list[tuple[float, float]]] = [[] for _ in range(bins)]
    for p, y in zip(probabilities, outcomes, strict=True):
        members[min(int(p * bins), bins - 1)].append((float(p), float(bool(y))))
    out = []
    for i, m in enumerate(members):
        mean_p = sum(p for p, _ in m) / len(m) if m else None
        rate = sum(y for _, y in m) / len(m) if m else None
        out.append(ReliabilityBin(i / bins, (i + 1) / bins, len(m), mean_p, rate))
    return out


def expected_calibration_error(
    probabilities: Sequence[float], outcomes: Sequence[bool | int], bins: int = DEFAULT_BINS
) -> float | None:
    """Sum over bins of (bin share) * |mean probability - observed rate|; None without data."""
    table = reliability(probabilities, outcomes, bins)
    total = sum(b.n for b in table)
    if not total:
        return None
    return sum(
        b.n / total * abs(b.mean_probability - b.observed_rate)
        for b in table
        if b.n and b.mean_probability is not None and b.observed_rate is not None
    )
