"""Does the frequency cap change a metric? Omnibus tests, pairwise tests vs default clocks,
and length/energy rank correlations. Pure: DataFrames in, DataFrames out.

Frequencies are compared within a *stratum*: every configuration key except the frequency
(model, task, engine, batch size, length targets, energy kind). With one engine, batch size
and length target this is exactly "per model × task". Only valid requests are used
(:func:`llm_energy.analysis.summary.valid_mask`).
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.multitest import multipletests

from llm_energy.analysis.summary import (
    FREQ_LEVEL_COL,
    STRATUM_KEYS,
    freq_label,
    prepare_requests,
    valid_mask,
)

TestChoice = Literal["auto", "anova", "kruskal"]

FREQUENCY_EFFECT_COLUMNS: list[str] = [
    *STRATUM_KEYS,
    "metric",
    "levels",
    "n_levels",
    "n_total",
    "shapiro_min_p",
    "normal",
    "levene_p",
    "equal_var",
    "test",
    "statistic",
    "df_between",
    "df_within",
    "p_value",
    "effect_size",
    "effect_size_kind",
    "significant",
    "verdict",
    "note",
]

PAIRWISE_COLUMNS: list[str] = [
    *STRATUM_KEYS,
    "metric",
    "freq_mhz",
    "label",
    "baseline",
    "baseline_freq_mhz",
    "n",
    "n_baseline",
    "mean",
    "mean_baseline",
    "pct_change",
    "test",
    "statistic",
    "p_value",
    "p_holm",
    "significant",
    "effect_size",
    "effect_size_kind",
    "cohens_d",
    "note",
]

SPEARMAN_COLUMNS: list[str] = [
    "scope",
    "model",
    "task",
    "energy_kind",
    "variable",
    "metric",
    "n",
    "rho",
    "p_value",
    "note",
]


# --- data preparation ---------------------------------------------------------------------------


def _valid_metric_rows(requests: pd.DataFrame, metric: str) -> pd.DataFrame:
    df = prepare_requests(requests)
    if metric not in df.columns:
        raise KeyError(f"metric {metric!r} is not a column of the requests")
    df[metric] = pd.to_numeric(df[metric], errors="coerce")
    df = df[valid_mask(df).to_numpy() & np.isfinite(df[metric].to_numpy(dtype=float))]
    return per_window(df, metric)


def per_window(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """One row per measurement window (mean of its requests). Requests of a batch share one
    energy reading; counting them as independent samples would overstate significance."""
    keys = [c for c in ("run_id", "window_id") if c in df.columns]
    if len(keys) < 2 or df.empty or df["window_id"].isna().all():
        return df
    first = df.groupby(keys, dropna=False, sort=False).first()
    first[metric] = df.groupby(keys, dropna=False, sort=False)[metric].mean()
    return first.reset_index()


def _strata(df: pd.DataFrame) -> list[tuple[tuple[Any, ...], pd.DataFrame]]:
    if df.empty:
        return []
    out = []
    for key, group in df.groupby(list(STRATUM_KEYS), dropna=False, sort=True):
        out.append((key if isinstance(key, tuple) else (key,), group))
    return out


def _levels(group: pd.DataFrame, metric: str) -> list[tuple[float, np.ndarray]]:
    """(frequency level, values) sorted with the default group (NaN) first, then descending."""
    out: list[tuple[float, np.ndarray]] = []
    for level, sub in group.groupby(FREQ_LEVEL_COL, dropna=False, sort=False):
        out.append((float(level), sub[metric].to_numpy(dtype=float)))
    out.sort(key=lambda lv: (not math.isnan(lv[0]), -lv[0] if not math.isnan(lv[0]) else 0.0))
    return out


# --- effect sizes ---------------------------------------------------------------------------------


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


def hedges_g(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(Cohen's d, Hedges' g) of x − y with the pooled SD."""
    nx, ny = len(x), len(y)
    if nx < 2 or ny < 2:
        return (math.nan, math.nan)
    pooled = math.sqrt(((nx - 1) * x.var(ddof=1) + (ny - 1) * y.var(ddof=1)) / (nx + ny - 2))
    if pooled == 0:
        return (math.nan, math.nan)
    d = (x.mean() - y.mean()) / pooled
    correction = 1.0 - 3.0 / (4.0 * (nx + ny) - 9.0)
    return (float(d), float(d * correction))


def rank_biserial(u_x: float, nx: int, ny: int) -> float:
    """Rank-biserial correlation from x's Mann–Whitney U: positive when x tends to be larger."""
    return 2.0 * float(u_x) / (nx * ny) - 1.0


# --- omnibus ---------------------------------------------------------------------------------------


def _omnibus(groups: list[np.ndarray], *, alpha: float, test: TestChoice) -> dict[str, Any]:
    """Assumption checks then ANOVA or Kruskal–Wallis on ≥ 2 groups."""
    n_total = int(sum(len(g) for g in groups))
    out: dict[str, Any] = {
        "n_levels": len(groups),
        "n_total": n_total,
        "shapiro_min_p": math.nan,
        "normal": None,
        "levene_p": math.nan,
        "equal_var": None,
        "statistic": math.nan,
        "df_between": math.nan,
        "df_within": math.nan,
        "p_value": math.nan,
        "effect_size": math.nan,
        "effect_size_kind": None,
        "significant": None,
        "note": "",
    }
    allv = np.concatenate(groups)
    if np.ptp(allv) == 0:
        out.update(test="skipped", verdict="skipped: metric is constant across all requests")
        return out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        shapiro_ps = []
        for g in groups:
            if len(g) >= 3 and np.ptp(g) > 0:
                shapiro_ps.append(float(stats.shapiro(g).pvalue))
            else:
                shapiro_ps.append(math.nan)  # untestable: treated as not normal
        normal = all(np.isfinite(p) and p > alpha for p in shapiro_ps)
        levene_p = float(stats.levene(*groups, center="median").pvalue)
    equal_var = bool(np.isfinite(levene_p) and levene_p > alpha)
    finite_ps = [p for p in shapiro_ps if np.isfinite(p)]
    out.update(
        shapiro_min_p=min(finite_ps) if finite_ps else math.nan,
        normal=normal,
        levene_p=levene_p,
        equal_var=equal_var,
    )
    chosen = test if test != "auto" else ("anova" if normal and equal_var else "kruskal")
    k = len(groups)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if chosen == "anova":
            res = stats.f_oneway(*groups)
            out.update(
                statistic=float(res.statistic),
                p_value=float(res.pvalue),
                df_between=k - 1,
                df_within=n_total - k,
                effect_size=eta_squared(groups),
                effect_size_kind="eta_squared",
            )
        else:
            try:
                res = stats.kruskal(*groups)
            except ValueError as exc:  # all values identical
                out.update(test="skipped", verdict=f"skipped: {exc}")
                return out
            out.update(
                statistic=float(res.statistic),
                p_value=float(res.pvalue),
                df_between=k - 1,
                effect_size=epsilon_squared(float(res.statistic), n_total),
                effect_size_kind="epsilon_squared",
            )
    significant = bool(np.isfinite(out["p_value"]) and out["p_value"] < alpha)
    out.update(
        test=chosen,
        significant=significant,
        verdict="significant" if significant else "not significant",
    )
    if test == "auto" and chosen == "kruskal":
        why = []
        if not normal:
            why.append(f"Shapiro–Wilk rejects normality (min p={out['shapiro_min_p']:.3g})")
        if not equal_var:
            why.append(f"Levene rejects equal variances (p={levene_p:.3g})")
        out["note"] = "; ".join(why)
    return out


def _stratum_levels(
    group: pd.DataFrame, metric: str, min_samples: int
) -> tuple[list[tuple[float, np.ndarray]], list[str]]:
    levels = _levels(group, metric)
    kept = [(lv, v) for lv, v in levels if len(v) >= min_samples]
    dropped = [f"{freq_label(lv)} (n={len(v)})" for lv, v in levels if len(v) < min_samples]
    return kept, dropped


def frequency_effect(
    requests: pd.DataFrame,
    *,
    metric: str = "j_per_token",
    alpha: float = 0.05,
    min_samples: int = 3,
    test: TestChoice = "auto",
) -> pd.DataFrame:
    """Omnibus test of the frequency level's effect on ``metric``, one row per stratum.

    Shapiro–Wilk per level and Levene (median-centred) decide: one-way ANOVA (effect size η²)
    when every level looks normal and variances look equal at ``alpha``, else Kruskal–Wallis
    (ε²). Levels with fewer than ``min_samples`` valid requests are left out (named in
    ``note``); with fewer than two levels left the row's ``verdict`` is ``"skipped: <reason>"``.
    Columns: :data:`FREQUENCY_EFFECT_COLUMNS`.
    """
    df = _valid_metric_rows(requests, metric)
    rows: list[dict[str, Any]] = []
    for key, group in _strata(df):
        row: dict[str, Any] = dict(zip(STRATUM_KEYS, key, strict=True))
        row["metric"] = metric
        kept, dropped = _stratum_levels(group, metric, min_samples)
        row["levels"] = ", ".join(freq_label(lv) for lv, _ in kept)
        notes = [f"left out (n<{min_samples}): {', '.join(dropped)}"] if dropped else []
        n_distinct = group[FREQ_LEVEL_COL].nunique(dropna=False)
        if len(kept) < 2:
            reason = (
                "only one frequency level"
                if n_distinct < 2
                else f"fewer than 2 frequency levels with ≥{min_samples} valid samples"
            )
            row.update(
                n_levels=len(kept),
                n_total=int(sum(len(v) for _, v in kept)),
                test="skipped",
                verdict=f"skipped: {reason}",
                note="; ".join(notes),
            )
            rows.append(row)
            continue
        res = _omnibus([v for _, v in kept], alpha=alpha, test=test)
        if res.get("note"):
            notes.append(res["note"])
        res["note"] = "; ".join(notes)
        row.update(res)
        rows.append(row)
    return pd.DataFrame(rows).reindex(columns=FREQUENCY_EFFECT_COLUMNS)


# --- pairwise vs default clocks -------------------------------------------------------------------


def pairwise_vs_default(
    requests: pd.DataFrame,
    *,
    metric: str = "j_per_token",
    alpha: float = 0.05,
    min_samples: int = 3,
    test: TestChoice = "auto",
) -> pd.DataFrame:
    """Each capped frequency vs the default-clock group of its stratum.

    The baseline is the default-clock group (``freq_requested_mhz`` null); without one, the
    highest frequency. The test follows the stratum's omnibus choice: Welch's t (effect size
    Hedges' g) after ANOVA, Mann–Whitney U (rank-biserial r, positive = capped larger) after
    Kruskal–Wallis. p-values are Holm-adjusted within the stratum. ``pct_change`` is
    100 × (mean − mean_baseline) / mean_baseline. Columns: :data:`PAIRWISE_COLUMNS`.
    """
    df = _valid_metric_rows(requests, metric)
    rows: list[dict[str, Any]] = []
    for key, group in _strata(df):
        base_row: dict[str, Any] = dict(zip(STRATUM_KEYS, key, strict=True))
        base_row["metric"] = metric
        kept, _dropped = _stratum_levels(group, metric, min_samples)
        if len(kept) < 2:
            rows.append(
                {
                    **base_row,
                    "test": "skipped",
                    "note": "skipped: fewer than 2 frequency levels with enough samples",
                }
            )
            continue
        has_default = any(math.isnan(lv) for lv, _ in kept)
        if has_default:
            base_lv, base_v = next((lv, v) for lv, v in kept if math.isnan(lv))
            baseline = "default"
        else:
            base_lv, base_v = max(kept, key=lambda lv_v: lv_v[0])
            baseline = f"highest ({freq_label(base_lv)})"
        omni = _omnibus([v for _, v in kept], alpha=alpha, test=test)
        parametric = omni.get("test") == "anova"
        stratum_rows: list[dict[str, Any]] = []
        for lv, v in kept:
            if (math.isnan(lv) and math.isnan(base_lv)) or lv == base_lv:
                continue
            row = {
                **base_row,
                "freq_mhz": lv,
                "label": freq_label(lv),
                "baseline": baseline,
                "baseline_freq_mhz": base_lv,
                "n": len(v),
                "n_baseline": len(base_v),
                "mean": float(v.mean()),
                "mean_baseline": float(base_v.mean()),
                "note": "" if omni.get("test") != "skipped" else str(omni.get("verdict")),
            }
            mb = float(base_v.mean())
            row["pct_change"] = 100.0 * (float(v.mean()) - mb) / mb if mb != 0 else math.nan
            d, g = hedges_g(v, base_v)
            row["cohens_d"] = d
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if parametric:
                    res = stats.ttest_ind(v, base_v, equal_var=False)
                    row.update(
                        test="welch_t",
                        statistic=float(res.statistic),
                        p_value=float(res.pvalue),
                        effect_size=g,
                        effect_size_kind="hedges_g",
                    )
                else:
                    res = stats.mannwhitneyu(v, base_v, alternative="two-sided")
                    row.update(
                        test="mann_whitney_u",
                        statistic=float(res.statistic),
                        p_value=float(res.pvalue),
                        effect_size=rank_biserial(float(res.statistic), len(v), len(base_v)),
                        effect_size_kind="rank_biserial",
                    )
            stratum_rows.append(row)
        pvals = np.array([r["p_value"] for r in stratum_rows], dtype=float)
        finite = np.isfinite(pvals)
        adjusted = np.full(len(pvals), np.nan)
        if finite.any():
            adjusted[finite] = multipletests(pvals[finite], alpha=alpha, method="holm")[1]
        for r, p_adj in zip(stratum_rows, adjusted, strict=True):
            r["p_holm"] = float(p_adj)
            r["significant"] = bool(np.isfinite(p_adj) and p_adj < alpha)
        rows.extend(stratum_rows)
    return pd.DataFrame(rows).reindex(columns=PAIRWISE_COLUMNS)


# --- length correlations -----------------------------------------------------------------------------


def _spearman_row(
    sub: pd.DataFrame, variable: str, metric: str, min_samples: int
) -> dict[str, Any]:
    x = pd.to_numeric(sub.get(variable), errors="coerce") if variable in sub else None
    out: dict[str, Any] = {
        "variable": variable,
        "metric": metric,
        "rho": math.nan,
        "p_value": math.nan,
    }
    if x is None:
        return {**out, "n": 0, "note": f"no {variable} column"}
    y = pd.to_numeric(sub[metric], errors="coerce")
    use = x.notna() & y.notna()
    xv, yv = x[use].to_numpy(dtype=float), y[use].to_numpy(dtype=float)
    out["n"] = len(xv)
    if len(xv) < min_samples:
        return {**out, "note": f"skipped: fewer than {min_samples} requests"}
    if np.ptp(xv) == 0:
        return {**out, "note": f"skipped: {variable} is constant"}
    if np.ptp(yv) == 0:
        return {**out, "note": f"skipped: {metric} is constant"}
    res = stats.spearmanr(xv, yv)
    return {**out, "rho": float(res.statistic), "p_value": float(res.pvalue), "note": ""}


def spearman_lengths(
    requests: pd.DataFrame,
    *,
    metric: str = "energy_j",
    variables: tuple[str, ...] = ("input_tokens", "output_tokens"),
    min_samples: int = 3,
) -> pd.DataFrame:
    """Spearman ρ of input/output length with ``metric`` per model × task and overall.

    ``scope`` is ``"model×task"`` or ``"overall"``; both are split by energy kind (never
    mixed). Frequencies are pooled, as in the paper's length study. Columns:
    :data:`SPEARMAN_COLUMNS`.
    """
    df = prepare_requests(requests)
    df = df[valid_mask(df).to_numpy()]
    rows: list[dict[str, Any]] = []
    if df.empty:
        return pd.DataFrame(columns=SPEARMAN_COLUMNS)
    for (model, task, kind), sub in df.groupby(
        ["model", "task", "energy_kind"], dropna=False, sort=True
    ):
        for var in variables:
            rows.append(
                {
                    "scope": "model×task",
                    "model": model,
                    "task": task,
                    "energy_kind": kind,
                    **_spearman_row(sub, var, metric, min_samples),
                }
            )
    for kind, sub in df.groupby("energy_kind", dropna=False, sort=True):
        for var in variables:
            rows.append(
                {
                    "scope": "overall",
                    "model": None,
                    "task": None,
                    "energy_kind": kind,
                    **_spearman_row(sub, var, metric, min_samples),
                }
            )
    return pd.DataFrame(rows).reindex(columns=SPEARMAN_COLUMNS)
