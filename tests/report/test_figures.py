"""figures.py: every figure builds, plots the right data, labels non-measured energy, survives
single points."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_rgba
from matplotlib.container import BarContainer, ErrorbarContainer
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from analysis_fixtures import as_records, sweep_requests
from analysis_settings import summarize
from llm_energy.analysis.tradeoff import pareto_frontier
from llm_energy.report import figure_style as S
from llm_energy.report import figures as F

SWEEP = (None, 1800.0, 1400.0, 1000.0)


def _all_text(fig: Figure) -> str:
    parts = [fig._suptitle.get_text() if fig._suptitle else ""]
    parts += [t.get_text() for t in fig.texts]
    for ax in fig.axes:
        parts.append(ax.get_title())
        parts += [t.get_text() for t in ax.texts]
    return "\n".join(parts)


def _builders(summary: pd.DataFrame, requests: pd.DataFrame) -> dict[str, Callable[[], Figure]]:
    return {
        "energy_vs_freq": lambda: F.energy_vs_freq(summary),
        "latency_vs_freq": lambda: F.latency_vs_freq(summary),
        "pareto": lambda: F.pareto_plot(pareto_frontier(summary)),
        "pareto_from_summary": lambda: F.pareto_plot(summary),
        "energy_vs_input_length": lambda: F.energy_vs_input_length(requests),
        "energy_vs_output_length": lambda: F.energy_vs_output_length(requests),
        "by_task": lambda: F.j_per_token_by_task(summary),
    }


@pytest.fixture(scope="module")
def simulated() -> tuple[pd.DataFrame, pd.DataFrame]:
    req = sweep_requests(
        SWEEP, n_per_freq=5, energy_kind="simulated", length_jitter=True, tasks=("qa", "generation")
    )
    return summarize(req), req


@pytest.fixture(scope="module")
def measured() -> tuple[pd.DataFrame, pd.DataFrame]:
    req = sweep_requests(SWEEP, n_per_freq=5, models=("m-small", "m-large"))
    return summarize(req), req


def _expected_x(summary: pd.DataFrame) -> pd.Series:
    """Capped MHz as is; default clocks one step (15 % of the cap span) right of the top cap."""
    capped = summary["freq_applied_mhz"].where(~summary["default_clocks"].astype(bool))
    span = capped.max() - capped.min()
    return capped.fillna(capped.max() + 0.15 * span)


def _assert_line(line: Line2D, x: Any, y: Any) -> None:
    """The line's plotted points are (x, y)."""
    np.testing.assert_allclose(np.asarray(line.get_xdata(), dtype=float), np.asarray(x, float))
    np.testing.assert_allclose(np.asarray(line.get_ydata(), dtype=float), np.asarray(y, float))


def _errorbars(fig: Figure) -> dict[str, ErrorbarContainer]:
    return {c.get_label(): c for c in fig.axes[0].containers if isinstance(c, ErrorbarContainer)}


def test_energy_vs_freq_plots_means_and_cis(measured: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    summary = measured[0].assign(_x=lambda d: _expected_x(d)).sort_values("_x")
    bars = _errorbars(F.energy_vs_freq(measured[0]))
    assert set(bars) == {"qa, model m-small", "qa, model m-large"}
    for model, rows in summary.groupby("model"):
        line, _, (ci,) = bars[f"qa, model {model}"].lines
        _assert_line(line, [1000, 1400, 1800, 1920], rows["j_per_token_mean"])
        segments = np.array(ci.get_segments())  # one vertical segment per point: low → high
        np.testing.assert_allclose(segments[:, 0, 1], rows["j_per_token_ci_low"])
        np.testing.assert_allclose(segments[:, 1, 1], rows["j_per_token_ci_high"])


def test_latency_vs_freq_plots_p50_and_p95(measured: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    summary = measured[0].assign(_x=lambda d: _expected_x(d)).sort_values("_x")
    fig = F.latency_vs_freq(measured[0])
    bars = _errorbars(fig)
    dashed = {line.get_label(): line for line in fig.axes[0].lines if line.get_linestyle() == "--"}
    for model, rows in summary.groupby("model"):
        p50, p95 = bars[f"qa, model {model}, p50"].lines[0], dashed[f"qa, model {model}, p95"]
        _assert_line(p50, rows["_x"], rows["latency_p50_s"])
        _assert_line(p95, rows["_x"], rows["latency_p95_s"])
        assert p50.get_color() == p95.get_color()  # one series, one colour


def test_pareto_plots_every_configuration_and_the_frontier(
    measured: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    frontier = pareto_frontier(measured[0])
    ax = F.pareto_plot(frontier).axes[0]
    points = np.concatenate([c.get_offsets() for c in ax.collections])
    expected = frontier[["latency_p50_s", "j_per_token_mean"]].to_numpy()
    np.testing.assert_allclose(points[points[:, 0].argsort()], expected[expected[:, 0].argsort()])
    lines = {line.get_label(): line for line in ax.lines}
    for model, rows in frontier[frontier["on_frontier"]].groupby("model"):
        rows = rows.sort_values("latency_p50_s")
        line = lines[f"qa, model {model}"]
        _assert_line(line, rows["latency_p50_s"], rows["j_per_token_mean"])


def test_pareto_has_one_panel_per_task(simulated: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    summary = simulated[0]
    fig = F.pareto_plot(pareto_frontier(summary))
    assert [ax.get_title() for ax in fig.axes] == ["generation", "qa"]
    for ax in fig.axes:
        points = np.concatenate([c.get_offsets() for c in ax.collections])
        rows = summary[summary["task"] == ax.get_title()]
        assert len(points) == len(rows)  # every configuration of that task, and no other


def test_energy_vs_length_plots_each_window_by_task() -> None:
    requests = pd.concat(
        [
            sweep_requests((None,), n_per_freq=4, tasks=("qa",), output_tokens=16),
            sweep_requests((None,), n_per_freq=4, tasks=("generation",), output_tokens=32),
        ],
        ignore_index=True,
    )
    ax = F.energy_vs_output_length(requests).axes[0]
    by_task = {c.get_label(): c.get_offsets() for c in ax.collections}
    # the legend names the quantity and its unit, not a bare "32"
    labels = {
        "qa": "qa, output target 16 tokens",
        "generation": "generation, output target 32 tokens",
    }
    assert set(by_task) == set(labels.values())
    # one point per window: its mean output tokens per request and its energy per request
    for task, rows in requests.groupby("task"):
        per_window = rows.groupby("window_id")[["output_tokens", "energy_j"]].mean()
        np.testing.assert_allclose(
            np.sort(by_task[labels[task]], axis=0),
            np.sort(per_window.to_numpy(dtype=float), axis=0),
        )


def test_bars_show_every_configuration_with_its_own_interval(
    simulated: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    summary = simulated[0]
    ax = F.j_per_token_by_task(summary).axes[0]
    bars = {c.get_label(): c for c in ax.containers if isinstance(c, BarContainer)}
    assert set(bars) == {"generation", "qa"}  # one colour per task, no bar per clock averaged
    errs = {c.lines[2][0] for c in ax.containers if isinstance(c, ErrorbarContainer)}
    segments = np.concatenate([np.array(e.get_segments()) for e in errs])
    for task, rows in summary.groupby("task"):
        heights = sorted(p.get_height() for p in bars[task].patches)
        np.testing.assert_allclose(heights, sorted(rows["j_per_token_mean"]))
        assert len({p.get_facecolor() for p in bars[task].patches}) == 1
    np.testing.assert_allclose(np.sort(segments[:, 0, 1]), np.sort(summary["j_per_token_ci_low"]))
    np.testing.assert_allclose(np.sort(segments[:, 1, 1]), np.sort(summary["j_per_token_ci_high"]))


def test_bars_without_an_interval_draw_no_error_bar() -> None:
    summary = summarize(sweep_requests((None, 1200.0), n_per_freq=2))  # 2 items: no interval
    assert summary["j_per_token_ci_low"].isna().all()
    ax = F.j_per_token_by_task(summary).axes[0]
    for container in ax.containers:
        if isinstance(container, ErrorbarContainer):
            for segment in container.lines[2][0].get_segments():
                assert np.size(segment) == 0  # nothing drawn, not a zero-width bar


def test_simulated_figures_carry_the_label(simulated: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    for name, build in _builders(*simulated).items():
        fig = build()
        assert isinstance(fig, Figure), name
        assert S.SIMULATED_LABEL in _all_text(fig), name


def test_estimated_label(measured: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    summary, req = measured
    est = summary.assign(energy_kind="estimated")
    assert S.ESTIMATED_LABEL in _all_text(F.energy_vs_freq(est))
    assert S.ESTIMATED_LABEL in _all_text(
        F.energy_vs_output_length(req.assign(energy_kind="estimated"))
    )


def test_measured_figures_have_no_warning(measured: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    for name, build in _builders(*measured).items():
        text = _all_text(build())
        assert "SIMULATED" not in text and "ESTIMATED" not in text, name


def test_png_bytes(measured: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    png = S.figure_png_bytes(F.energy_vs_freq(measured[0]), dpi=40)
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 1000


def test_single_point_and_empty_data_do_not_crash() -> None:
    req = sweep_requests((1200.0,), n_per_freq=1, energy_kind="simulated")
    summary = summarize(req)  # n = 1: NaN CIs
    for name, build in _builders(summary, req).items():
        fig = build()
        S.figure_png_bytes(fig, dpi=30)
        assert S.SIMULATED_LABEL in _all_text(fig), name
    empty_req = req.iloc[0:0]
    for name, build in _builders(summary.iloc[0:0], empty_req).items():
        assert S.figure_png_bytes(build(), dpi=30), name
    default_only = summarize(sweep_requests((None,), n_per_freq=2))
    S.figure_png_bytes(F.energy_vs_freq(default_only), dpi=30)


def test_power_timeline() -> None:
    # the sampler's CSV: t_s in Unix seconds, power_w, sm_clock_mhz
    samples = pd.DataFrame(
        {
            "t_s": [1.7e9, 1.7e9 + 0.1, 1.7e9 + 0.2, 1.7e9 + 0.3],
            "power_w": [80.0, 250.0, 260.0, 90.0],
            "sm_clock_mhz": [1980, 1200, 1200, 1980],
        }
    )
    fig = F.power_timeline(samples, energy_kind="simulated")
    assert S.SIMULATED_LABEL in _all_text(fig)
    assert len(fig.axes) == 2  # power + clock axis
    assert fig.axes[0].get_xlim()[1] < 1.0  # relative time
    since_start = samples["t_s"] - samples["t_s"].iloc[0]
    (power,) = fig.axes[0].lines
    _assert_line(power, since_start, samples["power_w"])
    (clock,) = fig.axes[1].lines
    _assert_line(clock, since_start, samples["sm_clock_mhz"])
    measured = _all_text(F.power_timeline(samples, energy_kind="measured"))
    assert "SIMULATED" not in measured and "UNKNOWN" not in measured
    # provenance not given: say so rather than pass for a measurement
    assert S.UNKNOWN_LABEL in _all_text(F.power_timeline(samples[["t_s", "power_w"]]))
    with_source = samples.assign(energy_source="simulated")
    assert S.SIMULATED_LABEL in _all_text(F.power_timeline(with_source))
    S.figure_png_bytes(F.power_timeline(samples.iloc[:1], energy_kind="measured"), dpi=30)
    S.figure_png_bytes(F.power_timeline(pd.DataFrame()), dpi=30)


def test_failed_only_configuration_does_not_trigger_a_banner() -> None:
    req = sweep_requests((1200.0,), n_per_freq=3)
    failed = as_records(
        pd.DataFrame({"model": ["m-small"] * 2, "task": "qa", "status": "oom", "energy_kind": None})
    )
    summary = summarize(pd.concat([req, failed], ignore_index=True))
    assert "UNKNOWN" not in _all_text(F.energy_vs_freq(summary))


def test_standard_figures_set(measured: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    figs = F.standard_figures(*measured)
    assert set(figs) >= {"energy_vs_freq", "latency_vs_freq", "pareto", "j_per_token_by_task"}
    assert all(isinstance(f, Figure) for f in figs.values())


def test_one_clock_draws_no_frequency_figures() -> None:
    req = sweep_requests((None,), n_per_freq=4, tasks=("qa", "generation"))
    figs = F.standard_figures(summarize(req), req)
    assert set(figs) == {"energy_vs_input_length", "energy_vs_output_length", "j_per_token_by_task"}


def _task_colours(fig: Figure) -> dict[str, set[tuple[float, ...]]]:
    """Task (a legend label's first part) → the colours its artists are drawn in."""
    found: dict[str, set[tuple[float, ...]]] = {}
    for ax in fig.axes:
        artists = [*ax.lines, *ax.collections, *ax.patches]
        for artist in artists:
            label = str(artist.get_label() or "")
            if not label or label.startswith("_"):
                continue
            colour = artist.get_color() if isinstance(artist, Line2D) else artist.get_facecolor()
            rgba = to_rgba(colour[0] if np.ndim(colour) == 2 else colour)
            found.setdefault(label.split(",")[0], set()).add(tuple(round(c, 3) for c in rgba[:3]))
        for container in ax.containers:
            task = str(container.get_label()).split(",")[0]
            if task.startswith("_"):  # a bar's error bars: drawn in black
                continue
            first = container.patches[0] if isinstance(container, BarContainer) else None
            line = first if first is not None else container.lines[0]
            colour = line.get_facecolor() if first is not None else line.get_color()
            found.setdefault(task, set()).add(tuple(round(c, 3) for c in to_rgba(colour)[:3]))
    return found


def test_every_figure_colours_a_task_alike(simulated: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    figs = F.standard_figures(*simulated)
    per_task: dict[str, set[tuple[float, ...]]] = {}
    for name, fig in figs.items():
        for task, colours in _task_colours(fig).items():
            assert len(colours) == 1, (name, task, colours)  # p50 and p95 too
            per_task.setdefault(task, set()).update(colours)
    assert set(per_task) == {"generation", "qa"}
    assert all(len(c) == 1 for c in per_task.values()), per_task  # across figures
    assert per_task["generation"] != per_task["qa"]


def test_energy_kind_banner() -> None:
    assert S.energy_kind_banner(["measured"]) is None
    assert S.energy_kind_banner(["measured", "simulated"]) == S.SIMULATED_LABEL
    assert S.ESTIMATED_LABEL in (S.energy_kind_banner(["estimated"]) or "")


def test_axes_carry_readable_names_with_units(measured: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    summary, req = measured
    expected = {
        "energy_vs_freq": ("SM clock cap (MHz)", "energy per token (J/token)"),
        "latency_vs_freq": ("SM clock cap (MHz)", "p50 latency (s); p95 dashed"),
        "pareto": ("p50 latency (s)", "energy per token (J/token)"),
        "energy_vs_output_length": ("output tokens per request", "energy per request (J)"),
        "energy_vs_input_length": ("input tokens per request", "energy per request (J)"),
        "by_task": ("clock", "energy per token (J/token)"),
    }
    builders = _builders(summary, req)
    for name, (xlabel, ylabel) in expected.items():
        ax = builders[name]().axes[0]
        assert (ax.get_xlabel(), ax.get_ylabel()) == (xlabel, ylabel), name
        # raw column names never reach an axis
        assert "_" not in ax.get_xlabel() + ax.get_ylabel(), name


def test_energy_figures_name_their_energy_source(
    measured: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    summary, req = measured
    source = str(summary["energy_source"].dropna().iloc[0])
    builders = _builders(summary, req)
    for name in ("energy_vs_freq", "pareto", "energy_vs_output_length", "by_task"):
        assert f"energy: {source}" in _all_text(builders[name]()), name
    assert S.axis_label("j_per_token_mean") == "energy per token (J/token)"
