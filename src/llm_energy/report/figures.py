"""Figures as matplotlib ``Figure`` objects (Agg backend, never shown, never saved here).

Figures are built with :class:`matplotlib.figure.Figure` on an Agg canvas directly (no pyplot
state, no global backend switch), so they need no closing. Every figure whose data holds an energy kind other than ``measured`` carries
a red banner (:func:`energy_kind_banner`). Saving to disk is the stage scripts' job;
:func:`figure_png_bytes` renders in memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from llm_energy.analysis.records import CONFIG_KEYS, freq_label
from llm_energy.analysis.records import is_missing as _is_missing
from llm_energy.analysis.tradeoff import pareto_frontier
from llm_energy.analysis.windows import window_table
from llm_energy.record_types import ENERGY_KIND_BY_SOURCE
from llm_energy.report.figure_style import (
    axis_label,
    energy_source_note,
    finish_figure,
    kinds_of,
    label_point,
    mark_no_data,
    new_figure,
)

# --- frequency axis ------------------------------------------------------------------------------


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


def _series_keys(summary: pd.DataFrame) -> list[str]:
    """Configuration keys (other than frequency) that vary: they name the plotted series."""
    keys = [k for k in CONFIG_KEYS if k != "freq_applied_mhz"]
    varying = [k for k in keys if summary[k].nunique(dropna=False) > 1]
    return varying or ["model"]


def _series_name(row_key: Any, keys: Sequence[str]) -> str:
    key_t = row_key if isinstance(row_key, tuple) else (row_key,)
    return ", ".join(f"{v}" for v in key_t if not _is_missing(v)) or "all"


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
    extra_col: str | None = None,
    extra_label: str | None = None,
) -> Figure:
    fig, (ax,) = new_figure()
    data = summary.copy()
    if data.empty or value_col not in data.columns or data[value_col].notna().sum() == 0:
        mark_no_data(ax)
        return finish_figure(fig, title, kinds_of(summary))
    data["_freq"] = _summary_freq(data)
    pos, ticks, labels = _freq_positions(list(data["_freq"]))
    keys = _series_keys(data)
    for name, sub in data.groupby(keys, dropna=False, sort=True):
        sub = sub.assign(_x=[pos[freq_label(f)] for f in sub["_freq"]]).sort_values("_x")
        y = sub[value_col].to_numpy(dtype=float)
        yerr = None
        if lo_col and hi_col and lo_col in sub.columns and hi_col in sub.columns:
            lo = np.nan_to_num(y - sub[lo_col].to_numpy(dtype=float), nan=0.0)
            hi = np.nan_to_num(sub[hi_col].to_numpy(dtype=float) - y, nan=0.0)
            yerr = np.vstack([np.clip(lo, 0, None), np.clip(hi, 0, None)])
        label = _series_name(name, keys)
        ax.errorbar(sub["_x"], y, yerr=yerr, marker="o", capsize=3, label=label)
        if extra_col and extra_col in sub.columns:
            ax.plot(
                sub["_x"],
                sub[extra_col].to_numpy(dtype=float),
                linestyle="--",
                marker="x",
                alpha=0.7,
                label=f"{label} ({extra_label or extra_col})",
            )
    ax.set_xticks(ticks, labels)
    ax.set_xlabel("SM clock cap (MHz)")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return finish_figure(fig, title, kinds_of(summary))


def energy_vs_freq(summary: pd.DataFrame, *, metric: str = "j_per_token") -> Figure:
    """Mean ``metric`` per frequency with its interval over items as error bars, one line per
    series."""
    return _vs_freq(
        summary,
        value_col=f"{metric}_mean",
        lo_col=f"{metric}_ci_low",
        hi_col=f"{metric}_ci_high",
        ylabel=axis_label(metric),
        title=f"{axis_label(metric).split(' (')[0].capitalize()} vs SM clock cap (mean ± CI)"
        f"{energy_source_note(summary)}",
    )


def latency_vs_freq(summary: pd.DataFrame) -> Figure:
    """p50 latency per frequency (solid) and p95 (dashed)."""
    return _vs_freq(
        summary,
        value_col="latency_p50_s",
        lo_col=None,
        hi_col=None,
        ylabel="p50 latency (s); p95 dashed",
        title="p50 latency vs SM clock cap (p95 dashed)",
        extra_col="latency_p95_s",
        extra_label="p95",
    )


def pareto_plot(
    frontier: pd.DataFrame,
    *,
    energy_col: str = "j_per_token_mean",
    latency_col: str = "latency_p50_s",
) -> Figure:
    """Energy vs latency per configuration, frontier points highlighted, labelled with MHz.

    Accepts the output of :func:`~llm_energy.analysis.tradeoff.pareto_frontier` (or a summary,
    whose frontier is then computed here).
    """
    fig, (ax,) = new_figure()
    data = frontier if "on_frontier" in frontier.columns else pareto_frontier(frontier)
    title = f"Energy–latency trade-off (Pareto frontier){energy_source_note(data)}"
    if data.empty or data[[energy_col, latency_col]].dropna().empty:
        mark_no_data(ax)
        return finish_figure(fig, title, kinds_of(data))
    keys = _series_keys(data)
    for name, sub in data.groupby(keys, dropna=False, sort=True):
        sub = sub.sort_values(latency_col)
        label = _series_name(name, keys)
        pts = ax.scatter(sub[latency_col], sub[energy_col], alpha=0.5, label=label)
        front = sub[sub["on_frontier"].astype(bool)]
        color = pts.get_facecolor()[0] if len(pts.get_facecolor()) else None
        ax.plot(
            front[latency_col],
            front[energy_col],
            marker="o",
            markersize=8,
            color=color,
            linewidth=2,
            label=f"{label} frontier",
        )
        labels = sub["label"] if "label" in sub.columns else sub.get("freq_applied_mhz")
        for x, y, text in zip(sub[latency_col], sub[energy_col], labels, strict=True):
            if np.isfinite(x) and np.isfinite(y):
                label_point(ax, x, y, text)
    ax.set_xlabel(axis_label(latency_col))
    ax.set_ylabel(axis_label(energy_col))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return finish_figure(fig, title, kinds_of(data))


def energy_vs_length(
    requests: pd.DataFrame, *, length: str = "output_tokens", metric: str = "energy_j"
) -> Figure:
    """One point per measurement window (its energy per request against its mean length per
    request), coloured by task and output-length target: tasks differ in both lengths, so a
    trend across the colours is the tasks, not the length (docs/statistics.md)."""
    title = (
        f"{axis_label(metric).split(' (')[0].capitalize()} vs {length.split('_')[0]} length, "
        f"by task{energy_source_note(requests)}"
    )
    fig, (ax,) = new_figure()
    windows = window_table(requests) if not requests.empty else requests
    if windows.empty or length not in windows.columns or metric not in windows.columns:
        mark_no_data(ax)
        return finish_figure(fig, title, kinds_of(requests))
    for (task, target), sub in windows.groupby(["task", "output_tokens_target"], sort=True):
        ax.scatter(
            pd.to_numeric(sub[length], errors="coerce"),
            pd.to_numeric(sub[metric], errors="coerce"),
            s=12,
            alpha=0.6,
            label=f"{task} (≤{int(target)} output tokens)",
        )
    ax.set_xlabel(axis_label(length))
    ax.set_ylabel(axis_label(metric))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, title="task")
    return finish_figure(fig, title, kinds_of(requests))


def energy_vs_input_length(requests: pd.DataFrame, *, metric: str = "energy_j") -> Figure:
    return energy_vs_length(requests, length="input_tokens", metric=metric)


def energy_vs_output_length(requests: pd.DataFrame, *, metric: str = "energy_j") -> Figure:
    return energy_vs_length(requests, length="output_tokens", metric=metric)


def j_per_token_bars(summary: pd.DataFrame, *, by: str = "task") -> Figure:
    """Bars of mean J/token per ``by`` category (task or model), one bar per frequency level.

    When several configurations share a (category, frequency) cell their means are averaged
    weighted by n and no error bar is drawn; otherwise the interval over items is drawn.
    """
    title = f"Energy per token by {by}{energy_source_note(summary)}"
    fig, (ax,) = new_figure()
    if summary.empty or by not in summary.columns:
        mark_no_data(ax)
        return finish_figure(fig, title, kinds_of(summary))
    data = summary[summary["j_per_token_mean"].notna()].copy()
    if data.empty:
        mark_no_data(ax)
        return finish_figure(fig, title, kinds_of(summary))
    data["_freq"] = [freq_label(f) for f in _summary_freq(data)]
    data["_w"] = pd.to_numeric(data["n"], errors="coerce").fillna(1).clip(lower=1)
    cats = sorted(data[by].astype(str).unique())
    freq_order = sorted(
        data["_freq"].unique(),
        key=lambda s: (s != "default", -float(s.split()[0]) if s != "default" else 0.0),
    )
    width = 0.8 / max(len(freq_order), 1)
    for j, flabel in enumerate(freq_order):
        heights, errs_lo, errs_hi = [], [], []
        for cat in cats:
            cell = data[(data[by].astype(str) == cat) & (data["_freq"] == flabel)]
            if cell.empty:
                heights.append(np.nan)
                errs_lo.append(0.0)
                errs_hi.append(0.0)
                continue
            mean = float(np.average(cell["j_per_token_mean"], weights=cell["_w"]))
            heights.append(mean)
            if len(cell) == 1:
                errs_lo.append(
                    max(0.0, float(np.nan_to_num(mean - cell["j_per_token_ci_low"].iloc[0])))
                )
                errs_hi.append(
                    max(0.0, float(np.nan_to_num(cell["j_per_token_ci_high"].iloc[0] - mean)))
                )
            else:
                errs_lo.append(0.0)
                errs_hi.append(0.0)
        x = np.arange(len(cats)) + (j - (len(freq_order) - 1) / 2) * width
        ax.bar(
            x,
            np.nan_to_num(heights),
            width=width,
            yerr=np.vstack([errs_lo, errs_hi]),
            capsize=2,
            label=flabel,
        )
    ax.set_xticks(np.arange(len(cats)), cats, rotation=20)
    ax.set_ylabel("energy per token (J/token, mean)")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8, title="clock")
    return finish_figure(fig, title, kinds_of(summary))


def j_per_token_by_task(summary: pd.DataFrame) -> Figure:
    return j_per_token_bars(summary, by="task")


def j_per_token_by_model(summary: pd.DataFrame) -> Figure:
    return j_per_token_bars(summary, by="model")


def power_timeline(
    samples: pd.DataFrame,
    *,
    energy_kind: str | None = None,
    title: str = "GPU power timeline",
    freq_col: str | None = None,
) -> Figure:
    """Power (W) against time from a frame with ``t_s`` and ``power_w`` (the sampler's CSV:
    ``t_s,power_w,sm_clock_mhz``, t_s in Unix seconds; plotted relative to the first sample).

    Pass ``energy_kind`` (e.g. metrics.json ``energy.kind``) or give the frame an
    ``energy_kind`` / ``energy_source`` column: without either the trace's provenance is
    unknown and the figure says so. The SM clock (``freq_col``, default ``sm_clock_mhz`` or
    ``freq_mhz`` when present) is drawn on a second axis.
    """
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
    ax.plot(
        t,
        pd.to_numeric(data["power_w"], errors="coerce"),
        marker="." if len(data) < 3 else None,
        linewidth=1.2,
        color="#1f77b4",
        label="power",
    )
    ax.set_xlabel("time since first sample (s)")
    ax.set_ylabel("power (W)")
    ax.grid(alpha=0.3)
    clock_col = freq_col or next(
        (c for c in ("sm_clock_mhz", "freq_mhz") if c in data.columns), None
    )
    if clock_col and clock_col in data.columns and data[clock_col].notna().any():
        ax2 = ax.twinx()
        ax2.step(
            t,
            pd.to_numeric(data[clock_col], errors="coerce"),
            where="post",
            color="#ff7f0e",
            alpha=0.7,
        )
        ax2.set_ylabel("SM clock (MHz)", color="#ff7f0e")
    return finish_figure(fig, title, kinds)


def standard_figures(
    summary: pd.DataFrame, requests: pd.DataFrame, *, frontier: pd.DataFrame | None = None
) -> dict[str, Figure]:
    """The report's figure set, name → Figure (names are file stems for the stage script)."""
    front = frontier if frontier is not None else pareto_frontier(summary)
    return {
        "energy_vs_freq": energy_vs_freq(summary),
        "latency_vs_freq": latency_vs_freq(summary),
        "pareto": pareto_plot(front),
        "energy_vs_input_length": energy_vs_input_length(requests),
        "energy_vs_output_length": energy_vs_output_length(requests),
        "j_per_token_by_task": j_per_token_by_task(summary),
        "j_per_token_by_model": j_per_token_by_model(summary),
    }
