"""Prefill vs decode through aggregate, stats and the report: summary columns, the decode shares
(Σ/Σ over items), each phase's clock response, metrics.json and the report's sentences."""

from __future__ import annotations

import pandas as pd
import pytest

from analysis_fixtures import as_records, sweep_requests
from llm_energy.analysis.headline import headline_metrics
from llm_energy.analysis.study import PHASE_METRICS, phase_response
from llm_energy.analysis.summary import summarize
from llm_energy.report.phases import phase_sentences


def phased(freqs: tuple[float | None, ...] = (None, 900.0)) -> pd.DataFrame:
    """A sweep whose prefill is its TTFT (compute-bound: slower at 900 MHz) at the request's
    power; decode is the rest."""
    df = sweep_requests(freqs, n_per_freq=8, noise=0.05, seed=3).copy()
    df["prefill_time_s"] = df["ttft_s"]
    df["prefill_energy_j"] = df["energy_j"] * df["ttft_s"] / df["latency_s"]
    df["decode_time_s"] = df["latency_s"] - df["prefill_time_s"]
    df["decode_energy_j"] = df["energy_j"] - df["prefill_energy_j"]
    return as_records(df)


def test_summary_has_each_phase_with_its_interval_and_the_decode_shares_as_ratios() -> None:
    requests = phased()
    summary = summarize(requests, ci_level=0.95)
    for _, row in summary.iterrows():
        group = requests[requests["freq_requested_mhz"].isna() == row["default_clocks"]]
        share = group["decode_energy_j"].sum() / group["energy_j"].sum()
        assert row["decode_share_energy_mean"] == pytest.approx(share)
        assert row["decode_share_energy_ci_low"] < share < row["decode_share_energy_ci_high"]
        time_share = group["decode_time_s"].sum() / group["latency_s"].sum()
        assert row["decode_share_time_mean"] == pytest.approx(time_share)
        for m in PHASE_METRICS:
            assert row[f"{m}_ci_low"] < row[f"{m}_mean"] < row[f"{m}_ci_high"]
        total = row["prefill_energy_j_mean"] + row["decode_energy_j_mean"]
        assert total == pytest.approx(row["energy_j_mean"])  # the phases add up to the total


def test_phase_response_compares_each_phase_with_the_default_clock() -> None:
    table = phase_response(phased(), alpha=0.05, min_samples=3, ci_level=0.95)
    assert sorted(table["metric"]) == sorted(PHASE_METRICS)
    prefill = table[table["metric"] == "prefill_time_s"].iloc[0]
    assert prefill["freq_mhz"] == 900.0 and prefill["ratio"] > 1.1 and prefill["significant"]
    empty = phase_response(sweep_requests(n_per_freq=4), alpha=0.05, min_samples=3, ci_level=0.95)
    assert empty.empty  # no phase records: no table rows


def test_metrics_json_and_report_say_which_phase_dominates_and_how_it_responds() -> None:
    requests = phased()
    summary = summarize(requests, ci_level=0.95)
    qa = headline_metrics(summary, requests, ci_level=0.95)["by_task"]["qa"]
    assert 0.5 < qa["decode_share_energy"] < 1 and "decode_share_energy_ci_low" in qa
    table = phase_response(requests, alpha=0.05, min_samples=3, ci_level=0.95)
    first, clock = phase_sentences(summary, table)
    assert first.startswith("qa (m-small, default clocks): decode dominates. Decode took ")
    assert ") of the time and " in first and ") of the energy;" in first
    assert clock.startswith("At 900 MHz against default") and "prefill time +" in clock
    assert phase_sentences(summarize(sweep_requests(n_per_freq=4), ci_level=0.95), None) == []
