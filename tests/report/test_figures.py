"""figures.py: every figure builds, plots the right data, labels non-measured energy, survives
single points."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest
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
        "by_model": lambda: F.j_per_token_by_model(summary),
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
    assert set(bars) == {"m-small", "m-large"}
    for model, rows in summary.groupby("model"):
        line, _, (ci,) = bars[model].lines
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
        _assert_line(bars[model].lines[0], rows["_x"], rows["latency_p50_s"])
        _assert_line(dashed[f"{model} (p95)"], rows["_x"], rows["latency_p95_s"])


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
        _assert_line(lines[f"{model} frontier"], rows["latency_p50_s"], rows["j_per_token_mean"])


def test_energy_vs_length_plots_each_window_by_task(
    measured: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    requests = measured[1]
    ax = F.energy_vs_output_length(requests).axes[0]
    by_task = {c.get_label(): c.get_offsets() for c in ax.collections}
    targets = requests.groupby("task")["output_tokens_target"].first()
    assert set(by_task) == {f"{t} (≤{int(n)} output tokens)" for t, n in targets.items()}
    # one point per window: its mean output tokens per request and its energy per request
    for task, rows in requests.groupby("task"):
        per_window = rows.groupby("window_id")[["output_tokens", "energy_j"]].mean()
        label = f"{task} (≤{int(targets[task])} output tokens)"
        np.testing.assert_allclose(
            np.sort(by_task[label], axis=0), np.sort(per_window.to_numpy(dtype=float), axis=0)
        )


def test_bars_plot_the_mean_per_category(measured: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    summary = measured[0]
    ax = F.j_per_token_by_model(summary).axes[0]
    bars = {c.get_label(): c for c in ax.containers if isinstance(c, BarContainer)}
    assert list(bars) == ["default", "1800 MHz", "1400 MHz", "1000 MHz"]
    x = _expected_x(summary)
    for label, container in bars.items():
        freq = x.max() if label == "default" else float(label.split()[0])
        cell = summary[x == freq].sort_values("model")  # categories in sorted order
        heights = [patch.get_height() for patch in container.patches]
        np.testing.assert_allclose(heights, cell["j_per_token_mean"])


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
        "by_task": ("", "energy per token (J/token, mean)"),
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
