"""Figures as matplotlib ``Figure`` objects on an Agg canvas (no pyplot state, so no closing;
never saved here). Data of an energy kind other than ``measured`` gets a red banner; a task has
one colour in every figure, and no bar or point averages configurations."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from llm_energy.analysis.records import STRATUM_KEYS, freq_label
from llm_energy.analysis.records import is_missing as _is_missing
from llm_energy.analysis.tradeoff import pareto_frontier
from llm_energy.analysis.windows import window_table
from llm_energy.record_types import ENERGY_KIND_BY_SOURCE
from llm_energy.report.figure_style import (
    MARKERS,
    axis_label,
    energy_source_note,
    finish_figure,
    kinds_of,
    label_point,
    legend_outside,
    mark_no_data,
    new_figure,
    series_label,
    task_colors,
)
from llm_energy.report.sections import config_labels, n_clock_levels

#: bar hatches, as MARKERS for points
HATCHES = (None, "//", "..", "xx", "\\\\", "++", "oo")


def _freq_positions(freqs: Sequence[float]) -> tuple[dict[str, float], list[float], list[str]]:
    """x positions: capped MHz as is, the default group one step right of the highest cap."""
    capped = sorted({float(f) for f in freqs if not _is_missing(f)})
    if capped:
        span = (capped[-1] - capped[0]) or max(capped[-1] * 0.2, 100.0)
        default_x = capped[-1] + 0.15 * span
    else:
        default_x = 0.0
    pos = {freq_label(f): float(f) for f in capped}
    pos["default"] = default_x
    ticks = [float(f) for f in capped]
    labels = [f"{f:g}" for f in capped]
    if any(_is_missing(f) for f in freqs):
        ticks.append(default_x)
        labels.append("default")
    return pos, ticks, labels


def _series(
    data: pd.DataFrame, colors: Mapping[str, str]
) -> Iterator[tuple[str, pd.DataFrame, dict[str, Any]]]:
    """(legend label, rows, style) per series: the task and every other configuration key
    (but the clock) that varies; coloured by task, told apart within a task by marker."""
    varying = [k for k in STRATUM_KEYS if k != "task" and data[k].nunique(dropna=False) > 1]
    keys = ["task", *varying]
    within: dict[str, int] = {}
    for name, sub in data.groupby(keys, dropna=False, sort=True):
        values = dict(zip(keys, name if isinstance(name, tuple) else (name,), strict=True))
        task = str(values["task"])
        within[task] = within.get(task, -1) + 1
        style = {"color": colors.get(task), "marker": MARKERS[within[task] % len(MARKERS)]}
        yield series_label(values), sub, style


def _summary_freq(summary: pd.DataFrame) -> pd.Series:
    freq = pd.to_numeric(summary["freq_applied_mhz"], errors="coerce")
    return freq.where(~summary["default_clocks"].astype(bool))


def _vs_freq(
    summary: pd.DataFrame,
    *,
    value_col: str,
    lo_col: str | None,
    hi_col: str | None,
    ylabel: str,
    title: str,
    colors: Mapping[str, str] | None,
    extra_col: str | None = None,
) -> Figure:
    """One line per series against the clock; ``extra_col`` (p95) dashed in the same colour."""
    fig, (ax,) = new_figure()
    data = summary.copy()
    if data.empty or value_col not in data.columns or data[value_col].notna().sum() == 0:
        mark_no_data(ax)
        return finish_figure(fig, title, kinds_of(summary))
    data["_freq"] = _summary_freq(data)
    pos, ticks, labels = _freq_positions(list(data["_freq"]))
    for label, sub, style in _series(data, colors or task_colors(data["task"])):
        sub = sub.assign(_x=[pos[freq_label(f)] for f in sub["_freq"]]).sort_values("_x")
        y = sub[value_col].to_numpy(dtype=float)
        yerr = None
        if lo_col and hi_col:  # a missing interval draws no bar (never a zero-width one)
            lo = y - sub[lo_col].to_numpy(dtype=float)
            hi = sub[hi_col].to_numpy(dtype=float) - y
            yerr = np.vstack([np.clip(lo, 0, None), np.clip(hi, 0, None)])
        name = f"{label}, p50" if extra_col else label
        ax.errorbar(sub["_x"], y, yerr=yerr, capsize=3, label=name, **style)
        if extra_col:
            p95 = sub[extra_col].to_numpy(dtype=float)
            ax.plot(sub["_x"], p95, linestyle="--", alpha=0.7, label=f"{label}, p95", **style)
    ax.set_xticks(ticks, labels)
    ax.set(xlabel="SM clock cap (MHz)", ylabel=ylabel)
    ax.grid(alpha=0.3)
    legend_outside(ax)
    return finish_figure(fig, title, kinds_of(summary))


def energy_vs_freq(
    summary: pd.DataFrame, *, metric: str = "j_per_token", colors: Mapping[str, str] | None = None
) -> Figure:
    """Mean ``metric`` per frequency, its interval over items as error bars, a line per series."""
    return _vs_freq(
        summary,
        value_col=f"{metric}_mean",
        lo_col=f"{metric}_ci_low",
        hi_col=f"{metric}_ci_high",
        ylabel=axis_label(metric),
        title=f"{axis_label(metric).split(' (')[0].capitalize()} vs SM clock cap (mean ± CI)"
        f"{energy_source_note(summary)}",
        colors=colors,
    )


def latency_vs_freq(summary: pd.DataFrame, *, colors: Mapping[str, str] | None = None) -> Figure:
    """p50 latency per frequency (solid) and p95 (dashed, same colour)."""
    return _vs_freq(
        summary,
        value_col="latency_p50_s",
        lo_col=None,
        hi_col=None,
        ylabel="p50 latency (s); p95 dashed",
        title="p50 latency vs SM clock cap (p95 dashed)",
        colors=colors,
        extra_col="latency_p95_s",
    )


def pareto_plot(
    frontier: pd.DataFrame,
    *,
    energy_col: str = "j_per_token_mean",
    latency_col: str = "latency_p50_s",
    colors: Mapping[str, str] | None = None,
) -> Figure:
    """Energy vs latency per configuration, one panel per task, frontier points joined and
    labelled with MHz (from :func:`pareto_frontier`'s output, or a summary)."""
    data = frontier if "on_frontier" in frontier.columns else pareto_frontier(frontier)
    title = f"Energy–latency trade-off (Pareto frontier){energy_source_note(data)}"
    data = data.dropna(subset=[energy_col, latency_col]) if not data.empty else data
    tasks = sorted(data["task"].astype(str).unique()) if not data.empty else []
    fig, axes = new_figure(max(len(tasks), 1))
    if not tasks:
        mark_no_data(axes[0])
        return finish_figure(fig, title, kinds_of(frontier))
    colors = colors or task_colors(tasks)
    for ax, task in zip(axes, tasks, strict=True):
        for label, sub, style in _series(data[data["task"].astype(str) == task], colors):
            sub = sub.sort_values(latency_col)
            ax.scatter(sub[latency_col], sub[energy_col], alpha=0.5, **style)
            front = sub[sub["on_frontier"].astype(bool)]
            ax.plot(front[latency_col], front[energy_col], linewidth=2, label=label, **style)
            labels = sub["label"] if "label" in sub.columns else sub.get("freq_applied_mhz")
            for x, y, text in zip(sub[latency_col], sub[energy_col], labels, strict=True):
                label_point(ax, x, y, text)
        ax.set_title(task)
        ax.set(xlabel=axis_label(latency_col), ylabel=axis_label(energy_col))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, title="frontier")
    return finish_figure(fig, title, kinds_of(data))


def energy_vs_length(
    requests: pd.DataFrame,
    *,
    length: str = "output_tokens",
    metric: str = "energy_j",
    colors: Mapping[str, str] | None = None,
) -> Figure:
    """One point per measurement window (its energy per request against its mean length per
    request), coloured by task: tasks differ in both lengths, so a trend across the colours is
    the tasks, not the length (docs/statistics.md)."""
    title = (
        f"{axis_label(metric).split(' (')[0].capitalize()} vs {length.split('_')[0]} length, "
        f"by task{energy_source_note(requests)}"
    )
    fig, (ax,) = new_figure()
    windows = window_table(requests) if not requests.empty else requests
    if windows.empty or length not in windows.columns or metric not in windows.columns:
        mark_no_data(ax)
        return finish_figure(fig, title, kinds_of(requests))
    for label, sub, style in _series(windows, colors or task_colors(windows["task"])):
        x = pd.to_numeric(sub[length], errors="coerce")
        y = pd.to_numeric(sub[metric], errors="coerce")
        ax.scatter(x, y, s=12, alpha=0.6, label=label, **style)
    ax.set(xlabel=axis_label(length), ylabel=axis_label(metric))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, title="task")
    return finish_figure(fig, title, kinds_of(requests))


def energy_vs_input_length(requests: pd.DataFrame, **kw: Any) -> Figure:
    return energy_vs_length(requests, length="input_tokens", **kw)


def energy_vs_output_length(requests: pd.DataFrame, **kw: Any) -> Figure:
    return energy_vs_length(requests, length="output_tokens", **kw)


def j_per_token_by_task(
    summary: pd.DataFrame, *, colors: Mapping[str, str] | None = None
) -> Figure:
    """One bar per configuration (summary.csv's J/token, Σ energy / Σ tokens), grouped and
    coloured by task, with its interval over items; a configuration without an interval gets no
    error bar (never a zero-width one), and no bar averages configurations."""
    title = f"Energy per token by task and configuration{energy_source_note(summary)}"
    fig, (ax,) = new_figure()
    data = summary[summary["j_per_token_mean"].notna()] if not summary.empty else summary
    if data.empty:
        mark_no_data(ax)
        return finish_figure(fig, title, kinds_of(summary))
    data = data.copy().assign(_clock=config_labels(data), _freq=_summary_freq(data).fillna(np.inf))
    colors = colors or task_colors(data["task"])
    x, ticks = 0.0, []
    for label, sub, style in _series(data, colors):
        sub = sub.sort_values("_freq", ascending=False)
        y = sub["j_per_token_mean"].to_numpy(dtype=float)
        err = np.vstack([y - sub["j_per_token_ci_low"], sub["j_per_token_ci_high"] - y]).clip(0)
        xs = x + np.arange(len(sub))
        hatch = HATCHES[MARKERS.index(style["marker"])]  # a task's configurations apart
        ax.bar(xs, y, yerr=err, capsize=2, color=style["color"], hatch=hatch, label=label)
        ticks += [(xi, clock) for xi, clock in zip(xs, sub["_clock"], strict=True)]
        x = xs[-1] + 1.5
    ax.set_xticks([t for t, _ in ticks], [c for _, c in ticks], rotation=45, fontsize=8)
    ax.set(xlabel="clock", ylabel="energy per token (J/token)")
    ax.grid(alpha=0.3, axis="y")
    legend_outside(ax, title="task")
    return finish_figure(fig, title, kinds_of(summary))


def power_timeline(
    samples: pd.DataFrame,
    *,
    energy_kind: str | None = None,
    title: str = "GPU power timeline",
    freq_col: str | None = None,
) -> Figure:
    """Power (W) against time (relative to the first sample) from the sampler's CSV, the SM clock
    on a second axis. Without ``energy_kind`` or an ``energy_kind`` / ``energy_source`` column
    the trace's provenance is unknown and the figure says so."""
    fig, (ax,) = new_figure()
    kinds: list[Any] = [energy_kind] if energy_kind is not None else []
    if samples is not None and not samples.empty:  # power_timeline.csv: not a record file
        if "energy_kind" in samples.columns:
            kinds.extend(samples["energy_kind"].dropna().unique())
        elif "energy_source" in samples.columns:
            sources = samples["energy_source"].dropna().astype(str).str.lower()
            kinds.extend(sources.map(ENERGY_KIND_BY_SOURCE).fillna("unknown").unique())
    if not kinds:
        kinds = ["unknown"]
    if samples is None or samples.empty or not {"t_s", "power_w"} <= set(samples.columns):
        mark_no_data(ax)
        return finish_figure(fig, title, kinds)
    data = samples.sort_values("t_s")
    t = pd.to_numeric(data["t_s"], errors="coerce")
    t = t - t.min()
    power = pd.to_numeric(data["power_w"], errors="coerce")
    marker = "." if len(data) < 3 else None
    ax.plot(t, power, marker=marker, linewidth=1.2, color="#1f77b4", label="power")
    ax.set(xlabel="time since first sample (s)", ylabel="power (W)")
    ax.grid(alpha=0.3)
    clock_col = freq_col or next(
        (c for c in ("sm_clock_mhz", "freq_mhz") if c in data.columns), None
    )
    if clock_col and clock_col in data.columns and data[clock_col].notna().any():
        ax2 = ax.twinx()
        clock = pd.to_numeric(data[clock_col], errors="coerce")
        ax2.step(t, clock, where="post", color="#ff7f0e", alpha=0.7)
        ax2.set_ylabel("SM clock (MHz)", color="#ff7f0e")
    return finish_figure(fig, title, kinds)


def standard_figures(
    summary: pd.DataFrame, requests: pd.DataFrame, *, frontier: pd.DataFrame | None = None
) -> dict[str, Figure]:
    """The report's figure set, name → Figure (names are file stems for the stage script), one
    colour per task throughout; the clock figures only when more than one clock was run."""
    colors = task_colors([*summary.get("task", []), *requests.get("task", [])])
    figures = {}
    if n_clock_levels(summary) > 1:
        front = frontier if frontier is not None else pareto_frontier(summary)
        figures = {
            "energy_vs_freq": energy_vs_freq(summary, colors=colors),
            "latency_vs_freq": latency_vs_freq(summary, colors=colors),
            "pareto": pareto_plot(front, colors=colors),
        }
    return figures | {
        "energy_vs_input_length": energy_vs_input_length(requests, colors=colors),
        "energy_vs_output_length": energy_vs_output_length(requests, colors=colors),
        "j_per_token_by_task": j_per_token_by_task(summary, colors=colors),
    }
