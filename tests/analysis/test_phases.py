"""Prefill vs decode through aggregate, stats and the report: summary columns, the decode shares
(Σ/Σ over items), each phase's clock response, metrics.json and the report's sentences."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from analysis_fixtures import as_records, sweep_requests
from llm_energy.analysis.headline import headline_metrics
from llm_energy.analysis.phase_clocks import phase_clock_estimate
from llm_energy.analysis.records import PHASE_METRICS
from llm_energy.analysis.study import phase_response
from llm_energy.analysis.summary import summarize
from llm_energy.report.phases import phase_clock_sentences, phase_sentences


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


def _cube_requests() -> pd.DataFrame:
    """3 clocks x 4 items with known phase means (±1 % per item): prefill is cheapest at 900
    MHz but slow there, decode is cheapest at 900 MHz and barely slower."""
    means = {  # level: (prefill J, decode J, prefill s, decode s)
        None: (10.0, 100.0, 1.0, 10.0),
        1500.0: (8.0, 80.0, 1.2, 10.2),
        900.0: (6.0, 70.0, 2.0, 10.3),
    }
    rows = []
    for window, (freq, (e_p, e_d, t_p, t_d)) in enumerate(
        (f, m) for f, m in means.items() for _ in range(4)
    ):
        k = 1.0 + 0.01 * (window % 4 - 1.5)
        rows.append(
            {
                "model": "m",
                "task": "qa",
                "energy_kind": "measured",
                "output_tokens": 16,
                "output_tokens_target": 16,
                "freq_requested_mhz": freq,
                "freq_applied_mhz": freq,
                "item_id": f"i{window % 4}",
                "window_id": window + 1,
                "prefill_energy_j": e_p * k,
                "decode_energy_j": e_d * k,
                "energy_j": (e_p + e_d) * k,
                "prefill_time_s": t_p * k,
                "decode_time_s": t_d * k,
                "latency_s": (t_p + t_d) * k,
            }
        )
    return as_records(pd.DataFrame(rows))


def test_the_per_phase_clock_estimate_picks_the_best_pair_within_the_budget() -> None:
    table = phase_clock_estimate(_cube_requests(), latency_budget_pct=5.0, ci_level=0.95)
    (row,) = table.to_dict("records")
    # budget: 11 s x 1.05 = 11.55 s. Single clocks within it: default (110 J), 1500 (88 J).
    # Pairs within it: prefill 1500 + decode 900 (1.2 + 10.3 s, 78 J) is the cheapest.
    assert row["single_freq_mhz"] == 1500.0 and row["single_energy_j"] == pytest.approx(88.0)
    assert (row["prefill_freq_mhz"], row["decode_freq_mhz"]) == (1500.0, 900.0)
    assert row["pair_energy_j"] == pytest.approx(78.0)
    assert row["saving_pct"] == pytest.approx(100 * (1 - 78 / 88))
    assert 0 <= row["saving_ci_low"] <= row["saving_pct"] <= row["saving_ci_high"]
    assert "estimate" in row["note"] and "bootstrap" in row["ci_method"]
    (sentence,) = phase_clock_sentences(table)
    assert sentence.startswith("ESTIMATE, per-phase clocks (qa, m; no clock is switched")
    assert "prefill at 1500 MHz and decode at 900 MHz" in sentence


def test_a_wider_budget_lets_both_phases_take_the_cheapest_clock() -> None:
    table = phase_clock_estimate(_cube_requests(), latency_budget_pct=20.0, ci_level=0.95)
    (row,) = table.to_dict("records")
    assert row["single_freq_mhz"] == row["prefill_freq_mhz"] == row["decode_freq_mhz"] == 900.0
    assert row["saving_pct"] == 0.0
    assert "would gain nothing" in phase_clock_sentences(table)[0]
    few = _cube_requests().query("item_id in ['i0', 'i1']")
    (short,) = phase_clock_estimate(few, latency_budget_pct=5.0, ci_level=0.95).to_dict("records")
    assert short["note"].startswith("not estimable") and pd.isna(short["saving_pct"])


def test_clock_response_reads_the_clock_stratum_not_a_power_limit_one() -> None:
    requests = phased()
    summary = summarize(requests, ci_level=0.95)
    table = phase_response(requests, alpha=0.05, min_samples=3, ci_level=0.95)
    table["power_limit_applied_w"] = math.nan
    capped = table.assign(power_limit_applied_w=300.0, ratio=5.0)  # another stratum, listed first
    sentences = phase_sentences(summary, pd.concat([capped, table], ignore_index=True))
    assert "+400.0 %" not in sentences[1] and "prefill time +" in sentences[1]


def test_a_share_whose_interval_holds_a_half_names_no_dominant_phase() -> None:
    summary = summarize(phased(), ci_level=0.95)
    summary = summary.assign(decode_share_energy_ci_low=0.45, decode_share_energy_ci_high=0.62)
    assert "no phase clearly dominates the energy" in phase_sentences(summary, None)[0]
