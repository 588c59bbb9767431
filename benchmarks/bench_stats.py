"""The statistics of the benchmark comparisons: bootstrap CIs of medians, median ratios of
paired rounds, coefficients of variation (standard library only: runs on a bare GPU host)."""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


def bootstrap_median_ci(
    values: Sequence[float], *, n_boot: int, level: float, seed: int
) -> tuple[float, float]:
    """Percentile bootstrap CI of the median (resampling the values with replacement)."""
    vals = [float(v) for v in values if math.isfinite(v)]
    if not vals:
        return math.nan, math.nan
    if len(vals) == 1:
        return vals[0], vals[0]
    rng = random.Random(seed)
    medians = sorted(statistics.median(rng.choices(vals, k=len(vals))) for _ in range(n_boot))
    lo_i = math.floor((1 - level) / 2 * (n_boot - 1))
    hi_i = math.ceil((1 + level) / 2 * (n_boot - 1))
    return medians[lo_i], medians[hi_i]


@dataclass(frozen=True)
class RatioSummary:
    """Median of per-round ratios with its bootstrap CI."""

    median: float
    ci_low: float
    ci_high: float
    n: int

    def to_dict(self) -> dict[str, Any]:
        return {"median": self.median, "ci_low": self.ci_low, "ci_high": self.ci_high, "n": self.n}


def median_ratio(
    numerators: Sequence[float],
    denominators: Sequence[float],
    *,
    n_boot: int,
    level: float,
    seed: int,
) -> RatioSummary:
    """Per-round ratios num/den (paired rounds), their median and a bootstrap CI of the median."""
    ratios = [
        n / d
        for n, d in zip(numerators, denominators, strict=True)
        if d and math.isfinite(n) and math.isfinite(d)
    ]
    if not ratios:
        return RatioSummary(math.nan, math.nan, math.nan, 0)
    lo, hi = bootstrap_median_ci(ratios, n_boot=n_boot, level=level, seed=seed)
    return RatioSummary(statistics.median(ratios), lo, hi, len(ratios))


def cv(values: Sequence[float]) -> float:
    """Coefficient of variation (sample stdev / mean); NaN with fewer than two finite values."""
    vals = [float(v) for v in values if math.isfinite(v)]
    if len(vals) < 2 or statistics.fmean(vals) == 0:
        return math.nan
    return statistics.stdev(vals) / statistics.fmean(vals)


__all__ = ["RatioSummary", "bootstrap_median_ci", "cv", "median_ratio"]
