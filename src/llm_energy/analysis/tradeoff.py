"""Energy / latency trade-off: Pareto frontier and the recommended frequency cap."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from llm_energy.analysis.summary import (
    CONFIG_KEYS,
    FREQ_LEVEL_COL,
    STRATUM_KEYS,
    _is_missing,
    bootstrap_mean_replicates,
    cluster_ids,
    freq_label,
    group_rng,
    json_clean,
    percentile_ci,
    prepare_requests,
    valid_mask,
)

RECOMMEND_COLUMNS: list[str] = [
    *STRATUM_KEYS,
    "metric",
    "baseline",
    "baseline_freq_mhz",
    "baseline_n",
    "baseline_mean",
    "baseline_latency_p50_s",
    "latency_limit_s",
    "latency_budget_pct",
    "n_levels",
    "n_candidates",
    "recommended_freq_mhz",
    "recommended_label",
    "recommended_n",
    "recommended_mean",
    "recommended_latency_p50_s",
    "saving_pct",
    "saving_ci_low",
    "saving_ci_high",
    "latency_change_pct",
    "saves_energy",
    "ci_level",
    "note",
]


def pareto_mask(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> np.ndarray:
    """True for points not dominated when minimising both x and y.

    A point is dominated when another point is ≤ in both and < in at least one. Identical
    points do not dominate each other. Points with a NaN coordinate are never on the frontier.
    """
    xa = np.asarray(x, dtype=float)
    ya = np.asarray(y, dtype=float)
    ok = np.isfinite(xa) & np.isfinite(ya)
    mask = ok.copy()
    for i in np.flatnonzero(ok):
        others = ok.copy()
        others[i] = False
        dominated = others & (xa <= xa[i]) & (ya <= ya[i]) & ((xa < xa[i]) | (ya < ya[i]))
        if dominated.any():
            mask[i] = False
    return mask


def _group_cols(frame: pd.DataFrame, group_cols: Sequence[str] | None, exclude: str) -> list[str]:
    if group_cols is not None:
        return [c for c in group_cols if c in frame.columns]
    return [c for c in CONFIG_KEYS if c != exclude and c in frame.columns]


def pareto_frontier(
    summary: pd.DataFrame,
    *,
    energy_col: str = "j_per_token_mean",
    latency_col: str = "latency_p50_s",
    group_cols: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Summary rows with an ``on_frontier`` flag (minimise energy and latency across frequencies).

    Frequencies are compared within each group (default: every configuration key except
    ``freq_applied_mhz``, so per model × task unless more factors vary; energy kinds never
    mix). Also adds ``label`` ("1200 MHz" / "default"). Sorted by group, then latency.
    """
    out = summary.copy()
    out["on_frontier"] = False
    if out.empty:
        out["label"] = pd.Series(dtype="object")
        return out
    default = (
        out["default_clocks"].fillna(False).astype(bool)
        if "default_clocks" in out.columns
        else out.get("freq_applied_mhz", pd.Series(np.nan, index=out.index)).isna()
    )
    freq = out.get("freq_applied_mhz", pd.Series(np.nan, index=out.index))
    out["label"] = ["default" if d else freq_label(f) for d, f in zip(default, freq, strict=True)]
    cols = _group_cols(out, group_cols, exclude="freq_applied_mhz")
    groups = (
        out.groupby(cols, dropna=False, sort=False).indices if cols else {(): np.arange(len(out))}
    )
    for idx in groups.values():
        pos = np.asarray(idx)
        mask = pareto_mask(out[latency_col].to_numpy()[pos], out[energy_col].to_numpy()[pos])
        out.iloc[pos, out.columns.get_loc("on_frontier")] = mask
    return out.sort_values([*cols, latency_col], kind="stable", na_position="last").reset_index(
        drop=True
    )


def choose_within_budget(
    energy: Sequence[float] | np.ndarray,
    latency: Sequence[float] | np.ndarray,
    baseline_index: int,
    latency_budget_pct: float,
) -> tuple[int | None, list[int]]:
    """Index of the lowest-energy non-baseline point whose latency ≤ baseline × (1 + budget).

    Returns ``(best or None, indices within budget)``.
    """
    e = np.asarray(energy, dtype=float)
    lat = np.asarray(latency, dtype=float)
    limit = lat[baseline_index] * (1.0 + latency_budget_pct / 100.0)
    within = [
        i
        for i in range(len(e))
        if i != baseline_index and np.isfinite(e[i]) and np.isfinite(lat[i]) and lat[i] <= limit
    ]
    if not within:
        return None, []
    best = min(within, key=lambda i: (e[i], lat[i]))
    return best, within


def recommend_cap(
    requests: pd.DataFrame,
    *,
    latency_budget_pct: float = 5.0,
    n_boot: int = 2000,
    seed: int = 0,
    ci_level: float = 0.95,
    metric: str = "j_per_token",
    cluster_col: str | None = "window_id",
) -> pd.DataFrame:
    """Per stratum (model × task × …), the lowest-``metric`` cap within a p50-latency budget.

    Baseline: the default-clock group (``freq_requested_mhz`` null), else the highest
    frequency. Candidates: every other frequency whose median ``latency_s`` is at most
    baseline × (1 + ``latency_budget_pct``/100); the one with the lowest mean ``metric`` is
    recommended. ``saving_pct`` = 100 × (1 − mean/mean_baseline), with a percentile bootstrap
    CI resampling requests (windows, when ``cluster_col`` exists) within each of the two
    groups independently. ``latency_change_pct`` compares p50 latencies. When nothing
    qualifies, the recommendation is null and ``note`` says so; ``saves_energy`` is True only
    for a positive saving. Columns: :data:`RECOMMEND_COLUMNS`.
    """
    df = prepare_requests(requests)
    df = df[valid_mask(df).to_numpy()]
    rows: list[dict[str, Any]] = []
    if df.empty:
        return pd.DataFrame(columns=RECOMMEND_COLUMNS)
    for key, group in df.groupby(list(STRATUM_KEYS), dropna=False, sort=True):
        key_t = key if isinstance(key, tuple) else (key,)
        row: dict[str, Any] = dict(zip(STRATUM_KEYS, key_t, strict=True))
        row.update(metric=metric, latency_budget_pct=latency_budget_pct, ci_level=ci_level)
        levels = []
        for lv, sub in group.groupby(FREQ_LEVEL_COL, dropna=False, sort=False):
            vals = sub[metric].to_numpy(dtype=float)
            lat = sub["latency_s"].to_numpy(dtype=float)
            if not np.isfinite(vals).any() or not np.isfinite(lat).any():
                continue
            levels.append(
                {
                    "freq": float(lv),
                    "sub": sub,
                    "mean": float(np.nanmean(vals)),
                    "p50": float(np.nanmedian(lat)),
                    "n": int(np.isfinite(vals).sum()),
                }
            )
        row["n_levels"] = len(levels)
        if not levels:
            rows.append({**row, "note": f"no valid requests with {metric} and latency"})
            continue
        default_idx = [i for i, lv in enumerate(levels) if math.isnan(lv["freq"])]
        if default_idx:
            b = default_idx[0]
            row["baseline"] = "default"
        else:
            b = int(np.argmax([lv["freq"] for lv in levels]))
            row["baseline"] = f"highest ({freq_label(levels[b]['freq'])})"
        base = levels[b]
        row.update(
            baseline_freq_mhz=base["freq"],
            baseline_n=base["n"],
            baseline_mean=base["mean"],
            baseline_latency_p50_s=base["p50"],
            latency_limit_s=base["p50"] * (1.0 + latency_budget_pct / 100.0),
        )
        best, within = choose_within_budget(
            [lv["mean"] for lv in levels], [lv["p50"] for lv in levels], b, latency_budget_pct
        )
        row["n_candidates"] = len(within)
        if len(levels) == 1:
            rows.append(
                {**row, "saves_energy": False, "note": "only the baseline frequency was measured"}
            )
            continue
        if best is None:
            rows.append(
                {
                    **row,
                    "saves_energy": False,
                    "note": f"no frequency cap keeps p50 latency within +{latency_budget_pct:g} % of the baseline",
                }
            )
            continue
        cand = levels[best]
        saving = 100.0 * (1.0 - cand["mean"] / base["mean"]) if base["mean"] != 0 else math.nan
        rng = group_rng(seed, key_t)
        reps_b = _replicates(base["sub"], metric, cluster_col, n_boot, rng)
        reps_c = _replicates(cand["sub"], metric, cluster_col, n_boot, rng)
        with np.errstate(divide="ignore", invalid="ignore"):
            reps_s = 100.0 * (1.0 - reps_c / reps_b)
        lo, hi = (
            percentile_ci(reps_s, ci_level)
            if base["n"] >= 2 and cand["n"] >= 2
            else (math.nan, math.nan)
        )
        saves = bool(np.isfinite(saving) and saving > 0)
        row.update(
            recommended_freq_mhz=cand["freq"],
            recommended_label=freq_label(cand["freq"]),
            recommended_n=cand["n"],
            recommended_mean=cand["mean"],
            recommended_latency_p50_s=cand["p50"],
            saving_pct=saving,
            saving_ci_low=lo,
            saving_ci_high=hi,
            latency_change_pct=100.0 * (cand["p50"] / base["p50"] - 1.0)
            if base["p50"] > 0
            else math.nan,
            saves_energy=saves,
            note=""
            if saves
            else "the best cap within the latency budget does not lower energy; keep the baseline",
        )
        rows.append(row)
    return pd.DataFrame(rows).reindex(columns=RECOMMEND_COLUMNS)


def _replicates(
    sub: pd.DataFrame, metric: str, cluster_col: str | None, n_boot: int, rng: np.random.Generator
) -> np.ndarray:
    vals = sub[metric].to_numpy(dtype=float)
    clusters = cluster_ids(sub, cluster_col)
    return bootstrap_mean_replicates(vals, n_boot=n_boot, rng=rng, clusters=clusters)


def savings_headline(recommendations: pd.DataFrame) -> dict[str, Any]:
    """The ``tradeoff`` block of metrics.json: the largest energy saving within budget.

    Store it as ``metrics["tradeoff"] = savings_headline(recommendations)``.

    Keys: ``best_saving_pct``, ``best_saving_ci_low``, ``best_saving_ci_high``,
    ``recommended_freq_mhz``, ``latency_change_pct``, ``latency_budget_pct``, ``model``,
    ``task``, ``energy_kind``, ``n_strata``, ``n_strata_with_saving``. Values are null when no
    stratum has a saving.
    """
    out: dict[str, Any] = {
        "best_saving_pct": None,
        "best_saving_ci_low": None,
        "best_saving_ci_high": None,
        "recommended_freq_mhz": None,
        "latency_change_pct": None,
        "latency_budget_pct": None,
        "model": None,
        "task": None,
        "energy_kind": None,
        "n_strata": len(recommendations),
        "n_strata_with_saving": 0,
    }
    if recommendations.empty:
        return json_clean(out)
    budgets = recommendations["latency_budget_pct"].dropna().unique()
    out["latency_budget_pct"] = float(budgets[0]) if len(budgets) == 1 else None
    saving = recommendations[recommendations["saves_energy"].fillna(False).astype(bool)]
    out["n_strata_with_saving"] = len(saving)
    if not saving.empty:
        best = saving.loc[saving["saving_pct"].idxmax()]
        out.update(
            best_saving_pct=best["saving_pct"],
            best_saving_ci_low=best["saving_ci_low"],
            best_saving_ci_high=best["saving_ci_high"],
            recommended_freq_mhz=best["recommended_freq_mhz"],
            latency_change_pct=best["latency_change_pct"],
            model=None if _is_missing(best.get("model")) else best.get("model"),
            task=None if _is_missing(best.get("task")) else best.get("task"),
            energy_kind=None if _is_missing(best.get("energy_kind")) else best.get("energy_kind"),
        )
    return json_clean(out)
