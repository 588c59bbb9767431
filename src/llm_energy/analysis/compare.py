"""Compare DVC experiments: rank frequency caps across runs (one point per experiment).

The experiments come from :func:`llm_energy.analysis.experiments.experiments_from_dvc_json`
(re-exported here for the CLI). Energy sources and GPU models are never pooled.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from llm_energy.analysis.experiments import META_COLUMNS, experiments_from_dvc_json
from llm_energy.analysis.figures import finish_figure, mark_no_data, new_figure
from llm_energy.analysis.records import freq_label, is_missing
from llm_energy.analysis.tradeoff import choose_within_budget, pareto_mask

__all__ = [
    "COMPARE_COLUMNS",
    "DEFAULT_GROUP_COLUMNS",
    "META_COLUMNS",
    "compare_experiments",
    "comparison_figure",
    "comparison_table",
    "experiments_from_dvc_json",
]

DEFAULT_GROUP_COLUMNS: tuple[str, ...] = (
    "config.model",
    "config.task",
    "config.engine",
    "config.batch_size",
    "config.input_tokens_target",
    "config.output_tokens_target",
    "energy.kind",
    "energy.source",
    "gpu.name",
)
#: groups that are never pooled, and how the ``group`` column names a missing value
NEVER_POOLED: dict[str, str] = {
    "energy.kind": "energy kind unknown",
    "energy.source": "energy source unknown",
    "gpu.name": "GPU unknown",
}
COMPARE_COLUMNS: list[str] = [
    "group",
    "experiment",
    "rev",
    "freq_mhz",
    "label",
    "is_baseline",
    "energy",
    "latency",
    "saving_pct",
    "latency_change_pct",
    "within_budget",
    "on_frontier",
    "best_within_budget",
    "note",
]


# --- comparison ------------------------------------------------------------------------------------


def _first_col(frame: pd.DataFrame, candidates: Sequence[str]) -> str | None:
    for c in candidates:
        if c in frame.columns and frame[c].notna().any():
            return c
    return None


def compare_experiments(
    experiments: pd.DataFrame,
    *,
    energy_col: str = "energy.j_per_token",
    latency_col: str = "perf.latency_p50_s",
    freq_cols: Sequence[str] = ("gpu.freq_applied_mhz", "gpu.freq"),
    group_cols: Sequence[str] | None = None,
    latency_budget_pct: float = 5.0,
    drop_duplicates: bool = True,
) -> pd.DataFrame:
    """Energy vs latency per frequency across experiments, with the best cap within budget.

    Each experiment contributes one point (its headline metrics). Experiments are grouped by
    ``group_cols`` (default: those of :data:`DEFAULT_GROUP_COLUMNS` present, i.e. model, task,
    …, energy kind, energy source and GPU model). Energy sources (nvml / rapl /
    codecarbon-estimate / simulated) and GPU models are never pooled, even with explicit
    ``group_cols``: a missing value is a group of its own, and the ``group`` column states each
    row's group. Inside a group the baseline is the experiment at
    default clocks (``gpu.freq_mode == "default"`` or a null frequency), else the highest
    frequency; ``saving_pct`` = 100 × (1 − energy/baseline), ``within_budget`` means p50
    latency ≤ baseline × (1 + budget), ``best_within_budget`` marks the lowest-energy cap
    within budget (the rule of :func:`~llm_energy.analysis.tradeoff.recommend_cap`) and
    ``on_frontier`` the Pareto-optimal points. Experiments that ran several frequencies
    (``gpu.freq_mode == "mixed"``), or lack the energy / latency metric, are left out.
    Identical rows (the workspace repeating an experiment) are kept once.

    Columns: the group columns, then :data:`COMPARE_COLUMNS`.
    """
    frame = experiments.copy()
    if frame.empty or energy_col not in frame.columns or latency_col not in frame.columns:
        return pd.DataFrame(columns=[*(group_cols or []), *COMPARE_COLUMNS])
    for col in META_COLUMNS:
        if col not in frame.columns:
            frame[col] = None
    requested = list(group_cols or DEFAULT_GROUP_COLUMNS)
    requested += [c for c in NEVER_POOLED if c not in requested]
    cols = [c for c in requested if c in frame.columns]
    freq_col = _first_col(frame, freq_cols)
    frame["energy"] = pd.to_numeric(frame[energy_col], errors="coerce")
    frame["latency"] = pd.to_numeric(frame[latency_col], errors="coerce")
    frame = frame[frame["energy"].notna() & frame["latency"].notna()]
    if "gpu.freq_mode" in frame.columns:
        frame = frame[frame["gpu.freq_mode"].astype("object").fillna("") != "mixed"]
    if drop_duplicates and not frame.empty:
        value_cols = [c for c in frame.columns if c not in META_COLUMNS]
        order = frame["kind"].map({"experiment": 0, "baseline": 1, "workspace": 2}).fillna(3)
        frame = frame.assign(_order=order.to_numpy()).sort_values("_order", kind="stable")
        key = pd.Series(
            [repr(t) for t in frame[value_cols].itertuples(index=False, name=None)],
            index=frame.index,
        )
        frame = frame[~key.duplicated().to_numpy()].drop(columns="_order")
    if frame.empty:
        return pd.DataFrame(columns=[*cols, *COMPARE_COLUMNS])
    frame["freq_mhz"] = pd.to_numeric(frame[freq_col], errors="coerce") if freq_col else np.nan
    default = frame["freq_mhz"].isna()
    if "gpu.freq_mode" in frame.columns:
        mode = frame["gpu.freq_mode"].astype("object")
        default = (mode == "default") | (mode.isna() & default)
    frame["_default"] = default.to_numpy()
    frame["label"] = [
        "default" if d else freq_label(f)
        for d, f in zip(frame["_default"], frame["freq_mhz"], strict=True)
    ]
    out_rows: list[pd.DataFrame] = []
    grouped = frame.groupby(cols, dropna=False, sort=True) if cols else [((), frame)]
    for _, group in grouped:
        g = group.reset_index(drop=True).copy()
        if g["_default"].any():
            b = int(np.flatnonzero(g["_default"].to_numpy())[0])
        elif g["freq_mhz"].notna().any():
            b = int(g["freq_mhz"].idxmax())
        else:
            b = 0
        e = g["energy"].to_numpy(dtype=float)
        lat = g["latency"].to_numpy(dtype=float)
        best, within = choose_within_budget(e, lat, b, latency_budget_pct)
        g["is_baseline"] = [i == b for i in range(len(g))]
        with np.errstate(divide="ignore", invalid="ignore"):
            g["saving_pct"] = 100.0 * (1.0 - e / e[b]) if e[b] != 0 else math.nan
            g["latency_change_pct"] = 100.0 * (lat / lat[b] - 1.0) if lat[b] > 0 else math.nan
        g["within_budget"] = [i in within for i in range(len(g))]
        g["on_frontier"] = pareto_mask(lat, e)
        g["best_within_budget"] = [
            best is not None and i == best and e[i] < e[b] for i in range(len(g))
        ]
        notes = []
        for i in range(len(g)):
            if i == b:
                notes.append("baseline")
            elif best is not None and i == best:
                notes.append(
                    "best within budget" if e[i] < e[b] else "best within budget, but no saving"
                )
            elif i in within:
                notes.append("within budget")
            else:
                notes.append(f"over the +{latency_budget_pct:g} % latency budget")
        g["note"] = notes
        g["group"] = _group_text(g.iloc[0], cols)
        out_rows.append(g)
    result = pd.concat(out_rows, ignore_index=True)
    result = result.sort_values(
        [*cols, "is_baseline", "freq_mhz"],
        ascending=[True] * len(cols) + [False, False],
        kind="stable",
        na_position="first",
    )
    return result[[*cols, *COMPARE_COLUMNS]].reset_index(drop=True)


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


#: the name the CLI uses
comparison_table = compare_experiments


def comparison_figure(comparison: pd.DataFrame, *, title: str | None = None) -> Figure:
    """Energy vs p50 latency per experiment (output of :func:`compare_experiments`): points
    labelled with their clock, the Pareto frontier joined, the best cap within budget starred,
    a banner when the energy is not measured."""
    title = title or "Experiments: energy vs latency"
    fig, (ax,) = new_figure()
    kinds = (
        list(comparison["energy.kind"].dropna().unique())
        if "energy.kind" in comparison.columns
        else []
    )
    if (
        comparison is None
        or comparison.empty
        or not {"energy", "latency"} <= set(comparison.columns)
    ):
        mark_no_data(ax)
        return finish_figure(fig, title, kinds)
    group_cols = [
        c for c in DEFAULT_GROUP_COLUMNS if c in comparison.columns and c != "energy.kind"
    ]
    groups = (
        comparison.groupby(group_cols, dropna=False, sort=True)
        if group_cols
        else [("all", comparison)]
    )
    for name, sub in groups:
        label = ", ".join(
            str(v) for v in (name if isinstance(name, tuple) else (name,)) if not is_missing(v)
        )
        pts = ax.scatter(sub["latency"], sub["energy"], alpha=0.6, label=label or "experiments")
        color = pts.get_facecolor()[0] if len(pts.get_facecolor()) else None
        front = sub[sub["on_frontier"].astype(bool)].sort_values("latency")
        ax.plot(front["latency"], front["energy"], color=color, linewidth=1.5)
        best = sub[sub["best_within_budget"].astype(bool)]
        if not best.empty:
            ax.scatter(
                best["latency"],
                best["energy"],
                marker="*",
                s=220,
                color=color,
                edgecolor="black",
                zorder=3,
                label=f"{label} best within budget".strip(),
            )
        for x, y, text in zip(sub["latency"], sub["energy"], sub["label"], strict=True):
            ax.annotate(
                str(text).replace(" MHz", ""),
                (x, y),
                textcoords="offset points",
                xytext=(4, 4),
                fontsize=8,
            )
    ax.set_xlabel("p50 latency (s)")
    ax.set_ylabel("energy (J/token)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return finish_figure(fig, title, kinds)
