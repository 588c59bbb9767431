"""What every figure shares: energy-kind banners, axis labels, the frame, in-memory PNGs (Agg)."""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from llm_energy.analysis.records import energy_kinds, is_missing

SIMULATED_LABEL = "SIMULATED energy — not a measurement"
ESTIMATED_LABEL = "ESTIMATED energy (codecarbon)"
UNKNOWN_LABEL = "UNKNOWN energy source — not a verified measurement"

_FIGSIZE = (7.0, 4.5)


def energy_kind_banner(kinds: Iterable[Any]) -> str | None:
    """Banner text for a set of energy kinds, or None when everything is measured."""
    present = {str(k) for k in kinds if not is_missing(k)}
    parts = []
    if "simulated" in present:
        parts.append(SIMULATED_LABEL)
    if "estimated" in present:
        parts.append(ESTIMATED_LABEL)
    if present - {"measured", "simulated", "estimated"}:
        parts.append(UNKNOWN_LABEL)
    return " | ".join(parts) if parts else None


def kinds_of(frame: pd.DataFrame) -> list[Any]:
    """Energy kinds behind a summary (rows with n > 0) or schema-typed requests (status ok)."""
    if frame is None or frame.empty:
        return []
    if "n" in frame.columns:  # a summary row is a configuration; n counts its valid requests
        used = pd.to_numeric(frame["n"], errors="coerce").fillna(0).to_numpy() > 0
        kinds = frame["energy_kind"].astype("object").where(frame["energy_kind"].notna(), "unknown")
        return list(kinds[used].unique())
    kinds = energy_kinds(frame)
    return list(kinds[(frame["status"].astype("object") == "ok").to_numpy()].unique())


# readable axis names with units, keyed by the column a figure plots
AXIS_LABELS: dict[str, str] = {
    "j_per_token": "energy per token (J/token)",
    "j_per_token_mean": "energy per token (J/token)",
    "energy_j": "energy per request (J)",
    "dynamic_energy_j": "dynamic energy per request (J)",
    "latency_p50_s": "p50 latency (s)",
    "latency_p95_s": "p95 latency (s)",
    "latency_s": "latency (s)",
    "input_tokens": "input tokens per request",
    "output_tokens": "output tokens per request",
}


#: a configuration key as a legend names it, with its unit (``{}`` is the value)
LEGEND_FORMATS: dict[str, str] = {
    "task": "{}",
    "batch_size": "batch size {}",
    "input_tokens_target": "input target {} tokens",
    "output_tokens_target": "output target {} tokens",
    "energy_kind": "{} energy",
}
#: markers that tell apart the series of one task (its colour)
MARKERS = ("o", "s", "^", "D", "v", "P", "X")


def task_colors(tasks: Iterable[Any]) -> dict[str, str]:
    """One colour per task (matplotlib's C0… in sorted order), passed to every figure of a run."""
    names = sorted({str(t) for t in tasks if not is_missing(t)})
    return {task: f"C{i % 10}" for i, task in enumerate(names)}


def series_label(values: Mapping[str, Any]) -> str:
    """``qa, model m-small, output target 32 tokens``: the task bare, other keys named."""
    texts = {
        k: f"{v:g}" if isinstance(v, float) else str(v)
        for k, v in values.items()
        if not is_missing(v)
    }
    return ", ".join(LEGEND_FORMATS.get(k, k + " {}").format(t) for k, t in texts.items())


def axis_label(column: str) -> str:
    return AXIS_LABELS.get(column, column.replace("_", " "))


def energy_source_note(frame: pd.DataFrame | None) -> str:
    """`` — energy: nvml-counter`` for a title: which meter the plotted energy came from."""
    if frame is None or frame.empty or "energy_source" not in frame.columns:
        return ""
    sources = sorted({str(v) for v in frame["energy_source"].dropna().unique()})
    return f" — energy: {', '.join(sources)}" if sources else ""


def finish_figure(fig: Figure, title: str, kinds: Iterable[Any]) -> Figure:
    """Title the figure; with non-measured ``kinds`` the title carries the red banner and
    every axes a watermark, so a cropped panel still says what its energy is."""
    banner = energy_kind_banner(kinds)
    if banner:
        fig.suptitle(f"{banner}\n{title}", color="#b00020", fontweight="bold", fontsize=11)
        mark = banner.split(" | ")[0].split(" — ")[0]
        style = dict(ha="center", va="center", fontsize=22, color="#b00020", alpha=0.12)
        style |= dict(rotation=20, fontweight="bold", zorder=0)
        for ax in fig.axes:
            ax.text(0.5, 0.5, mark, transform=ax.transAxes, **style)
    else:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def new_figure(ncols: int = 1) -> tuple[Figure, list[Axes]]:
    """A figure with ``ncols`` side-by-side axes on its own Agg canvas."""
    fig = Figure(figsize=(_FIGSIZE[0] * (1 if ncols == 1 else 0.75 * ncols), _FIGSIZE[1]))
    FigureCanvasAgg(fig)  # the Agg canvas, without touching pyplot's global backend
    axes = [fig.add_subplot(1, ncols, i + 1) for i in range(ncols)]
    return fig, axes


def legend_outside(ax: Axes, **kwargs: Any) -> None:
    """A legend right of the axes (widened for it), where long configuration names hide no data."""
    ax.figure.set_figwidth(ax.figure.get_figwidth() * 1.5)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), **kwargs)


def mark_no_data(ax: Axes, what: str = "no data") -> None:
    """Say ``what`` in the middle of an empty axes instead of leaving it blank."""
    ax.text(0.5, 0.5, what, transform=ax.transAxes, ha="center", va="center", color="grey")


def label_point(ax: Axes, x: float, y: float, text: Any) -> None:
    """A frequency label next to its point (the " MHz" the axis title already says dropped)."""
    ax.annotate(
        str(text).replace(" MHz", ""), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8
    )


def figure_png_bytes(fig: Figure, *, dpi: int) -> bytes:
    """PNG rendering of a figure, in memory."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return buf.getvalue()
