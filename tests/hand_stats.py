"""Hand-written reference formulas for the analysis tests; independent of src/llm_energy.

The analysis tests check llm_energy.analysis against these textbook computations (and against
statsmodels / scipy), so none of them may import from the package under test.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import statsmodels.formula.api as smf
from numpy.typing import ArrayLike
from scipy import stats


def kish_df(weights: ArrayLike) -> float:
    """Kish's effective number of items minus one, (Σ|w|)² / Σw² − 1, at least 1."""
    w = np.abs(np.asarray(weights, dtype=float))
    return max(w.sum() ** 2 / (w**2).sum() - 1.0, 1.0)


def hc2_se(u: np.ndarray, leverage: np.ndarray) -> float:
    """HC2 SE of the mean of the items' influence values u: sqrt(Σ u_i² / (1 − h_i)) / n."""
    return math.sqrt(float((u**2 / (1.0 - leverage)).sum())) / len(u)


def ratio_log_se(num: ArrayLike, den: ArrayLike) -> tuple[float, float, float]:
    """Σ num / Σ den over items, its delta-method SE on the log scale and its df: influence
    u = (num − R·den) / (mean(den) · R), HC2 SE with leverage h = den / Σ den, df = Kish's
    effective number of items by their numerators − 1."""
    num, den = np.asarray(num, dtype=float), np.asarray(den, dtype=float)
    r = num.sum() / den.sum()
    u = (num - r * den) / den.mean() / r
    return r, hc2_se(u, den / den.sum()), kish_df(num)


def paired_ratio_by_hand(
    num_a: ArrayLike, den_a: ArrayLike, num_b: ArrayLike, den_b: ArrayLike, level: float = 0.95
) -> dict[str, float]:
    """(Σnum_a/Σden_a) / (Σnum_b/Σden_b) over the same items, with its delta-method t interval
    and paired t test on the log scale: the items' influence values u = u_a − u_b, each ratio
    contributing (num − R·den) / (mean(den) · R); HC2 SE with leverage
    h = (den_a/Σden_a + den_b/Σden_b) / 2; df = Kish's effective number of items by
    w = num_a/Σnum_a + num_b/Σnum_b, minus one (n − 1 when the items are alike).

    Keys: ratio_a, ratio_b, ratio, log_ratio, se (of the log ratio), df, t, p_two_sided,
    p_lower, p_higher, ci_low, ci_high."""
    num_a, den_a, num_b, den_b = (np.asarray(x, dtype=float) for x in (num_a, den_a, num_b, den_b))
    ra, rb = num_a.sum() / den_a.sum(), num_b.sum() / den_b.sum()
    u = (num_a - ra * den_a) / den_a.mean() / ra - (num_b - rb * den_b) / den_b.mean() / rb
    se = hc2_se(u, (den_a / den_a.sum() + den_b / den_b.sum()) / 2)
    df = kish_df(num_a / num_a.sum() + num_b / num_b.sum())
    t = math.log(ra / rb) / se
    half = stats.t.ppf(0.5 + level / 2, df) * se
    return {
        "ratio_a": ra,
        "ratio_b": rb,
        "ratio": ra / rb,
        "log_ratio": math.log(ra / rb),
        "se": se,
        "df": df,
        "t": t,
        "p_two_sided": 2 * stats.t.sf(abs(t), df),
        "p_lower": stats.t.cdf(t, df),
        "p_higher": stats.t.sf(t, df),
        "ci_low": ra / rb * math.exp(-half),
        "ci_high": ra / rb * math.exp(half),
    }


def mixedlm_lr_on_logs(values: ArrayLike, level: ArrayLike, block: ArrayLike) -> float:
    """Likelihood-ratio statistic 2 (llf_full − llf_null) of the clock level in a random-intercept
    model (statsmodels MixedLM, ML fits, groups = block) of the log values, standardised so the
    test is scale-free: y ~ C(level) against y ~ 1."""
    data = pd.DataFrame(
        {
            "y": np.log(pd.to_numeric(pd.Series(values)).astype(float).to_numpy()),
            "level": np.asarray(level),
            "block": np.asarray(block),
        }
    )
    data["y"] = (data["y"] - data["y"].mean()) / data["y"].std()
    full = smf.mixedlm("y ~ C(level)", data, groups=data["block"]).fit(reml=False)
    null = smf.mixedlm("y ~ 1", data, groups=data["block"]).fit(reml=False)
    return 2 * (full.llf - null.llf)
