"""Does the frequency cap change a metric? Omnibus tests, pairwise tests vs default clocks,
and length/energy rank correlations. Pure: DataFrames in, DataFrames out.

The unit is the measurement window (:func:`llm_energy.analysis.windows.window_table`): requests
of a batch share one energy reading, so counting them would overstate significance. Frequencies
are compared within a *stratum*: every configuration key except the frequency (model, task,
engine, batch size, length targets, energy kind). Only valid requests are used. Which omnibus
test runs, and why, is decided in :mod:`llm_energy.analysis.designs`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.multitest import multipletests

from llm_energy.analysis.designs import (
    LevelSample,
    TestChoice,
    block_matrix,
    hedges_g,
    omnibus,
    pair_test,
)
from llm_energy.analysis.records import FREQ_LEVEL_COL, STRATUM_KEYS, freq_label
from llm_energy.analysis.windows import BLOCK_COL, window_table

FREQUENCY_EFFECT_COLUMNS: list[str] = [
    *STRATUM_KEYS,
    "metric",
    "levels",
    "n_levels",
    "n_total",
    "design",
    "n_blocks",
    "shapiro_min_p",
    "normal",
    "levene_p",
    "equal_var",
    "test",
    "test_reason",
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
    "n_pairs",
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
    "gpu_name",
    "variable",
    "metric",
    "n",
    "rho",
    "p_value",
    "note",
]


# --- data preparation ---------------------------------------------------------------------------


def metric_windows(requests: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Valid windows with a finite ``metric`` (window value: Σ/Σ for J/token, else the mean)."""
    windows = window_table(requests)
    if metric not in windows.columns:
        raise KeyError(f"metric {metric!r} is not a column of the requests")
    values = pd.to_numeric(windows[metric], errors="coerce")
    return windows[np.isfinite(values.to_numpy(dtype=float))].assign(**{metric: values})


def _strata(df: pd.DataFrame) -> list[tuple[tuple[Any, ...], pd.DataFrame]]:
    if df.empty:
        return []
    return [
        (key if isinstance(key, tuple) else (key,), group)
        for key, group in df.groupby(list(STRATUM_KEYS), dropna=False, sort=True)
    ]


def _levels(group: pd.DataFrame, metric: str) -> list[LevelSample]:
    """Levels sorted with the default group (NaN) first, then by descending frequency."""
    out = [
        LevelSample(
            float(level),
            sub[metric].to_numpy(dtype=float),
            sub[BLOCK_COL].to_numpy(dtype=object) if sub[BLOCK_COL].notna().any() else None,
        )
        for level, sub in group.groupby(FREQ_LEVEL_COL, dropna=False, sort=False)
    ]
    out.sort(key=lambda lv: (not math.isnan(lv.level_mhz), -np.nan_to_num(lv.level_mhz)))
    return out


def _stratum_levels(
    group: pd.DataFrame, metric: str, min_samples: int
) -> tuple[list[LevelSample], list[str]]:
    levels = _levels(group, metric)
    kept = [lv for lv in levels if len(lv.values) >= min_samples]
    dropped = [
        f"{freq_label(lv.level_mhz)} (n={len(lv.values)})"
        for lv in levels
        if len(lv.values) < min_samples
    ]
    return kept, dropped


def _stratum_samples(
    requests: pd.DataFrame, metric: str, min_samples: int
) -> Iterator[tuple[dict[str, Any], pd.DataFrame, list[LevelSample], list[str]]]:
    """Per stratum of the metric's windows: its row head (stratum keys, metric), its windows,
    the levels with at least `min_samples` windows and the ones left out (labelled)."""
    for key, group in _strata(metric_windows(requests, metric)):
        head: dict[str, Any] = {**dict(zip(STRATUM_KEYS, key, strict=True)), "metric": metric}
        kept, dropped = _stratum_levels(group, metric, min_samples)
        yield head, group, kept, dropped


# --- omnibus ---------------------------------------------------------------------------------------


def frequency_effect(
    requests: pd.DataFrame,
    *,
    metric: str = "j_per_token",
    alpha: float,
    min_samples: int,
    test: TestChoice = "auto",
) -> pd.DataFrame:
    """Omnibus test of the frequency level's effect on ``metric``, one row per stratum.

    Samples are windows. The test follows the design (:func:`~llm_energy.analysis.designs.omnibus`):
    Friedman / Wilcoxon signed-rank on per-block means when the same items ran at every level,
    a mixed model when blocks are incomplete, else Welch's ANOVA (unequal variances),
    Kruskal–Wallis (non-normal) or one-way ANOVA; ``test_reason`` says why. Levels with fewer
    than ``min_samples`` windows are left out (named in ``note``); with fewer than two levels
    left the row's ``verdict`` is ``"skipped: <reason>"``. Columns:
    :data:`FREQUENCY_EFFECT_COLUMNS`.
    """
    rows: list[dict[str, Any]] = []
    for row, group, kept, dropped in _stratum_samples(requests, metric, min_samples):
        row["levels"] = ", ".join(freq_label(lv.level_mhz) for lv in kept)
        notes = [f"left out (n<{min_samples} windows): {', '.join(dropped)}"] if dropped else []
        if len(kept) < 2:
            n_distinct = group[FREQ_LEVEL_COL].nunique(dropna=False)
            reason = (
                "only one frequency level"
                if n_distinct < 2
                else f"fewer than 2 frequency levels with ≥{min_samples} valid windows"
            )
            row.update(
                n_levels=len(kept),
                n_total=int(sum(len(lv.values) for lv in kept)),
                test="skipped",
                verdict=f"skipped: {reason}",
                note="; ".join(notes),
            )
            rows.append(row)
            continue
        res = omnibus(kept, alpha=alpha, test=test)
        res["note"] = "; ".join([*notes, res["note"]] if res["note"] else notes)
        row.update(res)
        rows.append(row)
    return pd.DataFrame(rows).reindex(columns=FREQUENCY_EFFECT_COLUMNS)


# --- pairwise vs default clocks -------------------------------------------------------------------


def _paired_values(
    level: LevelSample, base: LevelSample, min_pairs: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """Per-block means of the blocks measured at both levels (None if fewer than min_pairs)."""
    matrix = block_matrix([level, base]).dropna()
    if len(matrix) < min_pairs:
        return None
    return matrix[0].to_numpy(dtype=float), matrix[1].to_numpy(dtype=float)


def pairwise_vs_default(
    requests: pd.DataFrame,
    *,
    metric: str = "j_per_token",
    alpha: float,
    min_samples: int,
    test: TestChoice = "auto",
) -> pd.DataFrame:
    """Each capped frequency vs the default-clock group of its stratum, over windows.

    The baseline is the default-clock group (``freq_requested_mhz`` null); without one, the
    highest frequency. The test follows the stratum's omnibus choice: in a blocked design the
    comparison is paired on the blocks both levels ran (``n_pairs``; at least ``min_samples``):
    Wilcoxon signed-rank after Friedman / Wilcoxon, a paired t-test after the mixed model; with
    independent windows Welch's t after (Welch) ANOVA and Mann–Whitney U after Kruskal–Wallis.
    p-values are Holm-adjusted within the stratum. ``pct_change`` is 100 × (mean −
    mean_baseline) / mean_baseline over window values. Columns: :data:`PAIRWISE_COLUMNS`.
    """
    rows: list[dict[str, Any]] = []
    for base_row, _group, kept, _dropped in _stratum_samples(requests, metric, min_samples):
        if len(kept) < 2:
            rows.append(
                {
                    **base_row,
                    "test": "skipped",
                    "note": "skipped: fewer than 2 frequency levels with enough windows",
                }
            )
            continue
        defaults = [lv for lv in kept if math.isnan(lv.level_mhz)]
        base = defaults[0] if defaults else max(kept, key=lambda lv: lv.level_mhz)
        baseline = "default" if defaults else f"highest ({freq_label(base.level_mhz)})"
        omni = omnibus(kept, alpha=alpha, test=test)
        family = "rank" if omni.get("test") in ("kruskal", "friedman", "wilcoxon") else "mean"
        blocked = omni.get("test") in ("friedman", "wilcoxon", "mixedlm")
        stratum_rows: list[dict[str, Any]] = []
        for lv in kept:
            if lv is base:
                continue
            v, base_v = lv.values, base.values
            paired = _paired_values(lv, base, min_samples) if blocked else None
            mb = float(base_v.mean())
            row = {
                **base_row,
                "freq_mhz": lv.level_mhz,
                "label": freq_label(lv.level_mhz),
                "baseline": baseline,
                "baseline_freq_mhz": base.level_mhz,
                "n": len(v),
                "n_baseline": len(base_v),
                "n_pairs": len(paired[0]) if paired is not None else 0,
                "mean": float(v.mean()),
                "mean_baseline": mb,
                "pct_change": 100.0 * (float(v.mean()) - mb) / mb if mb != 0 else math.nan,
                "cohens_d": hedges_g(v, base_v)[0],
                "note": "" if omni.get("test") != "skipped" else str(omni.get("verdict")),
            }
            try:
                row.update(pair_test(v, base_v, paired, family))
            except ValueError as exc:  # e.g. every paired difference is zero
                row.update(test="skipped", p_value=math.nan, note=f"skipped: {exc}")
            stratum_rows.append(row)
        _holm(stratum_rows, alpha)
        rows.extend(stratum_rows)
    return pd.DataFrame(rows).reindex(columns=PAIRWISE_COLUMNS)


def _holm(rows: list[dict[str, Any]], alpha: float) -> None:
    pvals = np.array([r["p_value"] for r in rows], dtype=float)
    finite = np.isfinite(pvals)
    adjusted = np.full(len(pvals), np.nan)
    if finite.any():
        adjusted[finite] = multipletests(pvals[finite], alpha=alpha, method="holm")[1]
    for r, p_adj in zip(rows, adjusted, strict=True):
        r["p_holm"] = float(p_adj)
        r["significant"] = bool(np.isfinite(p_adj) and p_adj < alpha)


# --- length correlations -----------------------------------------------------------------------------


def _spearman_row(
    sub: pd.DataFrame, variable: str, metric: str, min_samples: int
) -> dict[str, Any]:
    out: dict[str, Any] = {"variable": variable, "metric": metric, "rho": math.nan}
    out["p_value"] = math.nan
    if sub[variable].isna().all():
        return {**out, "n": 0, "note": f"no {variable} values"}
    x = pd.to_numeric(sub[variable], errors="coerce")
    y = pd.to_numeric(sub[metric], errors="coerce")
    use = x.notna() & y.notna()
    xv, yv = x[use].to_numpy(dtype=float), y[use].to_numpy(dtype=float)
    out["n"] = len(xv)
    if len(xv) < min_samples:
        return {**out, "note": f"skipped: fewer than {min_samples} windows"}
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
    min_samples: int,
) -> pd.DataFrame:
    """Spearman ρ of input/output length with ``metric`` per model × task and overall.

    One point per window: the window's mean length per request against its mean ``metric``
    per request (J/token: Σ/Σ), so ``n`` counts windows. ``scope`` is ``"model×task"`` or
    ``"overall"``; both are split by energy kind and GPU model (never mixed). Frequencies are pooled, as in
    the paper's length study. Columns: :data:`SPEARMAN_COLUMNS`.
    """
    df = window_table(requests)
    rows: list[dict[str, Any]] = []
    if df.empty:
        return pd.DataFrame(columns=SPEARMAN_COLUMNS)
    for (model, task, kind, gpu), sub in df.groupby(
        ["model", "task", "energy_kind", "gpu_name"], dropna=False, sort=True
    ):
        for var in variables:
            rows.append(
                {
                    "scope": "model×task",
                    "model": model,
                    "task": task,
                    "energy_kind": kind,
                    "gpu_name": gpu,
                    **_spearman_row(sub, var, metric, min_samples),
                }
            )
    for (kind, gpu), sub in df.groupby(["energy_kind", "gpu_name"], dropna=False, sort=True):
        for var in variables:
            rows.append(
                {
                    "scope": "overall",
                    "model": None,
                    "task": None,
                    "energy_kind": kind,
                    "gpu_name": gpu,
                    **_spearman_row(sub, var, metric, min_samples),
                }
            )
    return pd.DataFrame(rows).reindex(columns=SPEARMAN_COLUMNS)
