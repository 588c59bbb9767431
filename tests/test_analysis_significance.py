"""significance.py against hand-worked values and known distributions."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from scipy import stats
from statsmodels.stats.oneway import anova_oneway

from analysis_fixtures import (
    as_records,
    batched_window_requests,
    batched_windows,
    groups_to_requests,
    sweep_requests,
)
from analysis_settings import energy_ols, frequency_effect, pairwise_vs_default, spearman_lengths
from llm_energy.analysis.significance import (
    FREQUENCY_EFFECT_COLUMNS,
    PAIRWISE_COLUMNS,
)

HAND = {None: [7.0, 8.0, 9.0], 1200.0: [4.0, 5.0, 6.0], 900.0: [1.0, 2.0, 3.0]}


def test_anova_hand_worked() -> None:
    # means 8, 5, 2; grand mean 5; SSB = 3·(9 + 0 + 9) = 54 (df 2); SSW = 3·2 = 6 (df 6)
    # → F = (54/2) / (6/6) = 27
    res = frequency_effect(groups_to_requests(HAND), alpha=0.05, min_samples=3).iloc[0]
    assert res["test"] == "anova"  # each group is perfectly symmetric, variances equal
    assert res["statistic"] == pytest.approx(27.0)
    assert (res["df_between"], res["df_within"]) == (2, 6)
    # F(2, d2) survival function in closed form: (1 + 2F/d2)^(-d2/2) = 10^-3
    assert res["p_value"] == pytest.approx(1e-3)
    assert res["effect_size"] == pytest.approx(54.0 / 60.0)  # η² = SSB / SST
    assert res["effect_size_kind"] == "eta_squared"
    assert res["verdict"] == "significant"
    assert list(frequency_effect(groups_to_requests(HAND)).columns) == FREQUENCY_EFFECT_COLUMNS


def test_kruskal_hand_worked() -> None:
    # no ties: ranks = values; R = 6, 15, 24 → H = 12/(9·10)·(36+225+576)/3 − 30 = 7.2
    res = frequency_effect(groups_to_requests(HAND), test="kruskal").iloc[0]
    assert res["test"] == "kruskal"
    assert res["statistic"] == pytest.approx(7.2)
    assert res["p_value"] == pytest.approx(math.exp(-7.2 / 2))  # χ²(2) survival = e^(−H/2)
    assert res["effect_size"] == pytest.approx(7.2 / 8)  # ε² = H / (n − 1)
    assert res["effect_size_kind"] == "epsilon_squared"


def test_auto_falls_back_to_kruskal_for_skewed_data() -> None:
    skewed = [1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6, 1.7, 1.8, 60.0]
    groups = {None: skewed, 1200.0: [x + 0.5 for x in skewed], 900.0: [x + 1.0 for x in skewed]}
    res = frequency_effect(groups_to_requests(groups)).iloc[0]
    assert not res["normal"]
    assert res["test"] == "kruskal" and res["design"] == "independent"
    assert "Shapiro" in res["test_reason"] and "equal variances" in res["test_reason"]
    h_ref = stats.kruskal(*[np.array(v) for v in groups.values()]).statistic
    assert res["statistic"] == pytest.approx(h_ref)


def test_blocked_sweep_detects_a_real_frequency_effect() -> None:
    df = sweep_requests((None, 1500.0, 1000.0), n_per_freq=12, noise=0.03, seed=7)
    res = frequency_effect(df).iloc[0]
    assert res["test"] == "friedman" and res["design"] == "blocked-complete"
    assert res["p_value"] < 0.001
    assert res["verdict"] == "significant"


def test_false_positive_rate_when_means_are_equal() -> None:
    rng = np.random.default_rng(123)
    not_rejected = 0
    reps = 40
    for _ in range(reps):
        groups = {f: rng.normal(10.0, 1.0, 10).tolist() for f in (None, 1500.0, 1000.0)}
        res = frequency_effect(groups_to_requests(groups), alpha=0.05).iloc[0]
        not_rejected += res["p_value"] > 0.05
    assert not_rejected / reps >= 0.85


def test_frequency_effect_skips_cleanly() -> None:
    one_level = frequency_effect(groups_to_requests({1200.0: [1.0, 2.0, 3.0, 4.0]})).iloc[0]
    assert one_level["verdict"] == "skipped: only one frequency level"
    few = frequency_effect(groups_to_requests({None: [1.0, 2.0], 900.0: [3.0, 4.0]}), min_samples=3)
    assert few.iloc[0]["verdict"].startswith("skipped: fewer than 2 frequency levels")
    assert "default (n=2)" in few.iloc[0]["note"]
    constant = frequency_effect(groups_to_requests({None: [2.0] * 4, 900.0: [2.0] * 4})).iloc[0]
    assert constant["verdict"].startswith("skipped")
    assert frequency_effect(as_records(pd.DataFrame())).empty


def test_frequency_effect_drops_sparse_level_but_tests_the_rest() -> None:
    groups = {**HAND, 600.0: [0.5]}
    res = frequency_effect(groups_to_requests(groups), min_samples=3).iloc[0]
    assert res["n_levels"] == 3
    assert res["statistic"] == pytest.approx(27.0)
    assert "600 MHz (n=1)" in res["note"]


def _welch_p(x: np.ndarray, y: np.ndarray) -> float:
    vx, vy = x.var(ddof=1) / len(x), y.var(ddof=1) / len(y)
    t = (x.mean() - y.mean()) / math.sqrt(vx + vy)
    dof = (vx + vy) ** 2 / (vx**2 / (len(x) - 1) + vy**2 / (len(y) - 1))
    return float(2 * stats.t.sf(abs(t), dof))


def _holm(pvals: list[float]) -> list[float]:
    m = len(pvals)
    order = sorted(range(m), key=lambda i: pvals[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvals[i]))
        adjusted[i] = running
    return adjusted


def normal_groups(
    seed: int, mean_sd: dict[float | None, tuple[float, float]], n: int = 12
) -> tuple[dict[float | None, np.ndarray], pd.DataFrame]:
    """`n` seeded normal draws per clock (mean, sd), and the same values as requests."""
    rng = np.random.default_rng(seed)
    groups = {freq: rng.normal(mean, sd, n) for freq, (mean, sd) in mean_sd.items()}
    return groups, groups_to_requests({k: v.tolist() for k, v in groups.items()})


def test_pairwise_welch_holm_against_manual() -> None:
    groups, req = normal_groups(
        2, {None: (10.0, 1.0), 1500.0: (10.3, 1.0), 1200.0: (9.0, 1.0), 900.0: (8.0, 1.0)}
    )
    table = pairwise_vs_default(req)
    assert list(table.columns) == PAIRWISE_COLUMNS
    assert (table["test"] == "welch_t").all()
    assert (table["baseline"] == "default").all()
    base = groups[None]
    freqs = [1500.0, 1200.0, 900.0]
    raw = [_welch_p(groups[f], base) for f in freqs]
    holm = _holm(raw)
    for f, p, p_adj in zip(freqs, raw, holm, strict=True):
        row = table[table["freq_mhz"] == f].iloc[0]
        assert row["p_value"] == pytest.approx(p, rel=1e-9)
        assert row["p_holm"] == pytest.approx(p_adj, rel=1e-9)
        assert row["pct_change"] == pytest.approx(100 * (groups[f].mean() / base.mean() - 1))
        x, y = groups[f], base
        pooled = math.sqrt((11 * x.var(ddof=1) + 11 * y.var(ddof=1)) / 22)
        d = (x.mean() - y.mean()) / pooled
        assert row["cohens_d"] == pytest.approx(d)
        assert row["effect_size"] == pytest.approx(d * (1 - 3 / (4 * 24 - 9)))
    assert table.set_index("freq_mhz").loc[900.0, "significant"]


def test_pairwise_mann_whitney_and_rank_biserial() -> None:
    skewed = [1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6, 1.7, 1.8, 60.0]
    capped = [x - 0.35 for x in skewed]
    table = pairwise_vs_default(groups_to_requests({None: skewed, 1000.0: capped}))
    row = table.iloc[0]
    assert row["test"] == "mann_whitney_u"
    x, y = np.array(capped), np.array(skewed)
    u = sum((xi > yj) + 0.5 * (xi == yj) for xi in x for yj in y)
    assert row["statistic"] == pytest.approx(u)
    assert row["effect_size"] == pytest.approx(2 * u / (len(x) * len(y)) - 1)
    assert row["p_holm"] == pytest.approx(row["p_value"])  # one comparison: Holm is identity


def test_pairwise_without_default_uses_highest_frequency() -> None:
    table = pairwise_vs_default(
        groups_to_requests({1980.0: [7, 8, 9], 1200.0: [4, 5, 6], 900.0: [1, 2, 3]})
    )
    assert set(table["freq_mhz"]) == {1200.0, 900.0}
    assert (table["baseline_freq_mhz"] == 1980.0).all()
    assert table["baseline"].iloc[0] == "highest (1980 MHz)"
    assert table.set_index("freq_mhz").loc[900.0, "pct_change"] == pytest.approx(-75.0)


def test_pairwise_skip_row_for_single_level() -> None:
    table = pairwise_vs_default(groups_to_requests({1200.0: [1.0, 2.0, 3.0]}))
    assert table.iloc[0]["test"] == "skipped"


def test_spearman_hand_worked() -> None:
    # ranks of y: 2 1 4 3 5 → d = −1 1 −1 1 0, Σd² = 4 → ρ = 1 − 6·4 / (5·24) = 0.8
    df = as_records(
        pd.DataFrame(
            {
                "model": "m",
                "task": "t",
                "energy_kind": "measured",
                "input_tokens": [1, 2, 3, 4, 5],
                "output_tokens": [10, 10, 10, 10, 10],
                "energy_j": [2.0, 1.0, 4.0, 3.0, 5.0],
            }
        )
    )
    table = spearman_lengths(df)
    row = table[(table["scope"] == "model×task") & (table["variable"] == "input_tokens")].iloc[0]
    assert row["rho"] == pytest.approx(0.8)
    t = 0.8 * math.sqrt(3 / (1 - 0.64))
    assert row["p_value"] == pytest.approx(2 * stats.t.sf(t, 3))
    constant = table[
        (table["scope"] == "model×task") & (table["variable"] == "output_tokens")
    ].iloc[0]
    assert math.isnan(constant["rho"]) and "constant" in constant["note"]
    assert set(table["scope"]) == {"model×task", "overall"}


def test_spearman_on_sweep_finds_output_length_effect() -> None:
    df = sweep_requests((1200.0,), n_per_freq=30, length_jitter=True, tasks=("qa", "summarization"))
    table = spearman_lengths(df)
    overall = table[(table["scope"] == "overall") & (table["variable"] == "output_tokens")].iloc[0]
    assert overall["rho"] > 0.9 and overall["p_value"] < 1e-6
    assert len(table[table["scope"] == "model×task"]) == 4


# --- design-aware test choice: Welch for unequal variances, blocked tests for paired items --------


def test_welch_anova_for_unequal_variances_against_statsmodels_and_formula() -> None:
    groups, req = normal_groups(5, {None: (10.0, 0.2), 1500.0: (10.3, 2.0), 1000.0: (9.0, 4.0)})
    res = frequency_effect(req).iloc[0]
    assert res["test"] == "welch_anova"  # not Kruskal–Wallis: it does not fix unequal variances
    assert "Levene rejects equal variances" in res["test_reason"]
    ref = anova_oneway(list(groups.values()), use_var="unequal", welch_correction=True)
    assert res["statistic"] == pytest.approx(ref.statistic)
    assert res["p_value"] == pytest.approx(ref.pvalue)
    assert res["df_within"] == pytest.approx(ref.df_denom)
    # Welch (1951) by hand: weights n/s², weighted grand mean, F* and its denominator df
    g = [np.asarray(v) for v in groups.values()]
    w = np.array([len(x) / x.var(ddof=1) for x in g])
    means = np.array([x.mean() for x in g])
    grand = (w * means).sum() / w.sum()
    k = len(g)
    lam = sum((1 - wi / w.sum()) ** 2 / (len(x) - 1) for wi, x in zip(w, g, strict=True))
    f = ((w * (means - grand) ** 2).sum() / (k - 1)) / (1 + 2 * (k - 2) / (k**2 - 1) * lam)
    assert res["statistic"] == pytest.approx(f)
    assert res["df_within"] == pytest.approx((k**2 - 1) / (3 * lam))


def _blocked_frame(values: dict[float | None, list[float]], reps: int = 1) -> pd.DataFrame:
    """One window per item and repetition: item i has values[f][i] (+ a rep offset) at clock f."""
    windows = []
    for rep in range(reps):
        for freq, vals in values.items():
            windows += [(freq, v + 0.01 * rep, (1,)) for v in vals]
    df = batched_window_requests(windows)
    # item ids: the i-th window of a clock within each repetition is item i
    df["item_id"] = [f"item-{i % len(next(iter(values.values())))}" for i in range(len(df))]
    return df


def test_friedman_on_per_item_means_against_scipy() -> None:
    rng = np.random.default_rng(8)
    item = rng.lognormal(0, 0.6, 10)  # items differ far more than clocks do
    values = {None: item * 1.00, 1500.0: item * 0.97, 1000.0: item * 0.93}
    values = {f: (v * rng.lognormal(0, 0.02, 10)).tolist() for f, v in values.items()}
    df = _blocked_frame(values, reps=2)
    res = frequency_effect(df).iloc[0]
    assert res["design"] == "blocked-complete" and res["test"] == "friedman"
    assert res["n_blocks"] == 10 and "complete blocks" in res["test_reason"]
    # per-item means over the two repetitions, then scipy's Friedman
    means = [np.asarray(v) + 0.005 for v in values.values()]
    ref = stats.friedmanchisquare(*means)
    assert res["statistic"] == pytest.approx(ref.statistic)
    assert res["p_value"] == pytest.approx(ref.pvalue)
    assert res["effect_size"] == pytest.approx(ref.statistic / (10 * 2))  # Kendall's W
    assert res["significant"]
    # the same windows treated as independent groups miss the effect: items swamp it
    unpaired = frequency_effect(df.assign(item_id=[f"u{i}" for i in range(len(df))])).iloc[0]
    assert unpaired["design"] == "independent" and unpaired["p_value"] > 0.05


def test_two_blocked_levels_use_wilcoxon_signed_rank() -> None:
    rng = np.random.default_rng(9)
    item = rng.lognormal(0, 0.5, 8)
    values = {None: item.tolist(), 1200.0: (item * rng.normal(0.95, 0.02, 8)).tolist()}
    res = frequency_effect(_blocked_frame(values)).iloc[0]
    assert res["test"] == "wilcoxon"
    ref = stats.wilcoxon(values[1200.0], values[None])
    assert res["statistic"] == pytest.approx(ref.statistic)
    assert res["p_value"] == pytest.approx(ref.pvalue)
    # matched-pairs rank-biserial: (R+ − R−) / (R+ + R−) over |differences| ranked
    d = np.array(values[1200.0]) - np.array(values[None])
    ranks = stats.rankdata(np.abs(d))
    r = (ranks[d > 0].sum() - ranks[d < 0].sum()) / ranks.sum()
    assert res["effect_size"] == pytest.approx(r) and r < -0.8


def test_incomplete_blocks_use_a_mixed_model_against_statsmodels() -> None:
    rng = np.random.default_rng(10)
    item = rng.lognormal(0, 0.5, 12)
    values = {
        f: (item * scale * rng.lognormal(0, 0.03, 12)).tolist()
        for f, scale in ((None, 1.0), (1500.0, 0.96), (1000.0, 0.9))
    }
    df = _blocked_frame(values)
    df = df[~((df["freq_requested_mhz"] == 1000.0) & df["item_id"].isin(["item-0", "item-1"]))]
    res = frequency_effect(df).iloc[0]
    assert res["design"] == "blocked-incomplete" and res["test"] == "mixedlm"
    assert "some blocks are missing" in res["test_reason"]
    data = pd.DataFrame(
        {
            "y": df["energy_j"].to_numpy(),
            "level": df["freq_requested_mhz"].fillna(0).astype(str).to_numpy(),
            "block": df["item_id"].to_numpy(),
        }
    )
    data["y"] = (data["y"] - data["y"].mean()) / data["y"].std()
    full = smf.mixedlm("y ~ C(level)", data, groups=data["block"]).fit(reml=False)
    null = smf.mixedlm("y ~ 1", data, groups=data["block"]).fit(reml=False)
    lr = 2 * (full.llf - null.llf)
    assert res["statistic"] == pytest.approx(lr, rel=1e-4)
    assert res["p_value"] == pytest.approx(stats.chi2.sf(lr, 2), rel=1e-3)
    assert res["significant"]


def test_pairwise_is_paired_by_item_in_a_blocked_design() -> None:
    rng = np.random.default_rng(11)
    item = rng.lognormal(0, 0.6, 10)
    values = {
        None: item.tolist(),
        1500.0: (item * rng.normal(0.99, 0.03, 10)).tolist(),
        1000.0: (item * rng.normal(0.90, 0.03, 10)).tolist(),
    }
    table = pairwise_vs_default(_blocked_frame(values))
    assert (table["test"] == "wilcoxon_signed_rank").all() and (table["n_pairs"] == 10).all()
    row = table.set_index("freq_mhz").loc[1000.0]
    ref = stats.wilcoxon(values[1000.0], values[None])
    assert row["p_value"] == pytest.approx(ref.pvalue)
    assert row["significant"]


def test_spearman_counts_windows_against_scipy() -> None:
    # 6 windows of 4 requests: one point per window (mean length, mean energy per request)
    windows = [(1200.0, 10.0 * k, (k, k + 1, k + 2, k + 3)) for k in (3, 1, 4, 2, 6, 5)]
    df = batched_window_requests(windows)
    table = spearman_lengths(df)
    row = table[(table["scope"] == "overall") & (table["variable"] == "output_tokens")].iloc[0]
    assert row["n"] == 6  # not 24 requests
    mean_len = [k + 1.5 for k in (3, 1, 4, 2, 6, 5)]
    mean_energy = [10.0 * k / 4 for k in (3, 1, 4, 2, 6, 5)]
    ref = stats.spearmanr(mean_len, mean_energy)
    assert row["rho"] == pytest.approx(ref.statistic) and row["p_value"] == pytest.approx(
        ref.pvalue
    )


# Numbers that were once wrong: the statistical unit is the window.
def test_pairwise_tests_count_windows_not_requests() -> None:
    df = batched_windows({None: [1.0, 1.3, 0.9], 1200.0: [1.1, 1.4, 1.2]}, batch=8)
    table = pairwise_vs_default(df, alpha=0.05, min_samples=3)
    row = table[table["freq_mhz"] == 1200.0].iloc[0]
    assert row["n"] == 3 and row["n_baseline"] == 3
    assert row["p_value"] > 0.05  # 3 vs 3 windows: not 24 vs 24 pseudo-replicates


def test_ols_and_spearman_count_windows() -> None:
    df = batched_windows({None: [1.0, 1.3, 0.9, 1.2], 1200.0: [1.1, 1.4, 1.2, 0.8]}, batch=8)
    df["input_tokens"] = df["window_id"] * 10  # one length per window
    _coef, info = energy_ols(df, predictors=("input_tokens", "freq_applied_mhz"))
    # default-clock rows have no frequency: 32 requests at 1200 MHz in 4 windows
    assert (info["n"], info["n_clusters"]) == (32, 4)
    rho = spearman_lengths(df, variables=("input_tokens",))
    assert (rho["n"] == [8, 8]).all()


def test_unequal_variances_get_welch_anova_not_kruskal() -> None:
    df = batched_windows({None: [1.0, 1.01, 0.99, 1.0], 1200.0: [0.5, 1.5, 0.7, 1.9]}, batch=1)
    row = frequency_effect(df).iloc[0]
    assert row["test"] == "welch_anova" and "Levene" in row["test_reason"]
