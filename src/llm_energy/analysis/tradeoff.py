"""Energy / latency trade-off: Pareto frontier and the recommended frequency cap (the statistics
of the pick live in :mod:`llm_energy.analysis.selection`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from llm_energy.analysis.headline import json_clean
from llm_energy.analysis.records import (
    CONFIG_KEYS,
    FREQ_LEVEL_COL,
    STRATUM_KEYS,
    config_rng,
    freq_label,
    is_missing,
)
from llm_energy.analysis.selection import LevelWindows, select_cap
from llm_energy.analysis.windows import BLOCK_COL, RATIO_METRICS, window_table

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
    "min_samples",
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
    "selection_bias_pct",
    "pick_share",
    "latency_change_pct",
    "latency_change_ci_low",
    "latency_change_ci_high",
    "saves_energy",
    "ci_level",
    "ci_method",
    "paired",
    "note",
]
CI_METHOD = (
    "bootstrap of the whole selection over windows (or item blocks): expanded, simultaneous "
    "over the candidate caps"
)


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
    return [c for c in CONFIG_KEYS if c != exclude]


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
    out["label"] = [
        "default" if d else freq_label(f)
        for d, f in zip(out["default_clocks"].astype(bool), out["freq_applied_mhz"], strict=True)
    ]
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


def _level_windows(sub: pd.DataFrame, metric: str) -> LevelWindows:
    if metric in RATIO_METRICS:
        num = sub[f"{metric}_num"].to_numpy(dtype=float)
        den = sub[f"{metric}_den"].to_numpy(dtype=float)
    else:
        num = sub[metric].to_numpy(dtype=float)
        den = np.ones(len(sub))
    return LevelWindows(
        freq_mhz=float(sub[FREQ_LEVEL_COL].iloc[0]),
        num=num,
        den=den,
        latency_s=sub["latency_s"].to_numpy(dtype=float),
    )


def _by_block(level: LevelWindows, blocks: np.ndarray, order: list[str]) -> LevelWindows:
    """Per block (repetitions pooled): Σ num, Σ den, mean latency; rows in ``order``."""
    frame = pd.DataFrame(
        {"block": blocks, "num": level.num, "den": level.den, "lat": level.latency_s}
    )
    agg = frame.groupby("block").agg(num=("num", "sum"), den=("den", "sum"), lat=("lat", "mean"))
    agg = agg.reindex(order)
    return LevelWindows(
        level.freq_mhz,
        agg["num"].to_numpy(dtype=float),
        agg["den"].to_numpy(dtype=float),
        agg["lat"].to_numpy(dtype=float),
    )


def _same_level(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def _stratum_levels(
    group: pd.DataFrame, metric: str, min_samples: int
) -> tuple[list[LevelWindows], list[LevelWindows], bool]:
    """(all levels, levels with ≥ min_samples windows, paired). The kept levels are per-block
    aggregates when every one of them ran the same item blocks (a complete blocked design)."""
    value = pd.to_numeric(group[metric], errors="coerce")
    lat = pd.to_numeric(group["latency_s"], errors="coerce")
    usable = group[(value.notna() & lat.notna()).to_numpy()]
    subs = [sub for _, sub in usable.groupby(FREQ_LEVEL_COL, dropna=False, sort=True)]
    all_levels = [_level_windows(sub, metric) for sub in subs]
    kept = [(lv, sub) for lv, sub in zip(all_levels, subs, strict=True) if lv.n >= min_samples]
    block_sets = [set(sub[BLOCK_COL]) for _, sub in kept]
    paired = (
        len(kept) >= 2
        and all(sub[BLOCK_COL].notna().all() for _, sub in kept)
        and all(b == block_sets[0] for b in block_sets)
        and len(block_sets[0]) >= 2
    )
    if not paired:
        return all_levels, [lv for lv, _ in kept], False
    order = sorted(block_sets[0])
    blocked = [_by_block(lv, sub[BLOCK_COL].to_numpy(), order) for lv, sub in kept]
    return all_levels, blocked, True


def recommend_cap(
    requests: pd.DataFrame,
    *,
    latency_budget_pct: float,
    n_boot: int,
    seed: int,
    ci_level: float,
    metric: str = "j_per_token",
    min_samples: int,
) -> pd.DataFrame:
    """Per stratum (model × task × …), the lowest-``metric`` cap within a p50-latency budget.

    The unit is the measurement window: every level needs ``min_samples`` valid windows (levels
    with fewer are left out and named in ``note``). Baseline: the default-clock group
    (``freq_requested_mhz`` null), else the highest frequency. ``metric`` per level is Σ energy
    / Σ tokens over its windows for J/token, else the mean of the window values. A cap is a
    candidate when the upper bound of its p50-latency-change CI is at most
    ``latency_budget_pct``; the candidate with the lowest metric is recommended and its
    ``saving_pct`` = 100 × (1 − metric / baseline metric) gets a selection-adjusted CI
    (:mod:`llm_energy.analysis.selection`: the whole pick is bootstrapped, the interval holds
    whichever cap wins). When every level ran the same item blocks they are resampled jointly
    (``paired``; latency p50 is then over per-block means). ``saves_energy`` is True only when
    the CI's lower bound is above zero. Columns: :data:`RECOMMEND_COLUMNS` (``*_n`` count
    windows).
    """
    windows = window_table(requests)
    if windows.empty:
        return pd.DataFrame(columns=RECOMMEND_COLUMNS)
    rows: list[dict[str, Any]] = []
    for key, group in windows.groupby(list(STRATUM_KEYS), dropna=False, sort=True):
        key_t = key if isinstance(key, tuple) else (key,)
        row: dict[str, Any] = dict(zip(STRATUM_KEYS, key_t, strict=True))
        row.update(
            metric=metric,
            latency_budget_pct=latency_budget_pct,
            ci_level=ci_level,
            min_samples=min_samples,
            ci_method=CI_METHOD,
            saves_energy=False,
        )
        all_levels, levels, paired = _stratum_levels(group, metric, min_samples)
        rows.append(
            _recommend_stratum(
                row,
                all_levels,
                levels,
                paired=paired,
                latency_budget_pct=latency_budget_pct,
                min_samples=min_samples,
                n_boot=n_boot,
                ci_level=ci_level,
                rng=config_rng(seed, STRATUM_KEYS, key_t),
            )
        )
    return pd.DataFrame(rows).reindex(columns=RECOMMEND_COLUMNS)


def _recommend_stratum(
    row: dict[str, Any],
    all_levels: list[LevelWindows],
    levels: list[LevelWindows],
    *,
    paired: bool,
    latency_budget_pct: float,
    min_samples: int,
    n_boot: int,
    ci_level: float,
    rng: np.random.Generator,
) -> dict[str, Any]:
    sparse = [f"{freq_label(lv.freq_mhz)} (n={lv.n})" for lv in all_levels if lv.n < min_samples]
    notes = [f"left out (fewer than {min_samples} windows): {', '.join(sparse)}"] if sparse else []
    row["n_levels"] = len(levels)
    if not all_levels:
        return {**row, "note": f"no valid windows with {row['metric']} and latency"}
    defaults = [i for i, lv in enumerate(all_levels) if math.isnan(lv.freq_mhz)]
    base_all = all_levels[defaults[0]] if defaults else max(all_levels, key=lambda lv: lv.freq_mhz)
    row["baseline"] = "default" if defaults else f"highest ({freq_label(base_all.freq_mhz)})"
    row.update(baseline_freq_mhz=base_all.freq_mhz, baseline_n=base_all.n)
    row.update(baseline_mean=base_all.metric, baseline_latency_p50_s=base_all.latency_p50_s)
    if base_all.n < min_samples:
        notes.insert(
            0, f"the baseline has {base_all.n} windows (< {min_samples}): no recommendation"
        )
        return {**row, "note": "; ".join(notes)}
    if len(levels) == 1:
        alone = (
            "only the baseline frequency was measured"
            if len(all_levels) == 1
            else f"no other frequency has {min_samples} windows"
        )
        return {**row, "note": "; ".join([alone, *notes])}
    b = next(i for i, lv in enumerate(levels) if _same_level(lv.freq_mhz, base_all.freq_mhz))
    row["paired"] = paired
    sel = select_cap(
        levels,
        b,
        latency_budget_pct=latency_budget_pct,
        n_boot=n_boot,
        ci_level=ci_level,
        rng=rng,
        paired=paired,
    )
    row["n_candidates"] = len(sel.candidates)
    row["baseline_latency_p50_s"] = sel.latency_p50_s[b]  # per block when paired
    row["latency_limit_s"] = sel.latency_p50_s[b] * (1.0 + latency_budget_pct / 100.0)
    if sel.pick is None:
        notes.insert(
            0,
            f"no frequency cap keeps p50 latency within +{latency_budget_pct:g} % of the "
            "baseline at the upper bound of its CI",
        )
        return {**row, "note": "; ".join(notes)}
    cand = levels[sel.pick]
    row.update(
        recommended_freq_mhz=cand.freq_mhz,
        recommended_label=freq_label(cand.freq_mhz),
        recommended_n=next(lv.n for lv in all_levels if _same_level(lv.freq_mhz, cand.freq_mhz)),
        recommended_mean=cand.metric,
        recommended_latency_p50_s=cand.latency_p50_s,
        saving_pct=sel.saving_pct,
        saving_ci_low=sel.saving_ci_low,
        saving_ci_high=sel.saving_ci_high,
        selection_bias_pct=sel.selection_bias_pct,
        pick_share=sel.pick_share,
        latency_change_pct=sel.latency_change_pct[sel.pick],
        latency_change_ci_low=sel.latency_change_ci_low[sel.pick],
        latency_change_ci_high=sel.latency_change_ci_high[sel.pick],
        saves_energy=sel.saves_energy,
    )
    if not sel.saves_energy:
        notes.insert(
            0,
            "the best cap within the latency budget does not lower energy; keep the baseline"
            if not sel.saving_pct > 0
            else f"the saving is not established: its CI includes 0 after picking the best of "
            f"{len(sel.candidates)} caps; keep the baseline",
        )
    return {**row, "note": "; ".join(notes)}


def savings_headline(recommendations: pd.DataFrame) -> dict[str, Any]:
    """The ``tradeoff`` block of metrics.json: the largest energy saving within budget.

    Store it as ``metrics["tradeoff"] = savings_headline(recommendations)``.

    Keys: ``best_saving_pct``, ``best_saving_ci_low``, ``best_saving_ci_high``,
    ``recommended_freq_mhz``, ``latency_change_pct``, ``latency_change_ci_high``,
    ``latency_budget_pct``, ``model``, ``task``, ``energy_kind``, ``n_strata``,
    ``n_strata_with_saving``. Values are null when no stratum claims a saving (a claim needs the
    saving's selection-adjusted CI above zero).
    """
    out: dict[str, Any] = {
        "best_saving_pct": None,
        "best_saving_ci_low": None,
        "best_saving_ci_high": None,
        "recommended_freq_mhz": None,
        "latency_change_pct": None,
        "latency_change_ci_high": None,
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
            latency_change_ci_high=best.get("latency_change_ci_high"),
            model=None if is_missing(best.get("model")) else best.get("model"),
            task=None if is_missing(best.get("task")) else best.get("task"),
            energy_kind=None if is_missing(best.get("energy_kind")) else best.get("energy_kind"),
        )
    return json_clean(out)
