"""tradeoff.py / selection.py: Pareto frontier on a hand-made set; recommend_cap on sweeps with a
known answer, its intervals by hand (paired t on linearised item values with HC2 and Kish's df,
Bonferroni over the study's family), and a seeded Monte Carlo of the family-wise rule."""

from __future__ import annotations

import itertools
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
    sweep_requests,
    true_j_per_token,
)
from analysis_settings import STATS, recommend_cap, summarize
from hand_stats import paired_ratio_by_hand
from llm_energy.analysis.estimators import paired_ratio
from llm_energy.analysis.selection import CapComparison, CapVerdict, judge, pick
from llm_energy.analysis.tradeoff import (
    RECOMMEND_COLUMNS,
    pareto_frontier,
    pareto_mask,
    savings_headline,
)

SWEEP = (None, 1900.0, 1700.0, 1400.0, 1100.0)
ALPHA = STATS["alpha"]
BUDGET = STATS["latency_budget_pct"]


# --- hand-made sweeps: item rows shared by every clock ------------------------------------------

Cell = tuple[np.ndarray, np.ndarray, np.ndarray]  # energy, tokens, latency: items × repetitions


def cell(energy, latency, tokens=None) -> Cell:
    """One clock of one stratum, one repetition per item (row i is item i at every clock)."""
    e = np.asarray(energy, dtype=float).reshape(-1, 1)
    t = np.full_like(e, 8.0) if tokens is None else np.asarray(tokens, dtype=float).reshape(-1, 1)
    return e, t, np.asarray(latency, dtype=float).reshape(-1, 1)


def sweep_frame(sweep: dict[tuple[int, float], Cell]) -> pd.DataFrame:
    """Records of a sweep: stratum s is task ``t<s>``, frequency NaN the default clocks; row i of
    every cell is item ``i<i>`` (the same prompt at every clock), column r its repetition, one
    window per request."""
    rows = []
    for (stratum, freq), (energy, tokens, latency) in sweep.items():
        f = None if math.isnan(freq) else freq
        for i, r in itertools.product(range(energy.shape[0]), range(energy.shape[1])):
            rows.append(
                {
                    "task": f"t{stratum}",
                    "freq_requested_mhz": f,
                    "freq_applied_mhz": f,
                    "cap_held": None if f is None else True,
                    "item_id": f"i{i}",
                    "rep": r,
                    "energy_j": float(energy[i, r]),
                    "output_tokens": int(tokens[i, r]),
                    "latency_s": float(latency[i, r]),
                }
            )
    return as_records(pd.DataFrame(rows))


def paired_log_ratio(num_a, den_a, num_b, den_b) -> tuple[float, float, float]:
    """log(R_a / R_b) of two Σ/Σ ratios on the same items, its SE and df, by hand (delta method,
    HC2, Kish's df: hand_stats.paired_ratio_by_hand)."""
    ref = paired_ratio_by_hand(num_a, den_a, num_b, den_b)
    return ref["log_ratio"], ref["se"], ref["df"]


def _summary_rows(model: str, points: dict[float | None, tuple[float, float]]) -> list[dict]:
    return [
        {
            "model": model,
            "task": "t",
            "engine": "eager",
            "batch_size": 1,
            "input_tokens_target": 64,
            "output_tokens_target": 32,
            "freq_applied_mhz": np.nan if f is None else f,
            "energy_kind": "measured",
            "gpu_name": "sim-gpu",
            "default_clocks": f is None,
            "latency_p50_s": lat,
            "j_per_token_mean": e,
        }
        for f, (lat, e) in points.items()
    ]


def test_pareto_mask_hand_made() -> None:
    lat = [1.0, 1.1, 1.3, 1.5, 1.6, 2.0, 1.5, np.nan]
    energy = [6.0, 5.0, 5.5, 3.0, 3.0, 3.5, 3.0, 1.0]
    # 1.3/5.5 dominated by 1.1/5.0; 1.6/3.0 and 2.0/3.5 by 1.5/3.0; the duplicate 1.5/3.0
    # points do not dominate each other; NaN is never on the frontier
    assert pareto_mask(lat, energy).tolist() == [True, True, False, True, False, False, True, False]


def test_pareto_frontier_per_group() -> None:
    rows = _summary_rows(
        "a",
        {
            None: (1.0, 6.0),
            1800.0: (1.1, 5.0),
            1500.0: (1.3, 5.5),
            1200.0: (1.5, 3.0),
            900.0: (1.6, 3.0),
            600.0: (2.0, 3.5),
        },
    )
    # model b: its points would be dominated by model a's, but groups are separate
    rows += _summary_rows("b", {None: (3.0, 9.0), 900.0: (4.0, 8.0)})
    front = pareto_frontier(pd.DataFrame(rows))
    a = front[front["model"] == "a"].set_index("label")["on_frontier"].to_dict()
    assert a == {
        "default": True,
        "1800 MHz": True,
        "1500 MHz": False,
        "1200 MHz": True,
        "900 MHz": False,
        "600 MHz": False,
    }
    assert front[front["model"] == "b"]["on_frontier"].all()
    # sorted by latency inside a group
    lat_a = front[front["model"] == "a"]["latency_p50_s"].tolist()
    assert lat_a == sorted(lat_a)


def test_pareto_frontier_from_real_summary_and_single_point() -> None:
    s = summarize(sweep_requests(SWEEP, n_per_freq=5))
    front = pareto_frontier(s)
    assert front["on_frontier"].any() and len(front) == len(s)
    single = pareto_frontier(s.iloc[:1])
    assert single["on_frontier"].tolist() == [True]
    assert pareto_frontier(s.iloc[0:0]).empty


@pytest.mark.parametrize(
    ("budget", "expected"),
    [(5.0, 1900.0), (10.0, 1700.0), (25.0, 1400.0), (50.0, 1100.0)],
)
def test_recommend_cap_known_answer(budget: float, expected: float) -> None:
    # true latency vs default: 1900 +1.9 %, 1700 +7.5 %, 1400 +18.7 %, 1100 +36.2 %;
    # J/token falls monotonically with the clock, so the slowest cap within budget wins
    df = sweep_requests(SWEEP, n_per_freq=20, seed=11)
    rec = recommend_cap(df, latency_budget_pct=budget)
    assert list(rec.columns) == RECOMMEND_COLUMNS
    row = rec.iloc[0]
    assert row["baseline"] == "default"
    assert row["recommended_freq_mhz"] == expected
    assert row["saves_energy"]
    assert row["n_family"] == 4  # every cap of the sweep, whatever the budget admits
    assert row["latency_change_pct"] <= row["latency_change_ci_high"] <= budget
    true_saving = 100 * (1 - true_j_per_token(expected, 256, 64) / true_j_per_token(None, 256, 64))
    assert row["saving_ci_low"] <= true_saving <= row["saving_ci_high"]
    assert row["saving_pct"] == pytest.approx(true_saving, abs=1.5)
    assert row["saving_pct"] == pytest.approx(
        100 * (1 - row["recommended_mean"] / row["baseline_mean"])
    )
    base = df[df["freq_requested_mhz"].isna()]
    assert row["baseline_mean"] == pytest.approx(
        base["energy_j"].sum() / base["output_tokens"].sum()
    )
    assert row["baseline_latency_s"] == pytest.approx(base["latency_s"].mean())
    assert row["latency_limit_s"] == pytest.approx(row["baseline_latency_s"] * (1 + budget / 100))
    assert row["recommended_latency_s"] == pytest.approx(
        row["baseline_latency_s"] * (1 + row["latency_change_pct"] / 100)
    )
    assert (row["baseline_n"], row["recommended_n"]) == (20, 20)
    assert row["ci_level"] == pytest.approx(1 - ALPHA)


def test_recommend_columns_are_the_family_wise_ones() -> None:
    for removed in ("pick_share", "selection_bias_pct", "latency_change_ci_low", "p50"):
        assert not [c for c in RECOMMEND_COLUMNS if removed in c]
    for col in (
        "n_family",
        "baseline_latency_s",
        "recommended_latency_s",
        "latency_change_ci_high",
    ):
        assert col in RECOMMEND_COLUMNS


def test_recommend_cap_nothing_qualifies() -> None:
    df = sweep_requests(SWEEP, n_per_freq=10, seed=1, noise=0.002)  # 1900 MHz is +1.9 %
    row = recommend_cap(df, latency_budget_pct=0.1).iloc[0]
    assert math.isnan(row["recommended_freq_mhz"])
    assert not row["saves_energy"] and row["n_candidates"] == 0
    assert row["n_family"] == 4  # the comparisons were made; none passed the latency test
    assert "no frequency cap keeps mean latency within +0.1 %" in row["note"]
    assert savings_headline(recommend_cap(df, latency_budget_pct=0.1))["best_saving_pct"] is None


def test_recommend_cap_without_default_uses_highest_frequency() -> None:
    df = sweep_requests((1900.0, 1700.0, 1400.0), n_per_freq=10, seed=2)
    row = recommend_cap(df, latency_budget_pct=10.0).iloc[0]
    assert row["baseline"] == "highest (1900 MHz)"
    assert row["baseline_freq_mhz"] == 1900.0
    assert row["recommended_freq_mhz"] == 1700.0
    assert row["n_family"] == 2


def test_recommend_cap_no_saving_is_flagged() -> None:
    # the only cap is admitted (latency unchanged) but costs 30 % more energy
    base = [1.0, 1.1, 0.9, 1.05]
    sweep = {
        (0, math.nan): cell(base, latency=[1.0, 1.02, 0.98, 1.01]),
        (0, 1500.0): cell(
            [1.3 * v for v in base[:3]] + [1.3 * 1.06], latency=[1.0, 1.01, 0.99, 1.0]
        ),
    }
    row = recommend_cap(sweep_frame(sweep), latency_budget_pct=5.0).iloc[0]
    assert row["recommended_freq_mhz"] == 1500.0
    assert row["saving_pct"] < -25.0
    assert not row["saves_energy"]
    assert "does not lower energy; keep the baseline" in row["note"]


def test_recommend_cap_single_level_and_per_task() -> None:
    only = recommend_cap(sweep_requests((1200.0,), n_per_freq=3)).iloc[0]
    assert "only the baseline" in only["note"] and only["n_family"] == 0
    two = recommend_cap(sweep_requests(SWEEP, n_per_freq=6, tasks=("qa", "summarization")))
    assert sorted(two["task"]) == ["qa", "summarization"]
    # one family for the whole study: 2 strata × 4 caps
    assert (two["n_family"] == 8).all()


def test_savings_headline_picks_largest_saving() -> None:
    df = pd.concat(
        [
            sweep_requests(SWEEP, n_per_freq=10, tasks=("qa",), seed=3),
            sweep_requests(
                SWEEP, n_per_freq=10, tasks=("summarization",), seed=4, output_tokens=16
            ),
        ],
        ignore_index=True,
    )
    rec = recommend_cap(df, latency_budget_pct=10.0)
    assert rec["saves_energy"].all()
    head = savings_headline(rec)
    best = rec.loc[rec["saving_pct"].idxmax()]
    assert head["best_saving_pct"] == pytest.approx(best["saving_pct"])
    assert head["recommended_freq_mhz"] == best["recommended_freq_mhz"]
    assert head["latency_change_ci_high"] == pytest.approx(best["latency_change_ci_high"])
    assert head["task"] == best["task"]
    assert head["n_strata"] == 2 and head["latency_budget_pct"] == 10.0
    assert head["n_strata_with_saving"] == 2


def test_recommend_cap_intervals_by_hand() -> None:
    # 6 items; 1600 MHz: −10 % energy, +2 % latency; 1200 MHz: −30 % energy, +20 % latency
    base_e = np.array([8.0, 9.5, 7.2, 10.1, 8.8, 9.0])
    tokens = np.array([8, 12, 6, 14, 9, 10])
    base_l = np.array([1.00, 1.30, 0.80, 1.50, 1.10, 1.20])
    noise = np.array([1.01, 0.99, 1.02, 0.985, 1.0, 0.995])
    sweep = {
        (0, math.nan): cell(base_e, base_l, tokens),
        (0, 1600.0): cell(base_e * 0.90 * noise, base_l * 1.02 * noise[::-1], tokens),
        (0, 1200.0): cell(base_e * 0.70 * noise[::-1], base_l * 1.20 * noise, tokens),
    }
    row = recommend_cap(sweep_frame(sweep)).iloc[0]
    m, n = 2, 6
    assert row["n_family"] == m and row["n_candidates"] == 1
    assert row["recommended_freq_mhz"] == 1600.0 and row["saves_energy"]
    log_ratio, se, dof = paired_log_ratio(base_e * 0.90 * noise, tokens, base_e, tokens)
    ratio = math.exp(log_ratio)
    assert 4.9 < dof < n - 1  # the items differ a little in energy: 5.94 effective items
    # Bonferroni: every one of the m intervals at 1 − α/m, two-sided
    half = stats.t.ppf(1 - ALPHA / (2 * m), dof) * se
    assert row["saving_pct"] == pytest.approx(100 * (1 - ratio))
    assert row["saving_ci_low"] == pytest.approx(100 * (1 - ratio * math.exp(half)))
    assert row["saving_ci_high"] == pytest.approx(100 * (1 - ratio * math.exp(-half)))
    # latency: ratio of mean latencies on the same items, one-sided upper 1 − α bound
    lat, se, dof = paired_log_ratio(base_l * 1.02 * noise[::-1], np.ones(n), base_l, np.ones(n))
    upper = math.exp(lat + stats.t.ppf(1 - ALPHA, dof) * se)
    assert row["latency_change_pct"] == pytest.approx(100 * (math.exp(lat) - 1))
    assert row["latency_change_ci_high"] == pytest.approx(100 * (upper - 1))
    assert row["latency_change_ci_high"] <= BUDGET
    assert row["ci_level"] == pytest.approx(1 - ALPHA)


def test_claimed_cap_beats_a_cheaper_looking_unclaimed_one() -> None:
    # 1400 MHz looks cheaper (−20 %) but its items disagree wildly; 1600 MHz is a steady −8 %:
    # the pick is the claimed cap, not the lowest point estimate
    base_e = np.array([8.0, 9.0, 10.0, 8.5, 9.5])
    lat = np.array([1.0, 1.1, 1.2, 0.9, 1.05])
    steady = np.array([1.01, 0.99, 1.0, 1.005, 0.995])
    wild = np.array([0.45, 1.2, 0.6, 1.15, 0.6])
    sweep = {
        (0, math.nan): cell(base_e, lat),
        (0, 1600.0): cell(base_e * 0.92 * steady, lat * steady),
        (0, 1400.0): cell(base_e * wild, lat * steady[::-1]),
    }
    row = recommend_cap(sweep_frame(sweep)).iloc[0]
    assert row["n_candidates"] == 2
    assert row["recommended_freq_mhz"] == 1600.0 and row["saves_energy"]
    assert row["saving_ci_low"] > 0
    # without the steady cap, the cheaper-looking one is shown, but no saving is claimed
    del sweep[(0, 1600.0)]
    row = recommend_cap(sweep_frame(sweep)).iloc[0]
    assert row["recommended_freq_mhz"] == 1400.0
    assert row["saving_pct"] > 15 and not row["saves_energy"] and row["saving_ci_low"] <= 0
    assert "not established" in row["note"]
    assert f"its {1 - ALPHA:.0%} interval, simultaneous over the study's" in row["note"]
    # the family's level in the note is the study's, 1 − α, not a fixed 95 %
    loose = recommend_cap(sweep_frame(sweep), alpha=0.2).iloc[0]
    assert loose["ci_level"] == pytest.approx(0.8) and not loose["saves_energy"]
    assert "its 80% interval" in loose["note"] and "95%" not in loose["note"]


def test_unpaired_levels_join_no_family() -> None:
    # different items at each clock: no paired ratio, so no comparison and no claim
    df = groups_to_requests({None: [1.0, 1.1, 0.9, 1.05], 1500.0: [0.5, 0.6, 0.55, 0.52]})
    row = recommend_cap(df).iloc[0]
    assert row["n_family"] == 0 and not row["paired"]
    assert not row["saves_energy"] and math.isnan(row["recommended_freq_mhz"])
    assert row["note"] == (
        "no cap could be compared with the baseline on its items: no item measured under both"
    )


def test_a_cap_with_no_estimable_comparison_says_why() -> None:
    # the same 4 items at both clocks, every one exactly 25 % cheaper: the paired ratio has no
    # interval (every item gives the same value), so nothing joins the family, and the note says
    # so rather than blaming the latency budget
    base = np.array([1.0, 1.2, 0.9, 1.1])
    lat = np.array([1.0, 1.05, 0.95, 1.02])
    sweep = {(0, math.nan): cell(base, lat), (0, 1500.0): cell(0.75 * base, lat)}
    row = recommend_cap(sweep_frame(sweep)).iloc[0]
    assert row["n_family"] == 0 and not row["saves_energy"]
    assert math.isnan(row["recommended_freq_mhz"])
    assert row["note"] == (
        "no cap could be compared with the baseline on its items: "
        "every one of the 4 paired items gives the same value"
    )


def test_one_window_of_four_requests_claims_nothing() -> None:
    # once: "saving 25 %, CI [25, 25], saves_energy=True" from 4 requests sharing one reading
    df = batched_window_requests([(None, 40.0, (8, 8, 8, 8)), (1200.0, 30.0, (8, 8, 8, 8))])
    row = recommend_cap(df).iloc[0]
    assert not row["saves_energy"]
    assert math.isnan(row["saving_pct"]) and math.isnan(row["recommended_freq_mhz"])
    assert row["baseline_n"] == 1 and "the baseline has 1 item (< 3)" in row["note"]
    assert savings_headline(recommend_cap(df))["best_saving_pct"] is None


def test_min_samples_items_per_level_is_honoured() -> None:
    df = sweep_requests(SWEEP, n_per_freq=3, seed=5)
    assert recommend_cap(df, min_samples=3).iloc[0]["n_levels"] == 5
    row = recommend_cap(df, min_samples=4).iloc[0]
    assert math.isnan(row["recommended_freq_mhz"]) and not row["saves_energy"]
    assert row["min_samples"] == 4 and "the baseline has 3 items (< 4)" in row["note"]
    assert "1900 MHz (n=3)" in row["note"] and row["n_family"] == 0
    # repetitions do not count as items: 3 items × 4 repetitions are still 3
    reps = sweep_requests(SWEEP, n_per_freq=3, reps=4, seed=5)
    assert recommend_cap(reps, min_samples=4).iloc[0]["baseline_n"] == 3


def test_latency_budget_is_checked_on_the_one_sided_upper_bound() -> None:
    # 1900 MHz is +1.9 % at the point, but with noisy latency its upper bound reaches past +5 %
    noisy = sweep_requests((None, 1900.0), n_per_freq=6, noise=0.08, seed=3)
    row = recommend_cap(noisy, latency_budget_pct=5.0).iloc[0]
    assert row["n_candidates"] == 0 and "at the one-sided upper bound" in row["note"]
    quiet = sweep_requests((None, 1900.0), n_per_freq=6, noise=0.002, seed=3)
    row = recommend_cap(quiet, latency_budget_pct=5.0).iloc[0]
    assert row["recommended_freq_mhz"] == 1900.0
    lat_b = quiet.loc[quiet["freq_requested_mhz"].isna(), "latency_s"].to_numpy()
    lat_c = quiet.loc[quiet["freq_requested_mhz"] == 1900.0, "latency_s"].to_numpy()
    ones = np.ones(6)
    lat, se, dof = paired_log_ratio(lat_c, ones, lat_b, ones)
    assert 4.99 < dof < 5  # alike items: Kish's df just under n − 1
    assert se == pytest.approx(np.std(lat_c / lat_c.mean() - lat_b / lat_b.mean(), ddof=1) / 6**0.5)
    upper = math.exp(lat + stats.t.ppf(1 - ALPHA, dof) * se)
    assert row["latency_change_ci_high"] == pytest.approx(100 * (upper - 1))
    assert row["latency_change_pct"] < row["latency_change_ci_high"] <= 5.0


def test_saving_claimed_only_when_its_simultaneous_ci_excludes_zero() -> None:
    df = sweep_requests(SWEEP, n_per_freq=20, seed=11)
    rec = recommend_cap(df, latency_budget_pct=10.0)
    row = rec.iloc[0]
    assert row["saves_energy"] and row["saving_ci_low"] > 0
    assert row["paired"]  # the same items ran at every clock
    # a small true saving in noisy data: a cheaper point, but not established
    base = np.array([1.0, 1.3, 0.8, 1.1])
    sweep = {
        (0, math.nan): cell(base, [1.0, 1.02, 0.99, 1.01]),
        (0, 1500.0): cell(base * [0.90, 1.04, 0.93, 1.02], [1.0, 1.01, 1.0, 1.02]),
    }
    row = recommend_cap(sweep_frame(sweep)).iloc[0]
    assert row["saving_pct"] > 0 and not row["saves_energy"] and row["saving_ci_low"] <= 0
    assert "not established" in row["note"]


# Numbers that were once wrong: the statistical unit is the item.
def test_recommendation_needs_items_not_requests() -> None:
    # one window of 4 requests per clock once gave "saving 25 %, CI [25, 25], saves_energy"
    df = batched_windows({None: [1.0], 1200.0: [0.75]}, batch=4)
    row = recommend_cap(df).iloc[0]
    assert not row["saves_energy"] and math.isnan(row["saving_ci_low"])


def test_saving_claim_is_held_to_the_whole_family() -> None:
    # 5 caps, all alike: the cheapest-looking one is a 3 % "saving" whose own 95 % interval
    # excludes 0, but not the interval every one of the 5 comparisons is held to
    base = np.array([1.00, 1.05, 0.95, 1.02, 0.98])
    jitter = np.array([1.02, 0.98, 1.0, 1.012, 0.988])
    lat = np.array([1.0, 1.1, 0.9, 1.05, 0.95])
    sweep = {(0, math.nan): cell(base, lat)}
    for j, freq in enumerate((1800.0, 1600.0, 1400.0, 1200.0, 1000.0)):
        sweep[(0, freq)] = cell(base * (0.97 + 0.01 * j) * np.roll(jitter, j), lat * jitter)
    row = recommend_cap(sweep_frame(sweep)).iloc[0]
    assert row["recommended_freq_mhz"] == 1800.0
    assert row["saving_pct"] == pytest.approx(3.0, abs=0.2)
    assert row["n_candidates"] == 5 and row["n_family"] == 5
    assert not row["saves_energy"] and row["saving_ci_low"] <= 0
    assert "not established" in row["note"] and "5 cap comparisons" in row["note"]
    ones = np.ones(5)
    alone = paired_ratio(base * 0.97 * jitter, ones, base, ones, level=0.95)
    assert alone.ratio.ci_high < 1  # picked and judged on its own, it would be "significant"


# --- Monte Carlo of the family-wise rule: 3 strata × 4 caps, 5 items × 2 repetitions ------------

CAPS = (1800.0, 1600.0, 1400.0, 1200.0)


def draw_sweep(
    rng: np.random.Generator,
    *,
    length_sd: float,
    energy: dict[tuple[int, float], float] | None = None,
    latency: dict[tuple[int, float], float] | None = None,
    n_strata: int = 3,
    n_items: int = 5,
    reps: int = 2,
) -> dict[tuple[int, float], Cell]:
    """Baseline (NaN) and CAPS per stratum; each item has its own token count (lognormal spread
    ``length_sd``; 0 = fixed-length answers) and its own cost and speed (30 %) at every clock;
    windows add 5 % energy and 1 % latency noise. ``energy`` / ``latency``: (stratum, cap) →
    true factor against the baseline (1 = no effect)."""
    energy, latency = energy or {}, latency or {}
    sweep = {}
    for s in range(n_strata):
        tokens = np.round(40.0 * rng.lognormal(0.0, length_sd, n_items)) if length_sd else None
        tokens = np.full(n_items, 40.0) if tokens is None else tokens
        tok = np.repeat(tokens[:, None], reps, axis=1)
        cost = rng.lognormal(0.0, 0.3, (n_items, 1))
        speed = rng.lognormal(0.0, 0.3, (n_items, 1))
        for f in (math.nan, *CAPS):
            e = 0.5 * tok * cost * energy.get((s, f), 1.0) * rng.lognormal(0, 0.05, tok.shape)
            lat = 0.02 * tok * speed * latency.get((s, f), 1.0) * rng.lognormal(0, 0.01, tok.shape)
            sweep[(s, f)] = (e, tok, lat)
    return sweep


def decide(
    sweep: dict[tuple[int, float], Cell],
) -> tuple[list[CapVerdict], int, dict[int, CapVerdict | None]]:
    """What recommend_cap decides, from the item arrays (the records route costs 0.2 s a sweep;
    test_fast_route_decides_as_recommend_cap checks they agree): per item Σ energy / Σ tokens
    and mean latency over repetitions, paired with the baseline, judged as one family."""
    comparisons = []
    strata = sorted({s for s, _ in sweep})
    for s in strata:
        e0, t0, l0 = sweep[(s, math.nan)]
        for f in sorted((f for t, f in sweep if t == s and not math.isnan(f)), reverse=True):
            e, t, lat = sweep[(s, f)]
            ones = np.ones(len(e))
            energy = paired_ratio(e.sum(1), t.sum(1), e0.sum(1), t0.sum(1), level=0.95)
            latency = paired_ratio(lat.mean(1), ones, l0.mean(1), ones, level=0.95)
            comparisons.append(CapComparison(s, f, energy, latency))
    verdicts, m = judge(comparisons, alpha=ALPHA, latency_budget_pct=BUDGET)
    picks = {s: pick([v for v in verdicts if v.comparison.stratum == s]) for s in strata}
    return verdicts, m, picks


def test_fast_route_decides_as_recommend_cap() -> None:
    rng = np.random.default_rng(99)
    designs = [
        {},
        {"energy": {(0, 1400.0): 0.85}},
        {"latency": {(1, 1800.0): 1.05}, "energy": {(2, 1200.0): 0.7}},
    ]
    for design in designs:
        sweep = draw_sweep(rng, length_sd=0.5, **design)
        rec = recommend_cap(sweep_frame(sweep))
        verdicts, m, picks = decide(sweep)
        assert (rec["n_family"] == m).all() and m == 12
        for s, row in enumerate(rec.itertuples()):
            assert row.task == f"t{s}"
            assert row.n_candidates == sum(
                v.admitted for v in verdicts if v.comparison.stratum == s
            )
            best = picks[s]
            if best is None:
                assert math.isnan(row.recommended_freq_mhz) and not row.saves_energy
                continue
            lo, hi = best.saving_ci
            assert row.recommended_freq_mhz == best.comparison.freq_mhz
            assert row.saves_energy == best.claimed
            assert (row.saving_pct, row.saving_ci_low, row.saving_ci_high) == (
                pytest.approx(best.saving_pct),
                pytest.approx(lo),
                pytest.approx(hi),
            )
            assert row.latency_change_ci_high == pytest.approx(100 * (best.latency_upper - 1))


def test_no_true_effect_claims_a_saving_in_at_most_5_pct_of_200_sweeps() -> None:
    # 12 chances per study to see a saving that is not there. Fixed-length answers (output_mode
    # fixed). The rule's bound is α/2 = 2.5 %: 5 claims expected; at this seed 6 (one-sided 95 %
    # Clopper–Pearson upper bound 5.8 %; 7 under the textbook sd / √n and n − 1 df). A rule at
    # 2.5 % passes "≤ 10" with 98.7 % chance, one at 5 % with 58 %: 200 sweeps tell 2.5 % from
    # 5 % only roughly.
    rng = np.random.default_rng(2024)
    any_claim = admitted = total = alone = 0
    for _ in range(200):
        verdicts, m, _ = decide(draw_sweep(rng, length_sd=0.0))
        assert m == 12
        any_claim += any(v.claimed for v in verdicts)
        admitted += sum(v.admitted for v in verdicts)
        total += len(verdicts)
        alone += any(v.comparison.energy.ratio.ci_high < 1 for v in verdicts if v.admitted)
    assert admitted / total > 0.95  # the caps were admitted: a test of the saving, not the budget
    assert any_claim / 200 <= 0.05
    # what the family-wise rule protects against: judged alone at 95 %, some admitted cap
    # "saves energy" in about a quarter of the sweeps (48 of 200 at this seed)
    assert alone / 200 > 0.15


def test_a_true_15_pct_saving_is_claimed_in_most_sweeps() -> None:
    # one cap of one stratum saves 15 % at unchanged latency; natural-length answers;
    # 5 items × 2 repetitions, the same family of 12. Claimed in 55 of 100 at this seed (54 %
    # over seeds 100–104) with HC2 and Kish's df; 76 (75 %) under the textbook sd / √n and
    # n − 1 df: Kish's df (about 3 here, not 4) make the 1 − α/12 t quantile much larger.
    # That is the price of holding the size (7.1 % → 5.2 % at nominal 5 % with these lengths);
    # benchmarks/stats_calibration.py measures the power in the study's own design
    rng = np.random.default_rng(15)
    claimed = covered = 0
    for _ in range(100):
        _, _, picks = decide(draw_sweep(rng, length_sd=0.5, energy={(0, 1400.0): 0.85}))
        best = picks[0]
        if best is not None and best.comparison.freq_mhz == 1400.0:
            claimed += best.claimed
            lo, hi = best.saving_ci
            covered += lo <= 15.0 <= hi
        else:
            covered += 1  # another cap was shown: not this interval's claim
    assert claimed / 100 >= 0.5
    # the simultaneous interval of the pick holds the true saving (≥ 95 % by design; 98 of 100
    # at this seed; 0.92 leaves 1.5 binomial SEs for a correct rule)
    assert covered / 100 >= 0.92


def test_a_cap_exactly_at_the_latency_budget_is_rarely_admitted() -> None:
    # every cap is +5 % slower, exactly the budget: the one-sided test should admit it about α of
    # the time (natural-length answers; 100 sweeps × 12 caps; 68 of 1200 = 5.7 % at this seed,
    # 90 = 7.5 % under the textbook sd / √n and n − 1 df)
    rng = np.random.default_rng(5)
    at_budget = {(s, f): 1 + BUDGET / 100 for s in range(3) for f in CAPS}
    admitted = 0
    for _ in range(100):
        verdicts, _, _ = decide(draw_sweep(rng, length_sd=0.5, latency=at_budget))
        admitted += sum(v.admitted for v in verdicts)
    assert admitted / 1200 <= 0.1
    # a cap twice the budget away is never admitted
    rng = np.random.default_rng(6)
    over = {(s, f): 1 + 2 * BUDGET / 100 for s in range(3) for f in CAPS}
    verdicts, _, picks = decide(draw_sweep(rng, length_sd=0.5, latency=over))
    assert not any(v.admitted for v in verdicts) and set(picks.values()) == {None}
