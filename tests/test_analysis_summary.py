"""summary.py: exclusion flags, per-configuration summary, bootstrap CIs, headline metrics."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from analysis_fixtures import (
    as_records,
    batched_window_requests,
    batched_windows,
    groups_to_requests,
    minimal_requests,
    sweep_requests,
)
from analysis_settings import summarize
from llm_energy.analysis.bootstrap import bootstrap_mean_replicates, percentile_ci
from llm_energy.analysis.headline import headline_metrics
from llm_energy.analysis.records import (
    CONFIG_KEYS,
    METRICS,
    THROTTLE_MASK,
    cluster_ids,
    exclusion_flags,
    parse_clock_event_reasons,
)
from llm_energy.analysis.windows import window_table


def test_throttle_mask_uses_nvml_bit_values() -> None:
    assert THROTTLE_MASK == 0x4 | 0x8 | 0x20 | 0x40 | 0x80 == 0xEC


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, 0),
        (0x20, 0x20),
        (np.int64(0x28), 0x28),
        (None, None),
        (pd.NA, None),
        (float("nan"), None),
    ],
)
def test_parse_clock_event_reasons(value: object, expected: int | None) -> None:
    assert parse_clock_event_reasons(value) == expected


def test_exclusion_flags_each_reason() -> None:
    df = as_records(
        pd.DataFrame(
            {
                "energy_j": [1.0] * 8,
                "status": ["ok", "oom", "ok", "ok", "ok", "ok", "ok", "error"],
                "window_trusted": [True, True, False, True, True, True, True, True],
                "cap_held": [True, True, True, False, None, True, True, True],
                "clock_event_reasons": [0, 0, 0, 0, 0x1 | 0x100, 0x40, 0x4, 0x80],
                "freq_requested_mhz": [1200] * 8,
            }
        )
    )
    flags = exclusion_flags(df)
    raised = [{c for c in flags.columns if row[c]} for _, row in flags.iterrows()]
    assert raised == [
        set(),
        {"status"},
        {"untrusted"},
        {"cap_not_held"},
        set(),  # GPU idle / display clock bits are not throttling; null cap_held = no cap
        {"throttled"},
        {"throttled"},
        {"status", "throttled"},
    ]


def test_exclusion_flags_of_plain_records() -> None:
    df = minimal_requests([1.0, 2.0, 3.0])
    assert not exclusion_flags(df).to_numpy().any()
    assert exclusion_flags(as_records(pd.DataFrame())).empty


def test_summarize_groups_and_columns() -> None:
    df = sweep_requests((None, 1500.0, 900.0), n_per_freq=6, tasks=("qa", "generation"))
    s = summarize(df, n_boot=100)
    assert len(s) == 2 * 3
    for key in CONFIG_KEYS:
        assert key in s.columns
    for m in METRICS:
        for suffix in ("mean", "median", "ci_low", "ci_high", "cv"):
            assert f"{m}_{suffix}" in s.columns
    for col in ("n", "n_excluded", "latency_p50_s", "latency_p95_s", "energy_total_j"):
        assert col in s.columns
    # the default-clock group (NaN freq) survives grouping
    assert s["freq_applied_mhz"].isna().sum() == 2
    assert s.loc[s["freq_applied_mhz"].isna(), "default_clocks"].all()
    assert (s["n"] == 6).all()


def test_summarize_values_match_hand_computation() -> None:
    df = sweep_requests((1200.0,), n_per_freq=9, seed=3)
    s = summarize(df, n_boot=50)
    row = s.iloc[0]
    jpt = df["energy_j"] / df["output_tokens"]
    assert row["j_per_token_mean"] == pytest.approx(jpt.mean())
    assert row["j_per_token_median"] == pytest.approx(jpt.median())
    assert row["j_per_token_cv"] == pytest.approx(jpt.std(ddof=1) / jpt.mean())
    assert row["latency_p50_s"] == pytest.approx(np.percentile(df["latency_s"], 50))
    assert row["latency_p95_s"] == pytest.approx(np.percentile(df["latency_s"], 95))
    assert row["energy_total_j"] == pytest.approx(df["energy_j"].sum())
    assert row["edp_j_s_mean"] == pytest.approx((df["energy_j"] * df["latency_s"]).mean())
    assert row["ed2p_j_s2_mean"] == pytest.approx((df["energy_j"] * df["latency_s"] ** 2).mean())
    assert row["j_per_token_ci_low"] <= row["j_per_token_mean"] <= row["j_per_token_ci_high"]


def test_summarize_exclusions_counted_not_used() -> None:
    df = sweep_requests((1200.0,), n_per_freq=5)
    df.loc[0, "status"] = "oom"
    df.loc[0, "energy_j"] = np.nan
    df.loc[1, "clock_event_reasons"] = 0x20
    df.loc[2, "cap_held"] = False
    df.loc[3, "energy_j"] = 1e9  # would dominate the mean if used
    df.loc[3, "window_trusted"] = False
    row = summarize(df, n_boot=20).iloc[0]
    assert (row["n_total"], row["n"], row["n_excluded"]) == (5, 1, 4)
    assert row["excluded_status"] == 1
    assert row["excluded_throttled"] == 1
    assert row["excluded_cap_not_held"] == 1
    assert row["excluded_untrusted"] == 1
    assert "throttled=1" in row["excluded_reasons"]
    assert row["energy_j_mean"] == pytest.approx(df.loc[4, "energy_j"])
    # n = 1: no CI, no CV, no crash
    assert math.isnan(row["j_per_token_ci_low"]) and math.isnan(row["j_per_token_cv"])


def test_summarize_failed_configuration_kept() -> None:
    ok = sweep_requests((1200.0,), n_per_freq=3)
    failed = sweep_requests((900.0,), n_per_freq=3)
    failed["status"] = "oom"
    s = summarize(pd.concat([ok, failed], ignore_index=True), n_boot=20)
    bad = s[s["freq_applied_mhz"] == 900.0].iloc[0]
    assert bad["n"] == 0 and bad["n_excluded"] == 3
    assert math.isnan(bad["j_per_token_mean"])


def test_summarize_never_mixes_energy_kinds() -> None:
    measured = sweep_requests((1200.0,), n_per_freq=4, energy_kind="measured")
    simulated = sweep_requests((1200.0,), n_per_freq=4, energy_kind="simulated", seed=1)
    s = summarize(pd.concat([measured, simulated], ignore_index=True), n_boot=20)
    assert sorted(s["energy_kind"]) == ["measured", "simulated"]
    assert (s["n"] == 4).all()


def test_summarize_energy_kind_derived_from_source() -> None:
    df = sweep_requests((1200.0,), n_per_freq=3).assign(energy_kind=None)
    df["energy_source"] = "codecarbon-estimate"
    assert summarize(df, n_boot=10)["energy_kind"].tolist() == ["estimated"]


def test_summarize_quality_and_perplexity() -> None:
    df = sweep_requests((1200.0,), n_per_freq=4, tasks=("generation",))
    df["ref_nll_sum"] = [2.0, 4.0, 3.0, 1.0]
    df["ref_tokens"] = [1.0, 2.0, 3.0, 4.0]
    df["quality_rouge_l"] = [0.1, 0.2, np.nan, 0.3]  # NaN = not applicable
    row = summarize(df, n_boot=50).iloc[0]
    assert row["perplexity"] == pytest.approx(math.exp(10.0 / 10.0))
    assert row["quality_rouge_l_mean"] == pytest.approx(0.2)
    assert row["quality_rouge_l_n"] == 3
    assert row["perplexity_ci_low"] <= row["perplexity"] <= row["perplexity_ci_high"]


def test_summarize_is_seeded() -> None:
    df = sweep_requests((None, 1200.0), n_per_freq=8)
    a = summarize(df, n_boot=200, seed=5)
    b = summarize(df, n_boot=200, seed=5)
    c = summarize(df, n_boot=200, seed=6)
    pd.testing.assert_frame_equal(a, b)
    assert not np.allclose(a["j_per_token_ci_low"], c["j_per_token_ci_low"])


def test_summarize_minimal_and_empty_frames() -> None:
    s = summarize(minimal_requests([1.0, 2.0, 4.0]), n_boot=20)
    assert len(s) == 1 and s["energy_kind"].iloc[0] == "measured"
    assert s["j_per_token_mean"].iloc[0] == pytest.approx(7 / 3)
    assert summarize(as_records(pd.DataFrame()), n_boot=10).empty


def test_cluster_bootstrap_is_wider_for_shared_windows() -> None:
    rng = np.random.default_rng(1)
    window_values = rng.normal(5.0, 1.0, 10)
    values = np.repeat(window_values, 8)  # 8 requests share each window's reading
    clusters = np.repeat(np.arange(10), 8)

    def width(clusters: np.ndarray | None = None) -> float:
        reps = bootstrap_mean_replicates(
            values, n_boot=1000, rng=np.random.default_rng(0), clusters=clusters
        )
        lo, hi = percentile_ci(reps, 0.95)
        return hi - lo

    assert width(clusters=clusters) > 2 * width()


def test_headline_metrics_single_capped_run() -> None:
    df = sweep_requests((1200.0,), n_per_freq=6, tasks=("generation",))
    s = summarize(df, n_boot=50)
    h = headline_metrics(s, df)
    json.dumps(h)  # JSON-ready
    assert h["energy"]["kind"] == "measured"
    assert h["energy"]["j_per_token"] == pytest.approx(s["j_per_token_mean"].iloc[0])
    assert h["energy"]["j_per_token_ci_low"] == pytest.approx(s["j_per_token_ci_low"].iloc[0])
    assert h["perf"]["tokens_per_s"] == pytest.approx(df["tokens_per_s"].mean())
    assert h["perf"]["latency_p50_s"] == pytest.approx(df["latency_s"].median())
    assert h["gpu"]["freq_applied_mhz"] == 1200.0
    assert h["gpu"]["freq_mode"] == "capped"
    assert h["quality"]["perplexity"] == pytest.approx(math.e**2)
    assert h["config"]["task"] == "generation"


def test_headline_metrics_default_clocks_freq_is_null() -> None:
    df = sweep_requests((None,), n_per_freq=4)
    h = headline_metrics(summarize(df, n_boot=10), df)
    assert h["gpu"]["freq_applied_mhz"] is None
    assert h["gpu"]["freq_mode"] == "default"
    assert h["quality"]["exact_match"] == pytest.approx(0.5)


def test_headline_metrics_mixed_kinds_prefers_measured() -> None:
    sim = groups_to_requests({1200.0: [100.0, 100.0]}, energy_kind="simulated")
    meas = groups_to_requests({1200.0: [1.0, 3.0]}, energy_kind="measured")
    df = pd.concat([sim, meas], ignore_index=True)
    h = headline_metrics(summarize(df, n_boot=10), df)
    assert h["energy"]["kind"] == "measured"
    assert h["energy"]["j_per_token"] == pytest.approx(2.0)
    assert h["energy"]["kinds_present"] == "measured,simulated"


def test_default_clock_group_never_merges_with_a_cap_at_the_same_clock() -> None:
    df = sweep_requests((None, 1980.0), n_per_freq=3, default_applied_mhz=1980.0)
    s = summarize(df, n_boot=10)
    assert len(s) == 2
    default = s[s["default_clocks"]].iloc[0]
    assert math.isnan(default["freq_applied_mhz"]) and default["n"] == 3
    assert default["sm_clock_mean_mhz"] == pytest.approx(1975.0)


def test_failure_records_inherit_their_runs_energy_kind() -> None:
    ok = sweep_requests((1200.0,), n_per_freq=3, energy_kind="simulated")
    failed = ok.iloc[:2][
        ["run_id", "model", "task", "engine", "input_tokens_target", "output_tokens_target"]
    ].copy()
    failed["batch_size"] = 8
    failed["freq_requested_mhz"] = 1200.0
    failed["freq_applied_mhz"] = 1200.0
    failed["status"] = "oom"
    failed["energy_kind"] = None  # plan.failure_records writes no energy kind
    s = summarize(pd.concat([ok, failed], ignore_index=True), n_boot=10)
    assert set(s["energy_kind"]) == {"simulated"}
    oom = s[s["batch_size"] == 8].iloc[0]
    assert (oom["n"], oom["n_excluded"], oom["excluded_status"]) == (0, 2, 2)


def test_quality_flag_column_is_not_a_score() -> None:
    df = sweep_requests((1200.0,), n_per_freq=3)
    df["quality_applicable"] = True
    s = summarize(df, n_boot=10)
    assert "quality_applicable_mean" not in s.columns
    assert "quality_exact_match_mean" in s.columns


def test_windows_are_identified_per_run() -> None:
    # two runs reuse window ids 1..4; each request has its own value
    df = as_records(
        pd.DataFrame(
            {
                "run_id": ["a"] * 4 + ["b"] * 4,
                "window_id": [1, 2, 3, 4] * 2,
                "energy_j": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0],
                "output_tokens": 1,
                "latency_s": 1.0,
            }
        )
    )
    assert cluster_ids(df).nunique() == 8
    s = summarize(df, n_boot=200)
    assert s["n"].iloc[0] == 8 and s["energy_j_ci_low"].iloc[0] < s["energy_j_ci_high"].iloc[0]


# --- the window is the unit; J/token is Σ energy / Σ tokens -----------------------------------------

# Two batched windows of natural-length answers: 8 J over 1+3+6+6 tokens, 12 J over 2+2+10+10.
BATCHED = [(1200.0, 8.0, (1, 3, 6, 6)), (1200.0, 12.0, (2, 2, 10, 10))]


def test_j_per_token_is_total_energy_over_total_tokens() -> None:
    df = batched_window_requests(BATCHED)
    row = summarize(df, n_boot=200).iloc[0]
    # zeus / optimum-benchmark: 20 J / 40 tokens = 0.50; the mean of per-request ratios says
    # 0.87, because the short answers of a batch carry an even share of the window's energy
    assert row["j_per_token_mean"] == pytest.approx(20.0 / 40.0)
    mean_of_ratios = (2 / 1 + 2 / 3 + 2 / 6 + 2 / 6 + 3 / 2 + 3 / 2 + 3 / 10 + 3 / 10) / 8
    assert (df["energy_j"] / df["output_tokens"]).mean() == pytest.approx(mean_of_ratios)
    assert mean_of_ratios == pytest.approx(0.867, abs=1e-3)
    assert row["j_per_token_median"] == pytest.approx(np.median([8 / 16, 12 / 24]))
    assert (row["n"], row["n_windows"]) == (8, 2)
    assert row["j_per_token_ci_low"] <= 0.5 <= row["j_per_token_ci_high"]
    head = headline_metrics(summarize(df, n_boot=50), df)
    assert head["energy"]["j_per_token"] == pytest.approx(0.5)
    assert head["counts"]["n_windows"] == 2


def test_window_table_sums_a_window_and_divides_its_repeats() -> None:
    df = batched_window_requests([(None, 30.0, (4, 6, 10))], window_repeats=3)
    win = window_table(df).iloc[0]
    # 30 J over 3 repeats: 10 J per execution of the batch, 20 tokens per execution
    assert win["energy_j_sum"] == pytest.approx(10.0)
    assert win["output_tokens_sum"] == 20
    assert win["j_per_token"] == pytest.approx(0.5)
    assert win["n_requests"] == 3
    assert win["block"] == "GPU-sim-0:t|it-0-0,t|it-0-1,t|it-0-2"  # the GPU is part of the block


def test_window_bootstrap_resamples_windows_not_requests() -> None:
    # 4 windows of 8 requests: the J/token CI is that of 4 values, not 32
    windows = [(1200.0, e, (5,) * 8) for e in (40.0, 44.0, 48.0, 52.0)]
    df = batched_window_requests(windows)
    row = summarize(df, n_boot=2000, seed=1).iloc[0]
    per_window = np.array([40.0, 44.0, 48.0, 52.0]) / 40.0
    rng = np.random.default_rng(0)
    reps = per_window[rng.integers(0, 4, size=(4000, 4))].mean(axis=1)
    lo, hi = np.percentile(reps, [2.5, 97.5])
    assert row["j_per_token_ci_low"] == pytest.approx(lo, abs=0.02)
    assert row["j_per_token_ci_high"] == pytest.approx(hi, abs=0.02)


def test_dynamic_j_per_token_and_gpu_name_in_headline() -> None:
    df = batched_window_requests(BATCHED)
    df["dynamic_energy_j"] = df["energy_j"] / 2
    df["gpu_name"] = "NVIDIA H200"
    head = headline_metrics(summarize(df, n_boot=20), df)
    assert head["energy"]["dynamic_j_per_token"] == pytest.approx(10.0 / 40.0)
    assert head["gpu"]["name"] == "NVIDIA H200"
    assert (
        headline_metrics(summarize(df, n_boot=20), df.assign(gpu_name=None))["gpu"]["name"] is None
    )


def test_expansion_factor_matches_the_t_interval() -> None:
    from scipy import stats

    from llm_energy.analysis.bootstrap import expansion_factor

    # Hesterberg (2015): sqrt(n/(n-1)) t_{n-1} / z; n = 3 → 2.69, large n → 1
    assert expansion_factor(3, 0.95) == pytest.approx(
        math.sqrt(1.5) * stats.t.ppf(0.975, 2) / stats.norm.ppf(0.975)
    )
    assert expansion_factor(10_000, 0.95) == pytest.approx(1.0, abs=1e-3)
    assert math.isinf(expansion_factor(1, 0.95))


def test_idle_baseline_uncertainty_widens_the_dynamic_interval() -> None:
    from llm_energy.analysis.summary import idle_se_per_token

    df = sweep_requests((1200.0,), n_per_freq=9, seed=3)
    df["dynamic_energy_j"] = df["energy_j"] * 0.5
    narrow = summarize(df, n_boot=200).iloc[0]
    # Two baselines (two points): each one's error is shared by the requests measured after it.
    df["idle_power_before_w"] = [100.0 if i < 5 else 110.0 for i in range(len(df))]
    df["idle_power_after_w"] = df["idle_power_before_w"] + 4.0
    df["dynamic_energy_se_j"] = 0.2
    wide = summarize(df, n_boot=200).iloc[0]
    tokens = df["output_tokens"].sum()
    expected = math.sqrt((0.2 * 5) ** 2 + (0.2 * (len(df) - 5)) ** 2) / tokens
    assert idle_se_per_token(df) == pytest.approx(expected)
    assert wide["dynamic_j_per_token_idle_se"] == pytest.approx(expected)
    assert wide["dynamic_j_per_token_mean"] == pytest.approx(narrow["dynamic_j_per_token_mean"])
    assert wide["dynamic_j_per_token_ci_low"] < narrow["dynamic_j_per_token_ci_low"]
    assert wide["dynamic_j_per_token_ci_high"] > narrow["dynamic_j_per_token_ci_high"]
    # Without the column nothing changes.
    assert math.isnan(narrow["dynamic_j_per_token_idle_se"])


# Numbers that were once wrong: the statistical unit is the window.
def test_power_cap_events_do_not_thin_the_default_baseline() -> None:
    df = batched_windows({None: [1.0], 1200.0: [1.0]}, batch=1)
    df["clock_event_reasons"] = 0x4  # SW power cap
    throttled = exclusion_flags(df)["throttled"]
    assert not throttled.iloc[0]  # default clocks: the power cap is how the driver runs
    assert throttled.iloc[1]  # under a cap: the cap was not what limited the clock
    df["clock_event_reasons"] = 0x40  # HW thermal: always excluded
    assert exclusion_flags(df)["throttled"].all()
