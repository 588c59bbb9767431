"""One Pareto for every knob: per task, every configuration's J/token against its p50 latency
and its TPOT, whichever knob set it (SM clock lock, power limit, memory clock, or none), the
front over all of them, and which knob dominates it, overall and per phase. Pure."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from llm_energy.analysis.records import is_missing
from llm_energy.analysis.tradeoff import pareto_mask
from llm_energy.report import figure_style as style

#: summary column of each knob, as the report names it (the SM clock is null at default clocks)
KNOBS: dict[str, str] = {
    "freq_applied_mhz": "SM clock lock",
    "power_limit_applied_w": "power limit",
    "mem_freq_applied_mhz": "memory clock",
}
_UNITS = {"freq_applied_mhz": "{:g} MHz", "power_limit_applied_w": "{:g} W"}
#: (energy, latency) columns of the fronts the sentences read
FRONTS = {
    "": ("j_per_token_mean", "latency_p50_s"),
    "prefill": ("prefill_energy_j_mean", "prefill_time_s_mean"),
    "decode": ("decode_energy_j_mean", "decode_time_s_mean"),
}


def knob_of(row: pd.Series) -> tuple[str, str]:
    """(knob, point label) of a summary row: "default" with no knob set, "combined" with several."""
    set_ = [c for c in KNOBS if c in row.index and not is_missing(row[c])]
    if not set_:
        return "default", "default"
    labels = [_UNITS.get(c, "mem {:g} MHz").format(row[c]) for c in set_]
    return (KNOBS[set_[0]] if len(set_) == 1 else "combined"), " + ".join(labels)


def knob_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Summary rows with ``knob`` and ``knob_label`` columns."""
    out = summary.copy()
    pairs = [knob_of(row) for _, row in out.iterrows()]
    out["knob"] = [p[0] for p in pairs]
    out["knob_label"] = [p[1] for p in pairs]
    return out


def knob_kinds(summary: pd.DataFrame | None) -> int:
    """How many knobs (SM clock lock, power limit, memory clock) the run set."""
    if summary is None or summary.empty:
        return 0
    return sum(1 for c in KNOBS if c in summary and summary[c].notna().any())


def knob_sentences(summary: pd.DataFrame | None) -> list[str]:
    """Per model and task, with 2+ knobs: which knob holds the lowest-energy point of each
    front (J/token vs p50; prefill and decode energy vs their time)."""
    if knob_kinds(summary) < 2:
        return []
    out = []
    for (model, task), group in knob_table(summary).groupby(["model", "task"], sort=True):
        parts = []
        for phase, (energy, latency) in FRONTS.items():
            if energy not in group or group[energy].isna().all():
                continue
            front = group[pareto_mask(group[latency].to_numpy(), group[energy].to_numpy())]
            if front.empty:
                continue
            best = front.loc[front[energy].idxmin()]
            counts = front["knob"].value_counts()
            mix = ", ".join(f"{n} {k}" for k, n in counts.items())
            where = f"for {phase}" if phase else "overall"
            parts.append(f"{where} {best['knob']} ({best['knob_label']}; front: {mix})")
        if parts:
            out.append(
                f"Which knob dominates ({task}, {model}; the lowest-energy point of each "
                f"energy–latency front): {'; '.join(parts)}."
            )
    return out


def knob_pareto(summary: pd.DataFrame) -> Figure:
    """Per task two panels, J/token vs p50 latency and vs TPOT: every configuration marked by
    its knob and labelled with its value, the front over all of them as a line."""
    table = knob_table(summary)
    tasks = sorted(table["task"].dropna().astype(str).unique())
    colors, knobs = style.task_colors(tasks), ["default", *KNOBS.values(), "combined"]
    fig = Figure(figsize=(11, 3.6 * max(len(tasks), 1)))
    FigureCanvasAgg(fig)  # its own canvas, never pyplot's global backend
    for i, task in enumerate(tasks):
        sub = table[table["task"] == task]
        for j, latency in enumerate(("latency_p50_s", "tpot_s_mean")):
            ax = fig.add_subplot(len(tasks), 2, 2 * i + j + 1)
            x, y = sub[latency].to_numpy(dtype=float), sub["j_per_token_mean"].to_numpy(float)
            for marker, knob in zip(style.MARKERS, knobs, strict=False):  # more markers than knobs
                mine = (sub["knob"] == knob).to_numpy()
                if mine.any():
                    ax.scatter(x[mine], y[mine], marker=marker, color=colors[task], label=knob)
            front = pareto_mask(x, y)
            order = np.argsort(x[front])
            ax.plot(x[front][order], y[front][order], color=colors[task], linewidth=1.2)
            for xi, yi, text in zip(x, y, sub["knob_label"], strict=True):
                style.label_point(ax, xi, yi, text)
            xlabel = "p50 latency (s)" if j == 0 else "time per output token (s)"
            ax.set(xlabel=xlabel, ylabel="energy per token (J/token)")
            ax.set_title(task)
            ax.legend(fontsize=7, title="knob", title_fontsize=7)
    title = "Energy–latency trade-off of every knob (line: the front over all of them)"
    return style.finish_figure(fig, title, style.kinds_of(summary))


def knob_figures(summary: pd.DataFrame | None) -> dict[str, Any]:
    """``{"pareto_knobs": figure}`` when the run set 2+ knobs, else nothing."""
    return {"pareto_knobs": knob_pareto(summary)} if knob_kinds(summary) >= 2 else {}
