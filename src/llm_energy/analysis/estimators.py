"""Small-sample estimators over *items*, one value (or Σ num, Σ den pair) per item. Σ/Σ ratios
are linearised (delta method) with HC2 variance ``Σ u_i² / (1 − h_i) / n²``, ``h_i = den_i / Σ den``,
and Kish's effective n − 1 df (why: docs/statistics.md, "Small samples, unequal items").
Positive quantities use the log scale (less skew, positive bounds). Where no honest interval
exists the estimate has NaN bounds and ``note = "not estimable: why"``, never a zero width.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import scipy  # scipy.special / scipy.stats load on first use: plots needs neither

#: fewer items than this give no interval (t with 1 df is 12.7 × the SE: not informative)
MIN_ITEMS = 3
#: relative spread under which items count as identical (floating-point noise)
IDENTICAL_RTOL = 1e-12


@dataclass(frozen=True)
class Estimate:
    """A point estimate over ``n`` items with its interval (``note`` says why there is none)."""

    value: float
    ci_low: float = math.nan
    ci_high: float = math.nan
    se: float = math.nan  # on the interval's scale (log for positive quantities)
    df: float = math.nan
    n: int = 0
    level: float = math.nan  # the interval's confidence level
    log_scale: bool = False
    note: str = ""

    @property
    def estimable(self) -> bool:
        return not self.note and math.isfinite(self.ci_low) and math.isfinite(self.ci_high)

    def t_stat(self, null: float = 0.0) -> float:
        """(estimate − null) / se on the interval's scale (for a log ratio, null 0 = no change)."""
        centre = math.log(self.value) if self.log_scale else self.value
        return (centre - null) / self.se if self.se > 0 else math.nan


def not_estimable(value: float, n: int, why: str, level: float) -> Estimate:
    return Estimate(value=value, n=n, level=level, note=f"not estimable: {why}")


def count_text(n: int, what: str) -> str:
    """ "1 item", "2 items", "1 paired item"."""
    return f"{n} {what.removesuffix('s') if n == 1 else what}"


def _t_interval(
    centre: float, se: float, df: float, level: float, *, log_scale: bool
) -> tuple[float, float]:
    half = float(scipy.special.stdtrit(df, 0.5 + level / 2.0)) * se  # what stats.t.ppf calls
    lo, hi = centre - half, centre + half
    return (math.exp(lo), math.exp(hi)) if log_scale else (lo, hi)


def linearized(
    value: float,
    influence: np.ndarray,
    *,
    level: float,
    log_scale: bool,
    what: str = "items",
    leverage: np.ndarray | None = None,
    weights: np.ndarray | None = None,
) -> Estimate:
    """An estimate whose error is about the mean of ``influence`` (one value per item, mean 0),
    with HC2 ``leverage`` and Kish's effective size of ``weights`` (module docstring)."""
    u = np.asarray(influence, dtype=float)
    n = int(u.size)
    if not math.isfinite(value):
        return not_estimable(value, n, "no finite estimate", level)
    if n < MIN_ITEMS:
        return not_estimable(
            value, n, f"{count_text(n, what)} (an interval needs ≥ {MIN_ITEMS})", level
        )
    h = np.full(n, 1.0 / n) if leverage is None else np.minimum(leverage, 1.0 - 1e-9)
    se = math.sqrt(float((u**2 / (1.0 - h)).sum())) / n
    scale = abs(math.log(value)) + 1.0 if log_scale else abs(value) + 1.0
    if not math.isfinite(se) or se <= IDENTICAL_RTOL * scale:
        return not_estimable(value, n, f"every one of the {n} {what} gives the same value", level)
    w = np.abs(np.ones(n) if weights is None else np.asarray(weights, dtype=float))
    df = max(float(w.sum() ** 2 / (w**2).sum()) - 1.0, 1.0) if (w**2).sum() > 0 else n - 1.0
    centre = math.log(value) if log_scale else value
    lo, hi = _t_interval(centre, se, df, level, log_scale=log_scale)
    return Estimate(value, lo, hi, se, df, n, level, log_scale)


def _influence(num: np.ndarray, den: np.ndarray, ratio: float, log_scale: bool) -> np.ndarray:
    """Per-item influence of Σnum/Σden: (num − R·den)/mean(den), divided by R on the log scale."""
    u = (num - ratio * den) / den.mean()
    return u / ratio if log_scale else u


def ratio_estimate(
    num: np.ndarray, den: np.ndarray, *, level: float, what: str = "items"
) -> Estimate:
    """Σ num / Σ den over items (J/token: Σ energy / Σ tokens), delta-method t interval.

    Items with a non-finite part or a denominator ≤ 0 are left out (a zero-token answer has no
    J/token)."""
    num, den = np.asarray(num, dtype=float), np.asarray(den, dtype=float)
    use = np.isfinite(num) & np.isfinite(den) & (den > 0)
    num, den = num[use], den[use]
    n = int(use.sum())
    if n == 0:
        why = (
            "no item has a positive denominator (e.g. zero-token outputs)"
            if use.size
            else f"no {what}"
        )
        return not_estimable(math.nan, 0, why, level)
    ratio = float(num.sum() / den.sum())
    log_scale = bool(ratio > 0 and np.all(num > 0))
    return linearized(
        ratio,
        _influence(num, den, ratio, log_scale),
        level=level,
        log_scale=log_scale,
        what=what,
        leverage=den / den.sum(),
        weights=num if log_scale else den,
    )


def mean_estimate(values: np.ndarray, *, level: float, what: str = "items") -> Estimate:
    """Mean over items (one value each), t interval (log scale when every value is positive)."""
    v = np.asarray(values, dtype=float)
    return ratio_estimate(v, np.ones_like(v), level=level, what=what)


@dataclass(frozen=True)
class PairedRatio:
    """``R_a / R_b`` on the same items: the ratio with its interval and paired t test."""

    ratio: Estimate
    t: float = math.nan
    p_two_sided: float = math.nan
    p_lower: float = math.nan  # H1: ratio < 1 (a saving)
    p_higher: float = math.nan  # H1: ratio > 1

    @property
    def pct_change(self) -> float:
        return 100.0 * (self.ratio.value - 1.0)

    @classmethod
    def tested(cls, est: Estimate) -> PairedRatio:
        """The ratio with its t test of "no change" (log ratio 0) at the estimate's df."""
        if not est.estimable:
            return cls(est)
        t, df = est.t_stat(), est.df
        return cls(
            est,
            t=t,
            p_two_sided=float(2.0 * scipy.special.stdtr(df, -abs(t))),  # stats.t's sf and cdf
            p_lower=float(scipy.special.stdtr(df, t)),
            p_higher=float(scipy.special.stdtr(df, -t)),
        )


def paired_ratio(
    num_a: np.ndarray, den_a: np.ndarray, num_b: np.ndarray, den_b: np.ndarray, *, level: float
) -> PairedRatio:
    """``(Σ num_a / Σ den_a) / (Σ num_b / Σ den_b)`` over items measured under both a and b
    (row i is the same item), on the log scale, with a paired t test of "no change"."""
    arrays = [np.asarray(x, dtype=float) for x in (num_a, den_a, num_b, den_b)]
    use = np.logical_and.reduce([np.isfinite(x) & (x > 0) for x in arrays])
    na, da, nb, db = (x[use] for x in arrays)
    n = int(use.sum())
    if n == 0:
        return PairedRatio(not_estimable(math.nan, 0, "no item measured under both", level))
    ra, rb = float(na.sum() / da.sum()), float(nb.sum() / db.sum())
    u = _influence(na, da, ra, True) - _influence(nb, db, rb, True)
    est = linearized(
        ra / rb,
        u,
        level=level,
        log_scale=True,
        what="paired items",
        leverage=(da / da.sum() + db / db.sum()) / 2.0,
        weights=na / na.sum() + nb / nb.sum(),
    )
    return PairedRatio.tested(est)


def independent_ratio(
    num_a: np.ndarray, den_a: np.ndarray, num_b: np.ndarray, den_b: np.ndarray, *, level: float
) -> PairedRatio:
    """``(Σ num_a / Σ den_a) / (Σ num_b / Σ den_b)`` when a and b ran *different* items: the
    two log ratios' delta-method variances add, degrees of freedom by Welch–Satterthwaite."""
    a = ratio_estimate(num_a, den_a, level=level)
    b = ratio_estimate(num_b, den_b, level=level)
    value = a.value / b.value if b.value else math.nan
    for est in (a, b):
        if not est.estimable or not est.log_scale:
            why = est.note.removeprefix("not estimable: ") or "a non-positive value"
            return PairedRatio(not_estimable(value, a.n + b.n, why, level))
    se = math.hypot(a.se, b.se)
    df = se**4 / (a.se**4 / a.df + b.se**4 / b.df)
    lo, hi = _t_interval(math.log(value), se, df, level, log_scale=True)
    return PairedRatio.tested(Estimate(value, lo, hi, se, df, a.n + b.n, level, True))


def widen(est: Estimate, level: float) -> Estimate:
    """The same estimate with its interval at another level (e.g. Bonferroni-adjusted)."""
    if not est.estimable:
        return replace(est, level=level)
    centre = math.log(est.value) if est.log_scale else est.value
    lo, hi = _t_interval(centre, est.se, est.df, level, log_scale=est.log_scale)
    return replace(est, ci_low=lo, ci_high=hi, level=level)


def with_extra_se(est: Estimate, se_extra: float, df_extra: float) -> Estimate:
    """Add an independent error ``se_extra`` (in the estimate's units, e.g. the idle baseline's)
    in quadrature; degrees of freedom by Welch–Satterthwaite, at most the estimate's own. A NaN
    ``se_extra`` leaves the estimate as it is."""
    if not est.estimable or not math.isfinite(se_extra) or se_extra <= 0:
        return est
    # on the estimate's own scale (log: relative to the value); the df never exceed the
    # items' own, so adding an error can only widen the interval
    extra = se_extra / est.value if est.log_scale else se_extra
    se = math.hypot(est.se, extra)
    df = min(se**4 / (est.se**4 / est.df + extra**4 / max(df_extra, 1.0)), est.df)
    centre = math.log(est.value) if est.log_scale else est.value
    lo, hi = _t_interval(centre, se, df, est.level, log_scale=est.log_scale)
    return replace(est, ci_low=lo, ci_high=hi, se=se, df=df)


def median_estimate(values: np.ndarray, *, level: float, what: str = "items") -> Estimate:
    """Median over items with the distribution-free order-statistic interval: the order
    statistics ``scipy.stats.quantile_test(v, p=0.5).confidence_interval`` picks, found from the
    binomial CDF in scipy.special (scipy.stats alone costs aggregate 0.6 s to import; parity:
    tests/analysis/test_estimators.py). Five items cannot reach 95 %: their best interval is
    min–max at 1 − 2·0.5⁵ = 93.75 %, reported with that level (``level``)."""
    v = np.sort(np.asarray(values, dtype=float)[np.isfinite(values)])
    n = int(v.size)
    med = float(np.median(v)) if n else math.nan
    if n < MIN_ITEMS:
        return not_estimable(
            med, n, f"{count_text(n, what)} (an interval needs ≥ {MIN_ITEMS})", level
        )
    if np.ptp(v) <= IDENTICAL_RTOL * (abs(med) + 1.0):
        return not_estimable(med, n, f"every one of the {n} {what} gives the same value", level)
    tail, k = (1.0 - level) / 2.0, np.arange(n + 1)
    below = scipy.special.bdtr(k, n, 0.5) >= tail  # binom(n, ½).ppf(tail): first k with cdf ≥ tail
    above = scipy.special.bdtrc(k, n, 0.5) <= tail  # .isf(tail): first k with sf ≤ tail
    lo_i, hi_i = int(np.argmax(below)) - 1, int(np.argmax(above)) if above.any() else n
    if lo_i >= 0 and hi_i < n:
        return Estimate(med, float(v[lo_i]), float(v[hi_i]), n=n, level=level)
    achieved = 1.0 - 2.0 * 0.5**n
    return Estimate(med, float(v[0]), float(v[-1]), n=n, level=achieved)
