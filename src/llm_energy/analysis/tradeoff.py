"""Energy / latency trade-off: Pareto frontier and the recommended frequency cap (the
family-wise rule of the pick lives in :mod:`llm_energy.analysis.selection`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from llm_energy.analysis.estimators import count_text
from llm_energy.analysis.headline import json_clean
from llm_energy.analysis.records import (
    CONFIG_KEYS,
    FREQ_LEVEL_COL,
    STRATUM_KEYS,
    freq_label,
    is_missing,
)
from llm_energy.analysis.selection import CI_METHOD, CapComparison, CapVerdict, judge, pick
from llm_energy.analysis.significance import metric_items, paired_on_items

RECOMMEND_COLUMNS: list[str] = [
    *STRATUM_KEYS,
    *(
        "metric baseline baseline_freq_mhz baseline_n baseline_mean baseline_latency_s "
        "latency_limit_s latency_budget_pct min_samples n_levels n_candidates n_family "
        "recommended_freq_mhz recommended_label recommended_n recommended_mean "
        "recommended_latency_s saving_pct saving_ci_low saving_ci_high latency_change_pct "
        "latency_change_ci_high saves_energy ci_level ci_method paired note"
    ).split(),
]


def pareto_mask(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> np.ndarray:
    """True for points not dominated when minimising both x and y (identical points do not
    dominate each other; a NaN coordinate is never on the frontier)."""
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
    return [c for c in CONFIG_KEYS if c != exclude and c in frame.columns]  # knobs: optional


def pareto_frontier(
    summary: pd.DataFrame,
    *,
    energy_col: str = "j_per_token_mean",
    latency_col: str = "latency_p50_s",
    group_cols: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Summary rows with ``on_frontier`` (minimise energy and latency across the frequencies of
    a group: by default every configuration key but the clock) and ``label``, sorted by group,
    then latency."""
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


def _comparisons(
    stratum: int, levels: list[tuple[float, pd.DataFrame]], base: pd.DataFrame, ci_level: float
) -> list[CapComparison]:
    """Every cap against the baseline on the items both ran: metric ratio and latency ratio."""
    return [
        CapComparison(
            stratum,
            freq,
            paired_on_items(sub, base, "num", "den", level=ci_level),
            paired_on_items(sub, base, "latency_s", None, level=ci_level),
        )
        for freq, sub in levels
        if sub is not base
    ]


def recommend_cap(
    requests: pd.DataFrame,
    *,
    latency_budget_pct: float,
    alpha: float,
    ci_level: float,
    metric: str = "j_per_token",
    min_samples: int,
    items: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Per stratum, the cap with the lowest ``metric`` whose saving holds family-wise and whose
    mean latency stays within budget, on the items it shares with the baseline; levels under
    ``min_samples`` items are left out, named (docs/statistics.md, ``recommendation.csv``)."""
    items = metric_items(requests, metric, items)
    items = items[np.isfinite(items["latency_s"].to_numpy(dtype=float))]
    if items.empty:
        return pd.DataFrame(columns=RECOMMEND_COLUMNS)
    heads, comparisons, levels_of = [], [], []
    for i, (key, group) in enumerate(items.groupby(list(STRATUM_KEYS), dropna=False, sort=True)):
        key_t = key if isinstance(key, tuple) else (key,)
        row: dict[str, Any] = dict(zip(STRATUM_KEYS, key_t, strict=True))
        row.update(
            metric=metric,
            latency_budget_pct=latency_budget_pct,
            ci_level=1.0 - alpha,
            min_samples=min_samples,
            ci_method=CI_METHOD,
            saves_energy=False,
        )
        levels = [(float(f), sub) for f, sub in group.groupby(FREQ_LEVEL_COL, dropna=False)]
        kept = [(f, sub) for f, sub in levels if len(sub) >= min_samples]
        sparse = [f"{freq_label(f)} (n={len(sub)})" for f, sub in levels if len(sub) < min_samples]
        row["note"] = (
            f"left out (fewer than {min_samples} items): {', '.join(sparse)}" if sparse else ""
        )
        row["n_levels"] = len(kept)
        defaults = [lv for lv in levels if math.isnan(lv[0])]
        base_f, base = defaults[0] if defaults else max(levels, key=lambda lv: lv[0])
        row["baseline"] = "default" if defaults else f"highest ({freq_label(base_f)})"
        row.update(baseline_freq_mhz=base_f, baseline_n=len(base))
        row["baseline_mean"] = float(base["num"].sum() / base["den"].sum())
        row["baseline_latency_s"] = float(base["latency_s"].mean())
        row["latency_limit_s"] = row["baseline_latency_s"] * (1.0 + latency_budget_pct / 100.0)
        heads.append(row)
        usable = len(base) >= min_samples and len(kept) >= 2
        comparisons += _comparisons(i, kept, base, ci_level) if usable else []
        levels_of.append(levels)
    verdicts, m = judge(comparisons, alpha=alpha, latency_budget_pct=latency_budget_pct)
    rows = [
        _recommend_stratum(
            head, [v for v in verdicts if v.comparison.stratum == i], levels_of[i], m, min_samples
        )
        for i, head in enumerate(heads)
    ]
    return pd.DataFrame(rows).reindex(columns=RECOMMEND_COLUMNS)


def _recommend_stratum(
    row: dict[str, Any],
    verdicts: list[CapVerdict],
    levels: list[tuple[float, pd.DataFrame]],
    n_family: int,
    min_samples: int,
) -> dict[str, Any]:
    notes = [row["note"]] if row["note"] else []
    row.update(n_family=n_family, n_candidates=sum(v.admitted for v in verdicts))
    row["paired"] = bool(verdicts) and all(v.comparison.energy.ratio.n > 0 for v in verdicts)
    if row["baseline_n"] < min_samples:
        notes.insert(
            0,
            f"the baseline has {count_text(row['baseline_n'], 'items')} (< {min_samples}): "
            "no recommendation",
        )
    elif len(levels) == 1:
        notes.insert(0, "only the baseline frequency was measured")
    elif not verdicts:
        notes.insert(0, f"no other frequency has {min_samples} items")
    best = pick(verdicts)
    if best is None:
        compared = [v for v in verdicts if v.comparison.in_family]
        if compared:
            notes.insert(
                0,
                f"no frequency cap keeps mean latency within +{row['latency_budget_pct']:g} % "
                "of the baseline at the one-sided upper bound",
            )
        elif verdicts:
            why = verdicts[0].comparison.energy.ratio.note.removeprefix("not estimable: ")
            notes.insert(0, f"no cap could be compared with the baseline on its items: {why}")
        return {**row, "note": "; ".join(notes)}
    lo, hi = best.saving_ci
    cap = best.comparison
    row.update(
        recommended_freq_mhz=cap.freq_mhz,
        recommended_label=freq_label(cap.freq_mhz),
        recommended_n=cap.energy.ratio.n,
        recommended_mean=row["baseline_mean"] * best.energy_simultaneous.value,
        recommended_latency_s=row["baseline_latency_s"] * cap.latency.ratio.value,
        saving_pct=best.saving_pct,
        saving_ci_low=lo,
        saving_ci_high=hi,
        latency_change_pct=100.0 * (cap.latency.ratio.value - 1.0),
        latency_change_ci_high=100.0 * (best.latency_upper - 1.0),
        saves_energy=best.claimed,
    )
    if not best.claimed:
        why = best.energy_simultaneous.note
        notes.insert(
            0,
            f"the saving is {why}"
            if why
            else "the best cap within the latency budget does not lower energy; keep the baseline"
            if not best.saving_pct > 0
            else f"the saving is not established: its {row['ci_level']:.0%} interval, "
            f"simultaneous over the study's {count_text(n_family, 'cap comparisons')}, "
            "includes 0; keep the baseline",
        )
    return {**row, "note": "; ".join(notes)}


def savings_headline(recommendations: pd.DataFrame) -> dict[str, Any]:
    """The ``tradeoff`` block of metrics.json: the largest claimed energy saving within budget
    (nulls when no stratum claims one)."""
    out: dict[str, Any] = dict.fromkeys(
        "best_saving_pct best_saving_ci_low best_saving_ci_high recommended_freq_mhz "
        "latency_change_pct latency_change_ci_high latency_budget_pct model task energy_kind".split()
    )
    out |= {"n_strata": len(recommendations), "n_strata_with_saving": 0}
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
