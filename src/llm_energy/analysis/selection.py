"""Recommending a frequency cap without a false claim anywhere in the study: with 4 caps in 3
strata there are 12 chances to see a saving that is not there, and the largest is the one a
reader remembers. The family-wise rule (non-inferior latency, Bonferroni-simultaneous energy
intervals over every comparison) is spelled out in docs/statistics.md, ``recommendation.csv``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import scipy

from llm_energy.analysis.estimators import Estimate, PairedRatio, widen

CI_METHOD = (
    "paired t on items (delta method), Bonferroni-simultaneous over every cap of every stratum"
)


@dataclass(frozen=True)
class CapComparison:
    """One cap of one stratum against that stratum's baseline, on the items both ran."""

    stratum: int
    freq_mhz: float
    energy: PairedRatio  # metric ratio cap / baseline
    latency: PairedRatio  # mean-latency ratio cap / baseline

    @property
    def in_family(self) -> bool:
        return self.energy.ratio.estimable


def upper_bound(ratio: Estimate, alpha: float) -> float:
    """One-sided upper ``1 − alpha`` bound of a log-scale ratio; NaN when not estimable."""
    if not ratio.estimable:
        return math.nan
    t_quantile = float(scipy.special.stdtrit(ratio.df, 1.0 - alpha))  # = stats.t.ppf
    return math.exp(math.log(ratio.value) + t_quantile * ratio.se)


@dataclass(frozen=True)
class CapVerdict:
    """What the family-wise rule says about one comparison."""

    comparison: CapComparison
    latency_upper: float  # one-sided upper bound of the latency ratio
    admitted: bool
    energy_simultaneous: Estimate  # the energy ratio with its simultaneous interval
    claimed: bool

    @property
    def saving_pct(self) -> float:
        return 100.0 * (1.0 - self.energy_simultaneous.value)

    @property
    def saving_ci(self) -> tuple[float, float]:
        est = self.energy_simultaneous
        return 100.0 * (1.0 - est.ci_high), 100.0 * (1.0 - est.ci_low)


def judge(
    comparisons: Sequence[CapComparison], *, alpha: float, latency_budget_pct: float
) -> tuple[list[CapVerdict], int]:
    """The family-wise verdict of every comparison, and the family size ``m``."""
    m = sum(c.in_family for c in comparisons)
    level = 1.0 - alpha / max(m, 1)
    limit = 1.0 + latency_budget_pct / 100.0
    verdicts = []
    for c in comparisons:
        lat_upper = upper_bound(c.latency.ratio, alpha)
        admitted = bool(math.isfinite(lat_upper) and lat_upper <= limit)
        sim = widen(c.energy.ratio, level)
        claimed = admitted and c.in_family and sim.ci_high < 1.0
        verdicts.append(CapVerdict(c, lat_upper, admitted, sim, bool(claimed)))
    return verdicts, m


def pick(verdicts: Sequence[CapVerdict]) -> CapVerdict | None:
    """A stratum's recommendation: the claimed cap with the lowest energy ratio, else the
    admitted one with the lowest ratio (no claim), else None."""
    for pool in ([v for v in verdicts if v.claimed], [v for v in verdicts if v.admitted]):
        finite = [v for v in pool if math.isfinite(v.energy_simultaneous.value)]
        if finite:
            return min(finite, key=lambda v: (v.energy_simultaneous.value, v.latency_upper))
    return None
