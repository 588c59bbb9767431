"""Overlay of the experiments' curves over clocks (``compare_experiments``'s output): a panel
per (energy source, GPU), a line per experiment or configuration; offline matplotlib."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from llm_energy.analysis.records import is_missing
from llm_energy.report.compare import CONFIG_COLUMNS
from llm_energy.report.figure_style import finish_figure, mark_no_data, new_figure

#: metric → (y column, CI columns or None, axis label)
OVERLAY_METRICS: dict[str, tuple[str, tuple[str, str] | None, str]] = {
    "energy": ("energy", ("energy_ci_low", "energy_ci_high"), "energy (J/token)"),
    "latency": ("latency", None, "p50 latency (s)"),
}
#: what splits panels: never drawn on shared axes
PANEL_COLUMNS: tuple[str, ...] = ("energy.source", "gpu.name")


def default_clock_x(freqs: Sequence[float]) -> float:
    """x of the driver-default point: one step right of the highest cap (the default clock is
    above every cap), or 0 when no cap was run."""
    capped = sorted({float(f) for f in freqs if not is_missing(f)})
    if not capped:
        return 0.0
    step = (capped[-1] - capped[0]) / max(len(capped) - 1, 1) or max(capped[-1] * 0.2, 100.0)
    return capped[-1] + step


def _text(value: object, missing: str) -> str:
    return missing if is_missing(value) else str(value)


def overlay_lines(comparison: pd.DataFrame, metric: str = "energy") -> pd.DataFrame:
    """The data drawn: one row per (panel, line, clock) with ``panel``, ``line``, ``x``
    (:func:`default_clock_x` for the default clock), ``y``, ``y_low``, ``y_high``."""
    y_col, ci, _ = OVERLAY_METRICS[metric]
    cols = ["panel", "line", "label", "x", "y", "y_low", "y_high"]
    if comparison is None or comparison.empty or y_col not in comparison.columns:
        return pd.DataFrame(columns=cols)
    df = comparison.copy()
    panel_cols = [c for c in PANEL_COLUMNS if c in df.columns]
    df["panel"] = [
        f"energy {_text(r.get('energy.source'), 'unknown')} · GPU {_text(r.get('gpu.name'), 'unknown')}"
        for r in df[panel_cols].to_dict("records")
    ]
    config_cols = [c for c in CONFIG_COLUMNS if c in df.columns]
    varying = [c for c in config_cols if df[c].astype("object").nunique(dropna=False) > 1]
    config = [
        " · ".join(str(r[c]) for c in varying if not is_missing(r[c]))
        for r in df[varying].to_dict("records")
    ]
    df["line"] = [
        " · ".join(filter(None, [str(e), c])) for e, c in zip(df["experiment"], config, strict=True)
    ]
    df["config_line"] = [c or "all" for c in config]
    out = []
    for panel, sub in df.groupby("panel", sort=True):
        if sub.groupby("line").size().max() == 1 and sub["experiment"].nunique() > 1:
            # One clock per experiment (a queue of -S gpu.freq=...): the curve runs across the
            # experiments of one configuration, not a lone point per experiment.
            n_exp = sub.groupby("config_line")["experiment"].transform("nunique")
            counts = zip(sub["config_line"], n_exp, strict=True)
            sub = sub.assign(line=[f"{c} ({n} experiments)" for c, n in counts])
        dx = default_clock_x(sub["freq_mhz"])
        default = sub["label"] == "default" if "label" in sub else sub["freq_mhz"].isna()
        x = np.where(default.to_numpy(), dx, pd.to_numeric(sub["freq_mhz"]).to_numpy(float))
        low = sub[ci[0]] if ci and ci[0] in sub else math.nan
        high = sub[ci[1]] if ci and ci[1] in sub else math.nan
        columns = {
            "panel": panel,
            "line": sub["line"].to_numpy(),
            "label": sub["label"].to_numpy() if "label" in sub else None,
            "x": x,
            "y": pd.to_numeric(sub[y_col]).to_numpy(float),
            "y_low": pd.to_numeric(pd.Series(low, index=sub.index)).to_numpy(float),
            "y_high": pd.to_numeric(pd.Series(high, index=sub.index)).to_numpy(float),
        }
        out.append(pd.DataFrame(columns))
    if not out:
        return pd.DataFrame(columns=cols)
    return pd.concat(out, ignore_index=True).sort_values(["panel", "line", "x"], kind="stable")


def clock_overlay_figure(
    comparison: pd.DataFrame, metric: str = "energy", *, title: str | None = None
) -> Figure:
    """``metric`` (energy: J/token with CI bars; latency: p50) vs SM clock, a line per
    experiment, one panel per (energy source, GPU); the default clock sits right of the caps."""
    _, _, y_label = OVERLAY_METRICS[metric]
    title = title or f"Experiments: {y_label} vs SM clock cap"
    data = overlay_lines(comparison, metric)
    known = comparison is not None and "energy.kind" in comparison.columns
    kinds = list(comparison["energy.kind"].dropna().unique()) if known else []
    panels = list(dict.fromkeys(data["panel"])) or ["no data"]
    fig, axes = new_figure(len(panels))
    if data.empty:
        mark_no_data(axes[0])
        return finish_figure(fig, title, kinds)
    for ax, panel in zip(axes, panels, strict=True):
        sub = data[data["panel"] == panel]
        for line, pts in sub.groupby("line", sort=True):
            (drawn,) = ax.plot(pts["x"], pts["y"], marker="o", label=str(line))
            if np.isfinite(pts[["y_low", "y_high"]].to_numpy(float)).all():
                err = [pts["y"] - pts["y_low"], pts["y_high"] - pts["y"]]
                ax.errorbar(
                    pts["x"], pts["y"], yerr=err, fmt="none", capsize=3, color=drawn.get_color()
                )
        defaults = set(sub.loc[sub["label"] == "default", "x"])
        ticks = sorted(set(sub["x"]))
        ax.set_xticks(ticks)
        ax.set_xticklabels(["default" if t in defaults else f"{t:g}" for t in ticks], fontsize=8)
        ax.set_title(panel, fontsize=9)
        ax.set(xlabel="SM clock cap (MHz)", ylabel=y_label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return finish_figure(fig, title, kinds)
