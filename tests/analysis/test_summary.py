"""summary.py: exclusion flags, per-configuration summary, item-level t intervals (computed here
by hand from per-item values), order-statistic p50 interval, interval notes, headline metrics."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis_fixtures import (
    as_records,
    batched_window_requests,
    batched_windows,
    groups_to_requests,
    minimal_requests,
    sweep_requests,
)
from analysis_settings import headline_metrics, summarize
from hand_stats import kish_df, ratio_log_se
from llm_energy.analysis.records import (
    CONFIG_KEYS,
    METRICS,
    THROTTLE_MASK,
    cluster_ids,
    exclusion_flags,
    parse_clock_event_reasons,
)
from llm_energy.analysis.summary import CI_METHOD, idle_se_per_token
from llm_energy.analysis.summary import summarize as summarize_
from llm_energy.analysis.windows import window_table

LEVEL = 0.95


def ratio_log_interval(num, den, level: float = LEVEL) -> tuple[float, float, float]:
    """Σ num / Σ den over items with its delta-method t interval on the log scale."""
    r, se, df = ratio_log_se(num, den)
    half = stats.t.ppf(0.5 + level / 2, df) * se
    return r, r * math.exp(-half), r * math.exp(half)


def t_log_interval(values, level: float = LEVEL) -> tuple[float, float]:
    """t interval of a mean of positive per-item values on the log scale (delta method): every
    item weighs 1 (h = 1/n, so the SE is the textbook sd(v / mean) / √n) and the df are Kish's
    effective number of items by their values − 1: mean · exp(± t_df · sd(v / mean) / √n)."""
    v = np.asarray(values, dtype=float)
    m = v.mean()
    half = stats.t.ppf(0.5 + level / 2, kish_df(v)) * (v / m).std(ddof=1) / math.sqrt(v.size)
    return m * math.exp(-half), m * math.exp(half)


def note_of(row: pd.Series) -> str:
    note = row["interval_note"]
    return note if isinstance(note, str) else ""


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
    s = summarize(df)
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


def test_a_lowered_power_limit_at_default_clocks_is_its_own_configuration_not_the_baseline() -> (
    None
):
    df = sweep_requests((None, 1500.0), n_per_freq=4)
    limited = df[df["freq_requested_mhz"].isna()].assign(
        power_limit_requested_w=300.0, power_limit_applied_w=300.0
    )
    s = summarize(as_records(pd.concat([df, limited], ignore_index=True)))
    assert len(s) == 3 and (s["n"] == 4).all()
    default = s[s["freq_applied_mhz"].isna()].set_index("power_limit_applied_w", drop=False)
    assert bool(default.loc[300.0, "default_clocks"]) is False
    assert bool(default[default["power_limit_applied_w"].isna()]["default_clocks"].iloc[0])


def test_summarize_values_match_hand_computation() -> None:
    df = sweep_requests((1200.0,), n_per_freq=9, seed=3)
    s = summarize(df)
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
    # one request per item: the intervals are t intervals over the 9 items, log scale (the
    # 9 items are alike: Kish's df just under 8)
    r, lo, hi = ratio_log_interval(df["energy_j"], df["output_tokens"])
    assert row["j_per_token_mean"] == pytest.approx(r)
    assert (row["j_per_token_ci_low"], row["j_per_token_ci_high"]) == (
        pytest.approx(lo, rel=1e-9),
        pytest.approx(hi, rel=1e-9),
    )
    for metric in ("latency_s", "tokens_per_s", "edp_j_s", "avg_power_w"):
        values = df["energy_j"] * df["latency_s"] if metric == "edp_j_s" else df[metric]
        lo, hi = t_log_interval(values)
        assert row[f"{metric}_ci_low"] == pytest.approx(lo, rel=1e-9), metric
        assert row[f"{metric}_ci_high"] == pytest.approx(hi, rel=1e-9), metric
    assert 7.9 < kish_df(df["energy_j"]) < 8
    assert (row["n_items"], row["n_windows"]) == (9, 9)
    assert note_of(row) == ""
    assert row["ci_level"] == LEVEL and row["ci_method"] == CI_METHOD


def test_summarize_exclusions_counted_not_used() -> None:
    df = sweep_requests((1200.0,), n_per_freq=5)
    df.loc[0, "status"] = "oom"
    df.loc[0, "energy_j"] = np.nan
    df.loc[1, "clock_event_reasons"] = 0x20
    df.loc[2, "cap_held"] = False
    df.loc[3, "energy_j"] = 1e9  # would dominate the mean if used
    df.loc[3, "window_trusted"] = False
    row = summarize(df).iloc[0]
    assert (row["n_total"], row["n"], row["n_excluded"]) == (5, 1, 4)
    assert row["excluded_status"] == 1
    assert row["excluded_throttled"] == 1
    assert row["excluded_cap_not_held"] == 1
    assert row["excluded_untrusted"] == 1
    assert "throttled=1" in row["excluded_reasons"]
    assert row["energy_j_mean"] == pytest.approx(df.loc[4, "energy_j"])
    # n = 1: no CI, no CV, no crash, and the row says why
    assert math.isnan(row["j_per_token_ci_low"]) and math.isnan(row["j_per_token_cv"])
    assert row["n_items"] == 1
    assert "not estimable: 1 item (an interval needs ≥ 3)" in note_of(row)


def test_summarize_failed_configuration_kept() -> None:
    ok = sweep_requests((1200.0,), n_per_freq=3)
    failed = sweep_requests((900.0,), n_per_freq=3)
    failed["status"] = "oom"
    s = summarize(pd.concat([ok, failed], ignore_index=True))
    bad = s[s["freq_applied_mhz"] == 900.0].iloc[0]
    assert bad["n"] == 0 and bad["n_excluded"] == 3
    assert math.isnan(bad["j_per_token_mean"])


def test_summarize_never_mixes_energy_kinds() -> None:
    measured = sweep_requests((1200.0,), n_per_freq=4, energy_kind="measured")
    simulated = sweep_requests((1200.0,), n_per_freq=4, energy_kind="simulated", seed=1)
    s = summarize(pd.concat([measured, simulated], ignore_index=True))
    assert sorted(s["energy_kind"]) == ["measured", "simulated"]
    assert (s["n"] == 4).all()


def test_summarize_energy_kind_derived_from_source() -> None:
    df = sweep_requests((1200.0,), n_per_freq=3).assign(energy_kind=None)
    df["energy_source"] = "codecarbon-estimate"
    assert summarize(df)["energy_kind"].tolist() == ["estimated"]


def test_summarize_quality_and_perplexity() -> None:
    df = sweep_requests((1200.0,), n_per_freq=4, tasks=("generation",))
    df["ref_nll_sum"] = [2.0, 4.0, 3.0, 1.0]
    df["ref_tokens"] = [1.0, 2.0, 3.0, 4.0]
    df["quality_rouge_l"] = [0.1, 0.2, np.nan, 0.3]  # NaN = not applicable
    row = summarize(df).iloc[0]
    assert row["perplexity"] == pytest.approx(math.exp(10.0 / 10.0))
    assert row["quality_rouge_l_mean"] == pytest.approx(0.2)
    assert row["quality_rouge_l_n"] == 3
    # quality: t interval over the 3 items with a score (log scale: all positive; Kish's df
    # 0.6² / 0.14 − 1 = 1.57), clipped to [0, 1] since every score is a share
    lo, hi = t_log_interval([0.1, 0.2, 0.3])
    assert kish_df([0.1, 0.2, 0.3]) == pytest.approx(0.36 / 0.14 - 1)
    assert row["quality_rouge_l_ci_low"] == pytest.approx(lo)
    assert hi > 1.0 and row["quality_rouge_l_ci_high"] == 1.0
    # perplexity: exp of Σ nll / Σ tokens over items, and exp of its delta interval
    nll_per_token, lo, hi = ratio_log_interval([2.0, 4.0, 3.0, 1.0], [1.0, 2.0, 3.0, 4.0])
    assert nll_per_token == pytest.approx(1.0)
    assert row["perplexity_ci_low"] == pytest.approx(math.exp(lo))
    assert row["perplexity_ci_high"] == pytest.approx(math.exp(hi))
    assert row["perplexity_ci_low"] < row["perplexity"] < row["perplexity_ci_high"]


def test_quality_is_averaged_per_item_over_repetitions() -> None:
    # 4 items × 3 repetitions: the unit is the item (4 values), not the 12 rows
    df = sweep_requests((1200.0,), n_per_freq=4, reps=3, tasks=("qa",))
    scores = {"qa-0": [1, 1, 0], "qa-1": [0, 0, 0], "qa-2": [1, 1, 1], "qa-3": [1, 0, 0]}
    rep_of = df.groupby("item_id").cumcount()
    df["quality_exact_match"] = [
        float(scores[i][r]) for i, r in zip(df["item_id"], rep_of, strict=True)
    ]
    row = summarize(df).iloc[0]
    per_item = np.array([2 / 3, 0.0, 1.0, 1 / 3])
    # a 0: linear scale, every item weighs the same: scipy's one-sample t interval (3 df)
    ci = stats.ttest_1samp(per_item, 0.0).confidence_interval(LEVEL)
    assert row["quality_exact_match_n"] == 4
    assert row["quality_exact_match_mean"] == pytest.approx(per_item.mean())
    # shares cannot go below 0 nor above 1: the bounds stop there
    assert ci.low < 0 and row["quality_exact_match_ci_low"] == 0.0
    assert ci.high > 1 and row["quality_exact_match_ci_high"] == 1.0


def test_quality_scores_above_one_are_not_clipped_at_one() -> None:
    # a 0–5 rating: below 0 is impossible (all scores ≥ 0), but 1 is no upper limit
    df = sweep_requests((1200.0,), n_per_freq=4, tasks=("qa",))
    ratings = np.array([0.0, 2.0, 5.0, 4.0])
    df["quality_rating"] = ratings
    row = summarize(df).iloc[0]
    ci = stats.ttest_1samp(ratings, 0.0).confidence_interval(LEVEL)
    assert ci.low < 0 and row["quality_rating_ci_low"] == 0.0
    assert row["quality_rating_ci_high"] == pytest.approx(ci.high) and ci.high > 5
    # a share above 1 would not be one: scores of 0.2–1.4 are not clipped either
    df["quality_rating"] = [0.2, 1.4, 0.3, 0.9]
    row = summarize(df).iloc[0]
    lo, hi = t_log_interval([0.2, 1.4, 0.3, 0.9])
    assert (row["quality_rating_ci_low"], row["quality_rating_ci_high"]) == (
        pytest.approx(lo),
        pytest.approx(hi),
    )


def test_summarize_is_deterministic_and_needs_no_seed() -> None:
    # no resampling: the same records give the same intervals, in any row order, and there is
    # no n_boot / seed to pass
    df = sweep_requests((None, 1200.0), n_per_freq=8)
    a = summarize(df)
    pd.testing.assert_frame_equal(a, summarize(df))
    shuffled = df.sample(frac=1.0, random_state=1).reset_index(drop=True)
    pd.testing.assert_frame_equal(a, summarize(shuffled))
    assert a["j_per_token_ci_low"].notna().all()
    for removed in ({"n_boot": 1000}, {"seed": 0}):
        with pytest.raises(TypeError):
            summarize_(df, ci_level=LEVEL, **removed)


def test_summarize_minimal_and_empty_frames() -> None:
    s = summarize(minimal_requests([1.0, 2.0, 4.0]))
    assert len(s) == 1 and s["energy_kind"].iloc[0] == "measured"
    assert s["j_per_token_mean"].iloc[0] == pytest.approx(7 / 3)
    assert summarize(as_records(pd.DataFrame())).empty


def test_requests_sharing_a_window_are_one_unit() -> None:
    # 8 requests share each of 10 windows' readings: the interval is that of 10 values (Kish's
    # df by the windows' energies, 8.6), more than twice as wide as a naive t interval over the
    # 80 requests
    rng = np.random.default_rng(1)
    window_energy = rng.normal(5.0, 1.0, 10) * 8 * 5
    df = batched_window_requests([(1200.0, float(e), (5,) * 8) for e in window_energy])
    row = summarize(df).iloc[0]
    assert (row["n"], row["n_windows"], row["n_items"]) == (80, 10, 10)
    r, lo, hi = ratio_log_interval(window_energy, np.full(10, 40.0))
    assert row["j_per_token_mean"] == pytest.approx(r)
    assert (row["j_per_token_ci_low"], row["j_per_token_ci_high"]) == (
        pytest.approx(lo),
        pytest.approx(hi),
    )
    assert 8.5 < kish_df(window_energy) < 9
    naive_lo, naive_hi = t_log_interval(df["energy_j"] / df["output_tokens"])
    assert hi - lo > 2 * (naive_hi - naive_lo)


def test_headline_metrics_single_capped_run() -> None:
    df = sweep_requests((1200.0,), n_per_freq=6, tasks=("generation",))
    s = summarize(df)
    h = headline_metrics(s, df)
    json.dumps(h)  # JSON-ready
    assert h["energy"]["kind"] == "measured"
    gen = h["by_task"]["generation"]  # one configuration: the task is summary.csv's row
    row = s.iloc[0]
    for field, column in (
        ("j_per_token", "j_per_token_mean"),
        ("j_per_token_ci_low", "j_per_token_ci_low"),
        ("j_per_token_ci_high", "j_per_token_ci_high"),
        ("latency_p50_s", "latency_p50_s"),
        ("tokens_per_s", "tokens_per_s_mean"),
    ):
        assert gen[field] == pytest.approx(row[column]), field
    assert "perf" not in h and "quality" not in h and "j_per_token" not in h["energy"]
    assert h["gpu"]["freq_applied_mhz"] == 1200.0
    assert h["gpu"]["freq_mode"] == "capped"
    assert gen["perplexity"] == pytest.approx(math.e**2)
    assert h["config"]["task"] == "generation"


def test_headline_metrics_default_clocks_freq_is_null() -> None:
    df = sweep_requests((None,), n_per_freq=4)
    h = headline_metrics(summarize(df), df)
    assert h["gpu"]["freq_applied_mhz"] is None
    assert h["gpu"]["freq_mode"] == "default"
    (task,) = h["by_task"].values()
    assert task["quality_exact_match"] == pytest.approx(0.5)


def test_headline_metrics_mixed_kinds_prefers_measured() -> None:
    sim = groups_to_requests({1200.0: [100.0, 100.0]}, energy_kind="simulated")
    meas = groups_to_requests({1200.0: [1.0, 3.0]}, energy_kind="measured")
    df = pd.concat([sim, meas], ignore_index=True)
    h = headline_metrics(summarize(df), df)
    assert h["energy"]["kind"] == "measured"
    (task,) = h["by_task"].values()
    assert task["j_per_token"] == pytest.approx(2.0)
    assert h["energy"]["kinds_present"] == "measured,simulated"


def test_default_clock_group_never_merges_with_a_cap_at_the_same_clock() -> None:
    df = sweep_requests((None, 1980.0), n_per_freq=3, default_applied_mhz=1980.0)
    s = summarize(df)
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
    s = summarize(pd.concat([ok, failed], ignore_index=True))
    assert set(s["energy_kind"]) == {"simulated"}
    oom = s[s["batch_size"] == 8].iloc[0]
    assert (oom["n"], oom["n_excluded"], oom["excluded_status"]) == (0, 2, 2)


def test_quality_flag_column_is_not_a_score() -> None:
    df = sweep_requests((1200.0,), n_per_freq=3)
    df["quality_applicable"] = True
    s = summarize(df)
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
    s = summarize(df)
    assert s["n"].iloc[0] == 8 and s["energy_j_ci_low"].iloc[0] < s["energy_j_ci_high"].iloc[0]


# --- the window is the unit; J/token is Σ energy / Σ tokens -----------------------------------------

# Two batched windows of natural-length answers: 8 J over 1+3+6+6 tokens, 12 J over 2+2+10+10.
BATCHED = [(1200.0, 8.0, (1, 3, 6, 6)), (1200.0, 12.0, (2, 2, 10, 10))]


def test_j_per_token_is_total_energy_over_total_tokens() -> None:
    df = batched_window_requests(BATCHED)
    row = summarize(df).iloc[0]
    # zeus / optimum-benchmark: 20 J / 40 tokens = 0.50; the mean of per-request ratios says
    # 0.87, because the short answers of a batch carry an even share of the window's energy
    assert row["j_per_token_mean"] == pytest.approx(20.0 / 40.0)
    mean_of_ratios = (2 / 1 + 2 / 3 + 2 / 6 + 2 / 6 + 3 / 2 + 3 / 2 + 3 / 10 + 3 / 10) / 8
    assert (df["energy_j"] / df["output_tokens"]).mean() == pytest.approx(mean_of_ratios)
    assert mean_of_ratios == pytest.approx(0.867, abs=1e-3)
    assert row["j_per_token_median"] == pytest.approx(np.median([8 / 16, 12 / 24]))
    assert (row["n"], row["n_windows"], row["n_items"]) == (8, 2, 2)
    # two windows (two item blocks) are two units: no honest interval, and the row says why
    assert math.isnan(row["j_per_token_ci_low"]) and math.isnan(row["j_per_token_ci_high"])
    # every interval is missing for this one reason: the row says it once
    assert note_of(row) == "not estimable: 2 items (an interval needs ≥ 3)"
    head = headline_metrics(summarize(df), df)
    (task,) = head["by_task"].values()  # the task's own Σ/Σ, and no interval where none exists
    assert task["j_per_token"] == pytest.approx(0.5) and "j_per_token_ci_low" not in task
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


def test_interval_is_over_windows_not_requests() -> None:
    # 4 windows of 8 requests: the J/token CI is a t interval of 4 values, not of 32
    windows = [(1200.0, e, (5,) * 8) for e in (40.0, 44.0, 48.0, 52.0)]
    df = batched_window_requests(windows)
    row = summarize(df).iloc[0]
    per_window = np.array([40.0, 44.0, 48.0, 52.0]) / 40.0
    r = per_window.mean()  # equal tokens per window: Σ/Σ is the mean
    # equal tokens: every leverage is 1/4, so HC2 is the textbook sd(u) / √4, u = v / R − 1
    se_log = per_window.std(ddof=1) / r / 2.0
    # df: Kish's effective number of windows by their energies, 184² / 8544 = 3.96, minus one
    # (just under 3: the windows' energies differ a little)
    dof = 184.0**2 / (40.0**2 + 44.0**2 + 48.0**2 + 52.0**2) - 1
    assert dof == pytest.approx(2.9625, abs=1e-4)
    half = stats.t.ppf(0.975, dof) * se_log
    assert row["j_per_token_mean"] == pytest.approx(1.15)
    assert row["j_per_token_ci_low"] == pytest.approx(r * math.exp(-half), rel=1e-12)
    assert row["j_per_token_ci_high"] == pytest.approx(r * math.exp(half), rel=1e-12)


def test_dynamic_j_per_token_and_gpu_name_in_headline() -> None:
    df = batched_window_requests(BATCHED)
    df["dynamic_energy_j"] = df["energy_j"] / 2
    df["gpu_name"] = "NVIDIA H200"
    head = headline_metrics(summarize(df), df)
    (task,) = head["by_task"].values()
    assert task["dynamic_j_per_token"] == pytest.approx(10.0 / 40.0)
    assert head["gpu"]["name"] == "NVIDIA H200"
    assert headline_metrics(summarize(df), df.assign(gpu_name=None))["gpu"]["name"] is None


def test_three_items_get_a_t_interval_not_z() -> None:
    # what the bootstrap's expansion factor approximated is now exact: at 3 items the half-width
    # on the log scale is a t quantile with Kish's df (7² / 21 − 1 = 1.33 for 1, 2, 4 J: at most
    # 2), not z (1.96), standard errors; large n → z
    df = minimal_requests([1.0, 2.0, 4.0])
    row = summarize(df).iloc[0]
    v = np.array([1.0, 2.0, 4.0])
    se_log = (v / v.mean()).std(ddof=1) / math.sqrt(3)  # one token each: h = 1/3, textbook SE
    half = math.log(row["j_per_token_ci_high"] / row["j_per_token_mean"])
    assert half == pytest.approx(stats.t.ppf(0.975, 49 / 21 - 1) * se_log)
    assert math.log(row["j_per_token_mean"] / row["j_per_token_ci_low"]) == pytest.approx(half)
    assert half / se_log > stats.t.ppf(0.975, 2) > 2 * stats.norm.ppf(0.975)
    wide = summarize(minimal_requests(list(np.linspace(1.0, 4.0, 400)))).iloc[0]
    v = np.linspace(1.0, 4.0, 400)
    se_log = (v / v.mean()).std(ddof=1) / math.sqrt(400)
    half = math.log(wide["j_per_token_ci_high"] / wide["j_per_token_mean"])
    assert half == pytest.approx(stats.t.ppf(0.975, kish_df(v)) * se_log)
    assert half / se_log == pytest.approx(stats.norm.ppf(0.975), rel=0.01)


def test_idle_baseline_uncertainty_widens_the_dynamic_interval() -> None:
    df = sweep_requests((1200.0,), n_per_freq=9, seed=3)
    df["dynamic_energy_j"] = df["energy_j"] * 0.5
    narrow = summarize(df).iloc[0]
    # Two baselines (two points): each one's error is shared by the requests measured after it.
    df["idle_power_before_w"] = [100.0 if i < 5 else 110.0 for i in range(len(df))]
    df["idle_power_after_w"] = df["idle_power_before_w"] + 4.0
    df["dynamic_energy_se_j"] = 0.2
    wide = summarize(df).iloc[0]
    tokens = df["output_tokens"].sum()
    expected = math.sqrt((0.2 * 5) ** 2 + (0.2 * (len(df) - 5)) ** 2) / tokens
    assert idle_se_per_token(df)[0] == pytest.approx(expected)
    assert wide["dynamic_j_per_token_idle_se"] == pytest.approx(expected)
    assert wide["dynamic_j_per_token_mean"] == pytest.approx(narrow["dynamic_j_per_token_mean"])
    # wider on both sides: the idle error is added on the log scale too (relative to the
    # value), so the interval stays the log-scale one, its upper side the longer
    assert wide["dynamic_j_per_token_ci_low"] < narrow["dynamic_j_per_token_ci_low"]
    assert wide["dynamic_j_per_token_ci_high"] > narrow["dynamic_j_per_token_ci_high"]
    mean = wide["dynamic_j_per_token_mean"]
    assert wide["dynamic_j_per_token_ci_high"] - mean > mean - wide["dynamic_j_per_token_ci_low"]
    # Without the column nothing changes.
    assert math.isnan(narrow["dynamic_j_per_token_idle_se"])
    assert math.isnan(narrow["dynamic_j_per_token_idle_df"])
    # No idle_power_df: each baseline counts 1 df (a before/after pair); Welch–Satterthwaite
    var = np.array([(0.2 * 5) ** 2, (0.2 * 4) ** 2])
    idle_df = var.sum() ** 2 / (var**2 / 1.0).sum()
    assert wide["dynamic_j_per_token_idle_df"] == pytest.approx(idle_df)
    # the interval by hand: the items' delta SE on the log scale (9 items, Kish's df) and the
    # idle SE relative to the value, in quadrature, Welch–Satterthwaite, exponentiated
    r, lo, hi = ratio_log_interval(df["dynamic_energy_j"], df["output_tokens"])
    assert (narrow["dynamic_j_per_token_ci_low"], narrow["dynamic_j_per_token_ci_high"]) == (
        pytest.approx(lo),
        pytest.approx(hi),
    )
    _r, se_items, df_items = ratio_log_se(df["dynamic_energy_j"], df["output_tokens"])
    extra = expected / r
    se = math.hypot(se_items, extra)
    dof = min(se**4 / (se_items**4 / df_items + extra**4 / idle_df), df_items)
    half = stats.t.ppf(0.975, dof) * se
    assert wide["dynamic_j_per_token_ci_low"] == pytest.approx(r * math.exp(-half))
    assert wide["dynamic_j_per_token_ci_high"] == pytest.approx(r * math.exp(half))
    # baselines of 30 samples: more df, a narrower interval than with 1 df each
    df["idle_power_df"] = 30
    assert idle_se_per_token(df) == pytest.approx((expected, var.sum() ** 2 / (var**2 / 30).sum()))
    many = summarize(df).iloc[0]
    assert many["dynamic_j_per_token_idle_df"] == pytest.approx(30 * idle_df)
    # (never more df than the items' own: with an idle error this small both stay there)
    assert (
        narrow["dynamic_j_per_token_ci_low"]
        > many["dynamic_j_per_token_ci_low"]
        >= wide["dynamic_j_per_token_ci_low"]
    )


# Numbers that were once wrong: the statistical unit is the window.
def test_power_cap_events_do_not_thin_the_default_baseline() -> None:
    df = batched_windows({None: [1.0], 1200.0: [1.0]}, batch=1)
    df["clock_event_reasons"] = 0x4  # SW power cap
    throttled = exclusion_flags(df)["throttled"]
    assert not throttled.iloc[0]  # default clocks: the power cap is how the driver runs
    assert throttled.iloc[1]  # under a cap: the cap was not what limited the clock
    df["clock_event_reasons"] = 0x40  # HW thermal: always excluded
    assert exclusion_flags(df)["throttled"].all()


# --- the item is the unit: repetitions and clocks are blocks within it ----------------------------


def test_repetitions_of_an_item_are_one_unit() -> None:
    # 6 items × 3 repetitions at 2 clocks: per configuration 18 windows but 6 items
    df = sweep_requests((None, 1200.0), n_per_freq=6, reps=3, length_jitter=True, seed=4)
    s = summarize(df)
    assert (s["n_windows"] == 18).all() and (s["n_items"] == 6).all()
    for freq, row in zip(s["freq_requested_mhz"], s.itertuples(), strict=True):
        sub = df[
            df["freq_requested_mhz"].isna()
            if math.isnan(freq)
            else df["freq_requested_mhz"] == freq
        ]
        per_item = sub.groupby("item_id").agg(
            energy=("energy_j", "sum"),
            tokens=("output_tokens", "sum"),
            latency=("latency_s", "mean"),
        )
        assert len(per_item) == 6
        # J/token: Σ over the items' Σ energy / Σ tokens, t interval over the 6 items (HC2 by
        # their tokens, Kish's df by their energies: under 5, not 17)
        r, lo, hi = ratio_log_interval(per_item["energy"], per_item["tokens"])
        assert kish_df(per_item["energy"]) < 5
        assert row.j_per_token_mean == pytest.approx(r)
        assert (row.j_per_token_ci_low, row.j_per_token_ci_high) == (
            pytest.approx(lo),
            pytest.approx(hi),
        )
        item_jpt = per_item["energy"] / per_item["tokens"]
        assert row.j_per_token_median == pytest.approx(item_jpt.median())
        assert row.j_per_token_cv == pytest.approx(item_jpt.std(ddof=1) / item_jpt.mean())
        # latency: mean over items of each item's mean latency, t interval over the 6 items
        lo, hi = t_log_interval(per_item["latency"])
        assert row.latency_s_mean == pytest.approx(per_item["latency"].mean())
        assert (row.latency_s_ci_low, row.latency_s_ci_high) == (
            pytest.approx(lo),
            pytest.approx(hi),
        )
        assert row.latency_s_cv == pytest.approx(
            per_item["latency"].std(ddof=1) / per_item["latency"].mean()
        )
        assert row.latency_p50_s == pytest.approx(per_item["latency"].median())


def test_latency_p50_interval_of_5_items_is_min_to_max_at_93_75_pct() -> None:
    df = sweep_requests((1200.0,), n_per_freq=5, reps=2, noise=0.05, seed=8)
    row = summarize(df).iloc[0]
    per_item = df.groupby("item_id")["latency_s"].mean()
    assert row["latency_p50_s"] == pytest.approx(per_item.median())
    assert row["latency_p50_ci_low"] == pytest.approx(per_item.min())
    assert row["latency_p50_ci_high"] == pytest.approx(per_item.max())
    assert row["latency_p50_ci_level"] == pytest.approx(1 - 2 * 0.5**5)
    assert note_of(row) == ""  # the level says it: no interval is missing


def test_latency_p50_interval_of_12_items_is_the_3rd_to_10th_order_statistic() -> None:
    df = sweep_requests((1200.0,), n_per_freq=12, noise=0.05, seed=9)
    row = summarize(df).iloc[0]
    lat = np.sort(df["latency_s"].to_numpy())
    # P(Bin(12, ½) ≤ 2) = 0.019 ≤ 0.025: [x(3), x(10)] covers the median with ≥ 95 %
    assert stats.binom.cdf(2, 12, 0.5) <= 0.025 < stats.binom.cdf(3, 12, 0.5)
    assert (row["latency_p50_ci_low"], row["latency_p50_ci_high"]) == (lat[2], lat[9])
    assert row["latency_p50_ci_level"] == LEVEL
    assert row["latency_p50_s"] == pytest.approx(np.median(lat))


def test_interval_note_fewer_than_three_items() -> None:
    row = summarize(sweep_requests((1200.0,), n_per_freq=2, reps=4)).iloc[0]
    assert (row["n_windows"], row["n_items"]) == (8, 2)  # 8 windows do not make 8 units
    # every interval is missing for the same reason: said once
    assert note_of(row) == "not estimable: 2 items (an interval needs ≥ 3)"
    ci_cols = [c for c in row.index if c.endswith(("_ci_low", "_ci_high"))]
    assert ci_cols and row[ci_cols].isna().all()
    assert math.isnan(row["latency_p50_ci_level"])
    assert row["j_per_token_mean"] > 0  # the estimate is still there


def test_interval_note_identical_items_give_no_zero_width_interval() -> None:
    row = summarize(minimal_requests([2.0, 2.0, 2.0, 2.0])).iloc[0]
    assert row["j_per_token_mean"] == pytest.approx(2.0)
    assert math.isnan(row["j_per_token_ci_low"]) and math.isnan(row["j_per_token_ci_high"])
    assert math.isnan(row["latency_p50_ci_low"])
    # every interval (J/token's and latency_p50's among them) is missing for this one reason,
    # said once; dynamic J/token was never measured (no dynamic energy), so it adds no note
    assert note_of(row) == "not estimable: every one of the 4 items gives the same value"
    assert math.isnan(row["dynamic_j_per_token_mean"])


def test_interval_note_items_without_tokens() -> None:
    row = summarize(minimal_requests([1.0, 2.0, 3.0], output_tokens=[0, 0, 0])).iloc[0]
    assert row["n_items"] == 3 and math.isnan(row["j_per_token_mean"])
    assert math.isnan(row["j_per_token_ci_low"]) and math.isnan(row["j_per_token_ci_high"])
    # J/token has no value at all (no tokens), but energy was measured: the note says why
    assert (
        "j_per_token: not estimable: no item has a positive denominator (e.g. zero-token "
        "outputs)" in note_of(row)
    )
    # the metrics without an interval are named, grouped by reason
    assert (
        "tokens_per_s, latency_s, latency_p50: not estimable: every one of the 3 items gives "
        "the same value" in note_of(row)
    )
    # energy per request is still estimable: it needs no tokens
    assert row["energy_j_ci_low"] < row["energy_j_mean"] < row["energy_j_ci_high"]


def test_interval_note_names_the_metric_when_others_have_intervals() -> None:
    # codecarbon's estimate: one constant power for every request, energies that still vary
    df = minimal_requests(
        [1.0, 2.0, 4.0, 3.0], latency_s=[1.0, 1.5, 2.5, 2.0], avg_power_w=[20.8] * 4
    )
    row = summarize(df).iloc[0]
    assert row["j_per_token_ci_low"] < row["j_per_token_mean"] < row["j_per_token_ci_high"]
    assert (
        note_of(row) == "avg_power_w: not estimable: every one of the 4 items gives the same value"
    )
