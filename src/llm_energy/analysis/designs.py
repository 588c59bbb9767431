"""Which omnibus test compares the frequency levels, and why (docs/statistics.md,
``frequency_effect.csv``). Complete blocks: repeated-measures ANOVA, since Friedman's rank test
cannot reach p < 0.05 with five items; Friedman / Wilcoxon only as a labelled fallback.
Independent groups: Welch when Levene (median-centred) rejects equal variances, Kruskal–Wallis
when Shapiro–Wilk rejects normality, else one-way ANOVA. ``test_reason`` says which and why.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
import scipy  # scipy.stats loads on first use (plots imports this module, runs no test)

TestChoice = Literal["auto", "anova", "welch_anova", "kruskal", "rm_anova", "friedman", "mixedlm"]
BLOCKED_TESTS = frozenset({"rm_anova", "friedman", "wilcoxon", "mixedlm"})


@dataclass(frozen=True)
class LevelSample:
    """One frequency level: per-item values and each value's item (block)."""

    level_mhz: float  # NaN = driver default clocks
    values: np.ndarray
    blocks: np.ndarray | None = None


def block_matrix(levels: list[LevelSample]) -> pd.DataFrame:
    """Blocks × levels table of per-block means (repetitions averaged); NaN where unmeasured."""
    frames = [
        pd.DataFrame({"block": lv.blocks, "level": i, "y": lv.values})
        for i, lv in enumerate(levels)
        if lv.blocks is not None
    ]
    if len(frames) < len(levels) or not frames:
        return pd.DataFrame()
    data = pd.concat(frames, ignore_index=True).dropna(subset=["block"])
    if data.empty:
        return pd.DataFrame()
    table = data.pivot_table(index="block", columns="level", values="y", aggfunc="mean")
    return table.reindex(columns=range(len(levels)))


def design_of(levels: list[LevelSample]) -> tuple[str, pd.DataFrame]:
    """``("blocked-complete" | "blocked-incomplete" | "independent", block matrix)``.

    Blocked needs at least two blocks that were measured at two or more levels."""
    matrix = block_matrix(levels)
    if matrix.empty:
        return "independent", matrix
    shared = matrix.notna().sum(axis=1) >= 2
    if shared.sum() < 2:
        return "independent", matrix
    if matrix.notna().all(axis=None):
        return "blocked-complete", matrix
    return "blocked-incomplete", matrix


def eta_squared(groups: list[np.ndarray]) -> float:
    """SS_between / SS_total of a one-way layout."""
    allv = np.concatenate(groups)
    grand = allv.mean()
    ss_total = float(((allv - grand) ** 2).sum())
    ss_between = float(sum(len(g) * (g.mean() - grand) ** 2 for g in groups))
    return ss_between / ss_total if ss_total > 0 else math.nan


def epsilon_squared(h_statistic: float, n_total: int) -> float:
    """Kruskal–Wallis ε² = H / ((n² − 1) / (n + 1)) = H / (n − 1) (Tomczak & Tomczak 2014)."""
    return float(h_statistic) / (n_total - 1) if n_total > 1 else math.nan


def kendalls_w(chi2: float, n_blocks: int, k: int) -> float:
    """Kendall's W = χ²_Friedman / (n (k − 1)): 0 = no agreement across blocks, 1 = perfect."""
    return float(chi2) / (n_blocks * (k - 1)) if n_blocks > 0 and k > 1 else math.nan


def matched_rank_biserial(diffs: np.ndarray) -> float:
    """Matched-pairs rank-biserial r = (R+ − R−) / (R+ + R−) over the non-zero differences."""
    d = diffs[np.isfinite(diffs) & (diffs != 0)]
    if d.size == 0:
        return math.nan
    ranks = scipy.stats.rankdata(np.abs(d))
    return float((ranks[d > 0].sum() - ranks[d < 0].sum()) / ranks.sum())


def _empty_result(levels: list[LevelSample]) -> dict[str, Any]:
    nan = "shapiro_min_p levene_p statistic df_between df_within p_value effect_size".split()
    return {
        **dict.fromkeys(nan, math.nan),
        **dict.fromkeys(("normal", "equal_var", "effect_size_kind", "significant")),
        **dict.fromkeys(("test_reason", "verdict", "note"), ""),
        "n_levels": len(levels),
        "n_total": int(sum(len(lv.values) for lv in levels)),
        "design": "independent",
        "n_blocks": 0,
        "test": "skipped",
    }


def _pretests(groups: list[np.ndarray], alpha: float) -> dict[str, Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        shapiro_ps = [
            float(scipy.stats.shapiro(g).pvalue) if len(g) >= 3 and np.ptp(g) > 0 else math.nan
            for g in groups
        ]
        levene_p = float(scipy.stats.levene(*groups, center="median").pvalue)
    finite = [p for p in shapiro_ps if np.isfinite(p)]
    return {
        # an untestable level (n < 3 or constant) counts as not normal
        "normal": all(np.isfinite(p) and p > alpha for p in shapiro_ps),
        "shapiro_min_p": min(finite) if finite else math.nan,
        "levene_p": levene_p,
        "equal_var": bool(np.isfinite(levene_p) and levene_p > alpha),
    }


def _independent(groups: list[np.ndarray], test: str) -> dict[str, Any]:
    n_total, k = int(sum(len(g) for g in groups)), len(groups)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if test == "anova":
            res = scipy.stats.f_oneway(*groups)
            return {
                "statistic": float(res.statistic),
                "p_value": float(res.pvalue),
                "df_between": k - 1,
                "df_within": n_total - k,
                "effect_size": eta_squared(groups),
                "effect_size_kind": "eta_squared",
            }
        if test == "welch_anova":
            from statsmodels.stats.oneway import anova_oneway

            welch = anova_oneway(groups, use_var="unequal", welch_correction=True)
            return {
                "statistic": float(welch.statistic),
                "p_value": float(welch.pvalue),
                "df_between": float(welch.df_num),
                "df_within": float(welch.df_denom),
                "effect_size": eta_squared(groups),
                "effect_size_kind": "eta_squared",
            }
        res = scipy.stats.kruskal(*groups)
        return {
            "statistic": float(res.statistic),
            "p_value": float(res.pvalue),
            "df_between": k - 1,
            "effect_size": epsilon_squared(float(res.statistic), n_total),
            "effect_size_kind": "epsilon_squared",
        }


def _friedman(matrix: pd.DataFrame) -> dict[str, Any]:
    data = matrix.dropna().to_numpy(dtype=float)
    n, k = data.shape
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if k == 2:
            res = scipy.stats.wilcoxon(data[:, 1], data[:, 0])
            return {
                "test": "wilcoxon",
                "statistic": float(res.statistic),
                "p_value": float(res.pvalue),
                "df_between": 1,
                "effect_size": matched_rank_biserial(data[:, 1] - data[:, 0]),
                "effect_size_kind": "matched_rank_biserial",
            }
        res = scipy.stats.friedmanchisquare(*data.T)
    return {
        "test": "friedman",
        "statistic": float(res.statistic),
        "p_value": float(res.pvalue),
        "df_between": k - 1,
        "effect_size": kendalls_w(float(res.statistic), n, k),
        "effect_size_kind": "kendalls_w",
    }


def rm_anova(matrix: pd.DataFrame) -> dict[str, Any]:
    """Repeated-measures ANOVA of the level effect over complete blocks (``AnovaRM``)."""
    from statsmodels.stats.anova import AnovaRM

    data = matrix.dropna()
    values = data.to_numpy(dtype=float)
    resid = values - values.mean(1, keepdims=True) - values.mean(0, keepdims=True) + values.mean()
    if (resid**2).sum() <= 1e-12 * ((values - values.mean()) ** 2).sum():
        raise ArithmeticError("no residual variance between items (every item moved alike)")
    long = data.stack().rename("y").reset_index()
    long.columns = ["block", "level", "y"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = AnovaRM(long, depvar="y", subject="block", within=["level"]).fit().anova_table
    f, df1, df2 = (float(table[c].iloc[0]) for c in ("F Value", "Num DF", "Den DF"))
    p = float(table["Pr > F"].iloc[0])
    if not (np.isfinite(f) and np.isfinite(p)):
        raise ArithmeticError("no residual variance between items (every item moved alike)")
    return {
        "test": "rm_anova",
        "statistic": f,
        "p_value": p,
        "df_between": df1,
        "df_within": df2,
        "effect_size": f * df1 / (f * df1 + df2),
        "effect_size_kind": "partial_eta_squared",
    }


def mixedlm_level_test(levels: list[LevelSample]) -> dict[str, Any]:
    """Likelihood-ratio test of the level effect in ``y ~ C(level) + (1 | block)`` (ML fits)."""
    import statsmodels.formula.api as smf

    data = pd.concat(
        [
            pd.DataFrame({"y": lv.values, "level": f"l{i}", "block": lv.blocks})
            for i, lv in enumerate(levels)
        ],
        ignore_index=True,
    ).dropna()
    scale = float(data["y"].std()) or 1.0
    data["y"] = (data["y"] - data["y"].mean()) / scale  # the LR statistic is scale-free
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        full = smf.mixedlm("y ~ C(level)", data, groups=data["block"]).fit(reml=False)
        null = smf.mixedlm("y ~ 1", data, groups=data["block"]).fit(reml=False)
    lr = max(0.0, 2.0 * (float(full.llf) - float(null.llf)))
    k = data["level"].nunique()
    if not (np.isfinite(lr) and full.converged and null.converged):
        raise ArithmeticError("the mixed model did not converge")
    return {
        "test": "mixedlm",
        "statistic": lr,
        "p_value": float(scipy.stats.chi2.sf(lr, k - 1)),
        "df_between": k - 1,
        "effect_size": math.nan,
        "effect_size_kind": None,
    }


def omnibus(
    levels: list[LevelSample], *, alpha: float, test: TestChoice = "auto"
) -> dict[str, Any]:
    """Omnibus test of ≥ 2 levels (keys of ``FREQUENCY_EFFECT_COLUMNS``). ``test="auto"`` picks
    by design; a blocked test asked for on an independent design falls back to ``auto``."""
    out = _empty_result(levels)
    groups = [np.asarray(lv.values, dtype=float) for lv in levels]
    if np.ptp(np.concatenate(groups)) == 0:
        out["verdict"] = "skipped: metric is constant across all windows"
        return out
    design, matrix = design_of(levels)
    out["design"] = design
    out["n_blocks"] = len(matrix.dropna(how="all")) if design != "independent" else 0
    out.update(_pretests(groups, alpha))
    chosen, reason = _choose(design, out, alpha, test)
    try:
        if chosen == "rm_anova":
            try:
                out.update(rm_anova(matrix))
            except (ValueError, ArithmeticError, np.linalg.LinAlgError) as exc:
                chosen, reason = "friedman", f"{reason}; fallback to Friedman: {exc}"
                out.update(_friedman(matrix))
        elif chosen == "friedman":
            out.update(_friedman(matrix))
        elif chosen == "mixedlm":
            out.update(mixedlm_level_test(levels))
        else:
            out.update(test=chosen, **_independent(groups, chosen))
    except (ValueError, ArithmeticError, np.linalg.LinAlgError) as exc:
        if chosen != "mixedlm":
            out.update(test="skipped", verdict=f"skipped: {exc}", test_reason=reason)
            return out
        chosen = "welch_anova"
        reason = f"{reason}; {exc}, so Welch's ANOVA on independent windows"
        out.update(test=chosen, **_independent(groups, chosen))
    significant = bool(np.isfinite(out["p_value"]) and out["p_value"] < alpha)
    out.update(
        test_reason=reason,
        significant=significant,
        verdict="significant" if significant else "not significant",
    )
    return out


def _choose(design: str, pre: dict[str, Any], alpha: float, test: str) -> tuple[str, str]:
    note = ""
    if test in BLOCKED_TESTS and design == "independent":
        note = f"{test} asked for, but no item was measured at two levels; "
        test = "auto"
    if test != "auto":
        return test, f"{note}{test} asked for"
    if design == "blocked-complete":
        return "rm_anova", "the same items ran at every level (complete blocks)"
    if design == "blocked-incomplete":
        return "mixedlm", "the same items ran at several levels, but some blocks are missing"
    if not pre["equal_var"]:
        return "welch_anova", (
            f"{note}independent windows; Levene rejects equal variances "
            f"(p={pre['levene_p']:.3g} < {alpha:g})"
        )
    if not pre["normal"]:
        return "kruskal", (
            f"{note}independent windows, equal variances; Shapiro–Wilk rejects normality "
            f"(min p={pre['shapiro_min_p']:.3g})"
        )
    return "anova", f"{note}independent windows, equal variances, normal-looking levels"
