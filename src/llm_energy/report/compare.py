"""Compare DVC experiments, one row per (experiment, configuration, clock): energy sources and
GPU models are never pooled, and no saving is given without an interval."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from llm_energy.analysis.experiments import META_COLUMNS, clock_rows
from llm_energy.analysis.records import freq_label, is_missing
from llm_energy.analysis.tradeoff import pareto_mask
from llm_energy.report.figure_style import finish_figure, label_point, mark_no_data, new_figure

#: the configuration an experiment ran (what splits lines inside one experiment, too)
CONFIG_COLUMNS: tuple[str, ...] = tuple(
    f"config.{k}"
    for k in "model task engine batch_size input_tokens_target output_tokens_target".split()
)
DEFAULT_GROUP_COLUMNS = (*CONFIG_COLUMNS, "energy.kind", "energy.source", "gpu.name")
#: groups that are never pooled, and how the ``group`` column names a missing value
NEVER_POOLED: dict[str, str] = {
    "energy.kind": "energy kind unknown",
    "energy.source": "energy source unknown",
    "gpu.name": "GPU unknown",
}
COMPARE_COLUMNS: list[str] = (
    "group experiment rev freq_mhz label is_baseline energy energy_ci_low energy_ci_high "
    "latency reference reference_energy reference_ci_low reference_ci_high saving_pct "
    "saving_ci_low saving_ci_high latency_change_pct within_budget on_frontier "
    "best_within_budget note"
).split()


def saving_interval(
    energy: tuple[float, float, float], reference: tuple[float, float, float]
) -> tuple[float, float, float]:
    """``(saving %, low, high)`` of ``energy`` vs ``reference``, each ``(value, ci_low, ci_high)``;
    all NaN unless both CIs are finite. The interval combines the two CIs by interval arithmetic
    (conservative: the runs are not paired), so a saving never stands without one."""
    e, lo, hi = (float(v) for v in energy)
    r, rlo, rhi = (float(v) for v in reference)
    if not all(math.isfinite(v) for v in (e, lo, hi, r, rlo, rhi)) or rlo <= 0 or r <= 0:
        return math.nan, math.nan, math.nan
    return 100.0 * (1.0 - e / r), 100.0 * (1.0 - hi / rlo), 100.0 * (1.0 - lo / rhi)


def _dedupe(frame: pd.DataFrame) -> pd.DataFrame:
    """Identical experiments (the workspace repeating an applied one) kept once."""
    value_cols = [c for c in frame.columns if c not in META_COLUMNS]
    order = frame["kind"].map({"experiment": 0, "baseline": 1, "workspace": 2}).fillna(3)
    frame = frame.assign(_order=order.to_numpy()).sort_values("_order", kind="stable")
    values = [repr(t) for t in frame[value_cols].itertuples(index=False, name=None)]
    key = pd.Series(values, index=frame.index)
    return frame[~key.duplicated().to_numpy()].drop(columns="_order")


def _reference_index(g: pd.DataFrame, own: pd.Series) -> int | None:
    """The default-clock row a row is compared with: its own experiment's, else (an experiment
    that ran caps only) the group's first default row, the commit baseline first."""
    mine = np.flatnonzero((own & g["default_clocks"]).to_numpy())
    if mine.size:
        return int(mine[0])
    defaults = g[g["default_clocks"]]
    if defaults.empty:
        return None
    order = defaults["kind"].map({"baseline": 0, "workspace": 1}).fillna(2)
    return int(g.index.get_loc(order.sort_values(kind="stable").index[0]))


def compare_experiments(
    experiments: pd.DataFrame,
    *,
    group_cols: Sequence[str] | None = None,
    latency_budget_pct: float,
    drop_duplicates: bool = True,
) -> pd.DataFrame:
    """Energy and latency per (experiment, configuration, clock) of :func:`clock_rows`, grouped by
    ``group_cols`` plus :data:`NEVER_POOLED`, each compared with a default-clock reference (its
    own experiment's, else the group's). A saving is given only with its :func:`saving_interval`;
    ``best_within_budget``: per reference, the lowest-energy cap within the latency budget whose
    saving interval is above 0. Columns: the group columns, then :data:`COMPARE_COLUMNS`."""
    frame = experiments.copy()
    if frame.empty:
        return pd.DataFrame(columns=[*(group_cols or []), *COMPARE_COLUMNS])
    for col in META_COLUMNS:
        if col not in frame.columns:
            frame[col] = None
    if drop_duplicates:
        frame = _dedupe(frame)
    rows = clock_rows(frame)
    rows = rows[rows["energy"].notna() & rows["latency"].notna()]
    requested = list(group_cols or DEFAULT_GROUP_COLUMNS)
    requested += [c for c in NEVER_POOLED if c not in requested]
    cols = [
        c for c in requested if c in rows.columns and (c in NEVER_POOLED or rows[c].notna().any())
    ]
    if rows.empty:
        return pd.DataFrame(columns=[*cols, *COMPARE_COLUMNS])
    clocks = zip(rows["default_clocks"], rows["freq_mhz"], strict=True)
    rows = rows.assign(label=["default" if d else freq_label(f) for d, f in clocks])
    out = [
        _compare_group(g.reset_index(drop=True), cols, latency_budget_pct)
        for _, g in rows.groupby(cols, dropna=False, sort=True)
    ]
    result = pd.concat(out, ignore_index=True)
    result = result.sort_values(
        [*cols, "experiment", "is_baseline", "freq_mhz"],
        ascending=[True] * (len(cols) + 1) + [False, False],
        kind="stable",
        na_position="first",
    )
    return result[[*cols, *COMPARE_COLUMNS]].reset_index(drop=True)


def _compare_group(g: pd.DataFrame, cols: Sequence[str], budget_pct: float) -> pd.DataFrame:
    n = len(g)
    g["default_clocks"] = g["default_clocks"].fillna(False).astype(bool)
    ref = [_reference_index(g, g["experiment"] == g.at[i, "experiment"]) for i in range(n)]
    trio = g[["energy", "energy_ci_low", "energy_ci_high"]].to_numpy(dtype=float)
    lat = g["latency"].to_numpy(dtype=float)
    cells: dict[str, list] = {c: [] for c in COMPARE_COLUMNS[10:]}  # reference … note
    g["is_baseline"] = [r == i for i, r in enumerate(ref)]
    for i, r in enumerate(ref):
        if r is None or r == i:
            s = (math.nan, math.nan, math.nan)
            change, within = math.nan, False
            text = "" if r is None else f"{g.at[i, 'experiment']} default"
        else:
            s = saving_interval(tuple(trio[i]), tuple(trio[r]))
            change = 100.0 * (lat[i] / lat[r] - 1.0) if lat[r] > 0 else math.nan
            within = bool(lat[i] <= lat[r] * (1.0 + budget_pct / 100.0))
            text = f"{g.at[r, 'experiment']} {g.at[r, 'label']}"
        rv = trio[r] if r is not None else (math.nan,) * 3
        for col, v in zip(COMPARE_COLUMNS[10:18], (text, *rv, *s, change), strict=True):
            cells[col].append(v)
        cells["within_budget"].append(within)
    for col, values in cells.items():
        if values:
            g[col] = values
    g["on_frontier"] = False
    g["best_within_budget"] = False
    # a unit = the rows sharing one reference (a sweep, or cap-only runs vs the commit default)
    unit = [g.at[i if r is None else r, "experiment"] for i, r in enumerate(ref)]
    for _, idx in g.groupby(pd.Series(unit), sort=False).groups.items():
        where = np.asarray(list(idx))
        g.loc[where, "on_frontier"] = pareto_mask(lat[where], trio[where, 0])
        # "best" only where the whole saving interval is above 0
        cand = [i for i in where if g.at[i, "within_budget"] and g.at[i, "saving_ci_low"] > 0]
        if cand:
            g.at[min(cand, key=lambda i: (trio[i, 0], lat[i])), "best_within_budget"] = True
    g["note"] = [_note(g.iloc[i], ref[i], budget_pct) for i in range(n)]
    g["group"] = _group_text(g.iloc[0], cols)
    return g


def _note(row: pd.Series, ref: int | None, budget_pct: float) -> str:
    if ref is None:
        return "no default-clock reference in this group"
    if row["is_baseline"]:
        return "reference (default clocks)"
    parts = []
    if not math.isfinite(row["saving_pct"]):
        parts.append("no interval: values side by side, no saving stated")
    elif row["saving_ci_low"] <= 0 <= row["saving_ci_high"]:
        parts.append("saving interval includes 0")
    if row["best_within_budget"]:
        parts.append("best within budget")
    elif not row["within_budget"]:
        parts.append(f"over the +{budget_pct:g} % latency budget")
    return "; ".join(parts)


def _group_text(row: pd.Series, cols: Sequence[str]) -> str:
    """e.g. "energy nvml · GPU NVIDIA H200 · model smollm2 · task qa" (missing ones named)."""
    parts = []
    for col in cols:
        value = row.get(col)
        if is_missing(value):
            if col in NEVER_POOLED:
                parts.append(NEVER_POOLED[col])
            continue
        name = {"energy.source": "energy", "gpu.name": "GPU"}.get(col, col.split(".")[-1])
        parts.append(f"{name} {value}")
    return " · ".join(parts)


def comparison_figure(comparison: pd.DataFrame, *, title: str | None = None) -> Figure:
    """Energy vs p50 latency per (group, experiment) (:func:`compare_experiments`): points labelled
    with their clock, frontiers joined, the best cap in budget starred, non-measured bannered."""
    title = title or "Experiments: energy vs latency"
    fig, (ax,) = new_figure()
    data = comparison if comparison is not None else pd.DataFrame()
    kinds = list(data["energy.kind"].dropna().unique()) if "energy.kind" in data.columns else []
    if data.empty or not {"energy", "latency"} <= set(data.columns):
        mark_no_data(ax)
        return finish_figure(fig, title, kinds)
    # one series per (group, experiment): the frontier never joins two groups or experiments
    keys = ["group", "experiment"] if "group" in comparison.columns else ["experiment"]
    for name, sub in comparison.groupby(keys, dropna=False, sort=True):
        label = " / ".join(str(v) for v in reversed(name) if not is_missing(v))
        pts = ax.scatter(sub["latency"], sub["energy"], alpha=0.6, label=label or "experiments")
        color = pts.get_facecolor()[0] if len(pts.get_facecolor()) else None
        front = sub[sub["on_frontier"].astype(bool)].sort_values("latency")
        ax.plot(front["latency"], front["energy"], color=color, linewidth=1.5)
        best = sub[sub["best_within_budget"].astype(bool)]
        if not best.empty:
            star = dict(marker="*", s=220, color=color, edgecolor="black", zorder=3)
            ax.scatter(
                best["latency"], best["energy"], label=f"{label} best within budget".strip(), **star
            )
        for x, y, text in zip(sub["latency"], sub["energy"], sub["label"], strict=True):
            label_point(ax, x, y, text)
    ax.set(xlabel="p50 latency (s)", ylabel="energy (J/token)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return finish_figure(fig, title, kinds)
