"""significance.py against hand-worked values, scipy / statsmodels run directly, and known
distributions. The unit is the item (a prompt): its repetitions are pooled (Σ energy / Σ tokens)
and the same item at two clocks is a pair."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.anova import AnovaRM
from statsmodels.stats.oneway import anova_oneway

from analysis_fixtures import (
    as_records,
    batched_window_requests,
    batched_windows,
    groups_to_requests,
    sweep_requests,
)
from analysis_settings import energy_ols, frequency_effect, pairwise_vs_default, spearman_lengths
from hand_stats import kish_df, mixedlm_lr_on_logs, paired_ratio_by_hand, ratio_log_se
from llm_energy.analysis.significance import (
    FREQUENCY_EFFECT_COLUMNS,
    PAIRWISE_COLUMNS,
)

# Hand-worked one-way layout: means 8, 5, 2; grand mean 5; SSB = 3·(9 + 0 + 9) = 54 (df 2);
# SSW = 3·2 = 6 (df 6) → F = (54/2) / (6/6) = 27. Positive J/token is tested on the log scale,
# so the records hold exp(HAND): their logs are HAND again.
HAND = {None: [7.0, 8.0, 9.0], 1200.0: [4.0, 5.0, 6.0], 900.0: [1.0, 2.0, 3.0]}
EXP_HAND = {f: [math.exp(v) for v in vals] for f, vals in HAND.items()}


def _assert_hand_anova(res: pd.Series) -> None:
    assert res["test"] == "anova"  # each group is perfectly symmetric, variances equal
    assert res["design"] == "independent"  # one item per record: nothing is shared
    assert res["statistic"] == pytest.approx(27.0)
    assert (res["df_between"], res["df_within"]) == (2, 6)
    # F(2, d2) survival function in closed form: (1 + 2F/d2)^(-d2/2) = 10^-3
    assert res["p_value"] == pytest.approx(1e-3)
    assert res["effect_size"] == pytest.approx(54.0 / 60.0)  # η² = SSB / SST
    assert res["effect_size_kind"] == "eta_squared"
    assert res["verdict"] == "significant"


def test_anova_hand_worked_on_log_values() -> None:
    res = frequency_effect(groups_to_requests(EXP_HAND), alpha=0.05, min_samples=3).iloc[0]
    _assert_hand_anova(res)
    assert res["note"] == "on log values"
    assert list(frequency_effect(groups_to_requests(HAND)).columns) == FREQUENCY_EFFECT_COLUMNS


def test_anova_hand_worked_on_raw_values_when_some_are_not_positive() -> None:
    # dynamic energy (above idle) can be negative: no log, the raw values are tested
    shifted = {f: [v - 5.0 for v in vals] for f, vals in HAND.items()}  # contains −4 … 4
    req = groups_to_requests(shifted, metric_col="dynamic_energy_j")
    res = frequency_effect(req, metric="dynamic_energy_j").iloc[0]
    _assert_hand_anova(res)  # a shift changes no sum of squares
    assert "log" not in res["note"]


def test_kruskal_hand_worked() -> None:
    # no ties: ranks = values; R = 6, 15, 24 → H = 12/(9·10)·(36+225+576)/3 − 30 = 7.2
    # (ranks do not care whether the values were logged)
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
    assert not res["normal"]  # the 60 is an outlier even on the log scale
    assert res["test"] == "kruskal" and res["design"] == "independent"
    assert "Shapiro" in res["test_reason"] and "equal variances" in res["test_reason"]
    h_ref = stats.kruskal(*[np.array(v) for v in groups.values()]).statistic
    assert res["statistic"] == pytest.approx(h_ref)
    assert res["note"] == "on log values"


# --- blocked designs: the same items at every clock ----------------------------------------------


def _item_log_jpt(df: pd.DataFrame) -> pd.DataFrame:
    """Items × clocks of log(Σ energy / Σ output tokens) over each item's windows, straight from
    the records (0 = default clocks)."""
    level = pd.to_numeric(df["freq_requested_mhz"], errors="coerce").astype(float).fillna(0.0)
    work = pd.DataFrame(
        {
            "item": df["item_id"].astype(str).to_numpy(),
            "level": level.to_numpy(),
            "energy": pd.to_numeric(df["energy_j"]).astype(float).to_numpy(),
            "tokens": pd.to_numeric(df["output_tokens"]).astype(float).to_numpy(),
        }
    )
    sums = work.groupby(["item", "level"])[["energy", "tokens"]].sum()
    return np.log(sums["energy"] / sums["tokens"]).unstack("level")


def _rm_anova_by_hand(y: np.ndarray) -> tuple[float, int, int, float]:
    """F, df1, df2 and partial η² of a one-way repeated-measures ANOVA (items × levels)."""
    n, k = y.shape
    grand = y.mean()
    ss_level = n * ((y.mean(axis=0) - grand) ** 2).sum()
    ss_item = k * ((y.mean(axis=1) - grand) ** 2).sum()
    ss_error = ((y - grand) ** 2).sum() - ss_level - ss_item
    df1, df2 = k - 1, (n - 1) * (k - 1)
    return (ss_level / df1) / (ss_error / df2), df1, df2, ss_level / (ss_level + ss_error)


def _anova_rm(matrix: pd.DataFrame) -> pd.Series:
    """statsmodels' AnovaRM on an items × levels matrix: F, Num DF, Den DF, Pr > F."""
    long = matrix.stack().rename("y").reset_index()
    long.columns = ["item", "level", "y"]
    long["level"] = long["level"].astype(str)
    return AnovaRM(long, depvar="y", subject="item", within=["level"]).fit().anova_table.iloc[0]


def _assert_rm_anova(res: pd.Series, matrix: pd.DataFrame) -> None:
    f, df1, df2, peta = _rm_anova_by_hand(matrix.to_numpy())
    ref = _anova_rm(matrix)
    assert ref["F Value"] == pytest.approx(f)  # the hand formula is AnovaRM's
    assert res["test"] == "rm_anova" and res["design"] == "blocked-complete"
    assert res["statistic"] == pytest.approx(f)
    assert (res["df_between"], res["df_within"]) == (df1, df2)
    assert res["p_value"] == pytest.approx(ref["Pr > F"])
    assert res["p_value"] == pytest.approx(stats.f.sf(f, df1, df2))
    assert res["effect_size"] == pytest.approx(peta)
    assert res["effect_size_kind"] == "partial_eta_squared"
    assert res["n_blocks"] == matrix.shape[0]


def test_blocked_sweep_detects_a_real_frequency_effect() -> None:
    df = sweep_requests((None, 1500.0, 1000.0), n_per_freq=12, noise=0.03, seed=7)
    res = frequency_effect(df).iloc[0]
    _assert_rm_anova(res, _item_log_jpt(df))
    assert "complete blocks" in res["test_reason"] and res["note"] == "on log values"
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


def test_min_samples_counts_items_not_windows() -> None:
    # two items, each repeated five times at both clocks: ten windows a clock, but two items
    rng = np.random.default_rng(3)
    values = {None: [1.0, 2.0], 1200.0: [0.9, 1.8]}
    windows = [
        (f, v * rng.lognormal(0, 0.01), (1,))
        for _ in range(5)
        for f, vs in values.items()
        for v in vs
    ]
    df = batched_window_requests(windows)
    df["item_id"] = [f"item-{i % 2}" for i in range(len(df))]
    res = frequency_effect(df, min_samples=3).iloc[0]
    assert res["verdict"] == "skipped: fewer than 2 frequency levels with ≥3 items"
    assert "default (n=2)" in res["note"] and "1200 MHz (n=2)" in res["note"]
    pairs = pairwise_vs_default(df, min_samples=3).iloc[0]
    assert pairs["test"] == "skipped"
    # with min_samples=2 the two items are tested (as two blocks: a repeated-measures ANOVA)
    two = frequency_effect(df, min_samples=2).iloc[0]
    assert two["test"] == "rm_anova" and two["n_total"] == 4 and two["n_blocks"] == 2


def test_frequency_effect_drops_sparse_level_but_tests_the_rest() -> None:
    groups = {**EXP_HAND, 600.0: [math.exp(0.5)]}
    res = frequency_effect(groups_to_requests(groups), min_samples=3).iloc[0]
    assert res["n_levels"] == 3
    assert res["statistic"] == pytest.approx(27.0)
    assert "600 MHz (n=1)" in res["note"]


# --- pairwise vs the default clocks ---------------------------------------------------------------


def _indep(x: np.ndarray, y: np.ndarray, level: float = 0.95) -> tuple[float, float, float, tuple]:
    """Two independent Σ/Σ ratios (here: means, one unit per item) by hand on the log scale,
    delta method: t, df (Welch–Satterthwaite on each side's Kish df), two-sided p and the
    interval of mean(x) / mean(y). Equal denominators: HC2 is each side's textbook variance."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    vx = (x / x.mean()).var(ddof=1) / len(x)
    vy = (y / y.mean()).var(ddof=1) / len(y)
    log_ratio = math.log(x.mean() / y.mean())
    se = math.sqrt(vx + vy)
    dof = (vx + vy) ** 2 / (vx**2 / kish_df(x) + vy**2 / kish_df(y))
    half = stats.t.ppf(0.5 + level / 2, dof) * se
    p = float(2 * stats.t.sf(abs(log_ratio / se), dof))
    return log_ratio / se, dof, p, (math.exp(log_ratio - half), math.exp(log_ratio + half))


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


def test_pairwise_unpaired_ratios_holm_against_manual() -> None:
    groups, req = normal_groups(
        2, {None: (10.0, 1.0), 1500.0: (10.3, 1.0), 1200.0: (9.0, 1.0), 900.0: (8.0, 1.0)}
    )
    table = pairwise_vs_default(req)
    assert list(table.columns) == PAIRWISE_COLUMNS
    assert not {"cohens_d", "effect_size"} & set(table.columns)  # removed
    assert table["test"].str.startswith("welch_t").all()  # no item ran at two clocks
    assert (table["baseline"] == "default").all() and (table["n_pairs"] == 0).all()
    base = groups[None]
    freqs = [1500.0, 1200.0, 900.0]
    welch = [_indep(groups[f], base) for f in freqs]
    holm = _holm([w[2] for w in welch])
    for f, (t, dof, p, (lo, hi)), p_adj in zip(freqs, welch, holm, strict=True):
        row = table[table["freq_mhz"] == f].iloc[0]
        assert row["statistic"] == pytest.approx(t, rel=1e-9)
        assert row["df"] == pytest.approx(dof, rel=1e-9)
        assert row["p_value"] == pytest.approx(p, rel=1e-9)
        assert row["p_holm"] == pytest.approx(p_adj, rel=1e-9)
        # the estimate is Σ/Σ (here: the ratio of means) and its interval is for that ratio
        assert row["ratio"] == pytest.approx(groups[f].mean() / base.mean())
        assert row["pct_change"] == pytest.approx(100 * (groups[f].mean() / base.mean() - 1))
        assert (row["ratio_ci_low"], row["ratio_ci_high"]) == pytest.approx((lo, hi))
        assert row["ratio_ci_low"] <= row["ratio"] <= row["ratio_ci_high"]
    assert table.set_index("freq_mhz").loc[900.0, "significant"]


def test_pairwise_skewed_unpaired_levels_keep_the_ratio_inside_its_interval() -> None:
    # without shared items the two Σ/Σ ratios are independent samples: their delta-method
    # variances add, so the interval is for the ratio that is reported (an outlier widens it)
    skewed = [1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6, 1.7, 1.8, 60.0]
    capped = [x - 0.35 for x in skewed]
    table = pairwise_vs_default(groups_to_requests({None: skewed, 1000.0: capped}))
    row = table.iloc[0]
    assert row["test"].startswith("welch_t") and (row["n"], row["n_baseline"]) == (10, 10)
    t, dof, p, (lo, hi) = _indep(capped, skewed)
    assert row["statistic"] == pytest.approx(t) and row["df"] == pytest.approx(dof)
    assert row["p_value"] == pytest.approx(p) and p > 0.05
    assert row["ratio"] == pytest.approx(sum(capped) / sum(skewed))
    assert (row["ratio_ci_low"], row["ratio_ci_high"]) == pytest.approx((lo, hi))
    assert lo <= row["ratio"] <= hi
    assert row["p_holm"] == pytest.approx(row["p_value"])  # one comparison: Holm is identity


def _log_ratio_var(num: np.ndarray, den: np.ndarray) -> tuple[float, float, float]:
    """One Σ/Σ ratio by hand on the log scale: log R, its HC2 variance (leverage den / Σ den)
    and Kish's df by the numerators."""
    r, se, dof = ratio_log_se(num, den)
    return math.log(r), se**2, dof


def test_pairwise_unpaired_ratios_of_natural_length_items_by_hand() -> None:
    # no item at both clocks, items of natural length: each side's Σ/Σ ratio has its HC2
    # variance (leverage tokens / Σ tokens) and Kish's df; the variances add, Welch–Satterthwaite
    energy = {None: [30.0, 55.0, 12.0, 41.0, 25.0], 1200.0: [20.0, 48.0, 14.0, 33.0, 19.0]}
    tokens = {None: (60, 100, 20, 90, 45), 1200.0: (50, 110, 30, 70, 40)}
    windows = [(f, e, (t,)) for f in energy for e, t in zip(energy[f], tokens[f], strict=True)]
    df = batched_window_requests(windows)
    df["item_id"] = [f"u{i}" for i in range(len(df))]
    row = pairwise_vs_default(df).iloc[0]
    assert row["test"].startswith("welch_t") and row["n_pairs"] == 0
    la, va, dfa = _log_ratio_var(np.array(energy[1200.0]), np.array(tokens[1200.0], dtype=float))
    lb, vb, dfb = _log_ratio_var(np.array(energy[None]), np.array(tokens[None], dtype=float))
    se = math.sqrt(va + vb)
    dof = (va + vb) ** 2 / (va**2 / dfa + vb**2 / dfb)
    t = (la - lb) / se
    half = stats.t.ppf(0.975, dof) * se
    assert row["ratio"] == pytest.approx(math.exp(la - lb))
    assert row["statistic"] == pytest.approx(t) and row["df"] == pytest.approx(dof)
    assert row["p_value"] == pytest.approx(2 * stats.t.sf(abs(t), dof))
    assert (row["ratio_ci_low"], row["ratio_ci_high"]) == (
        pytest.approx(math.exp(la - lb - half)),
        pytest.approx(math.exp(la - lb + half)),
    )
    assert dof < 8  # fewer than the 4 + 4 df of equal items


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


def _paired_delta_by_hand(
    num_a: np.ndarray, den_a: np.ndarray, num_b: np.ndarray, den_b: np.ndarray, level: float
) -> dict[str, float]:
    """(Σa/Σa') / (Σb/Σb') with its delta-method t interval and paired t test, by hand
    (hand_stats.paired_ratio_by_hand), under pairwise_vs_default's column names."""
    ref = paired_ratio_by_hand(num_a, den_a, num_b, den_b, level)
    return {
        "ratio": ref["ratio"],
        "mean": ref["ratio_a"],
        "mean_baseline": ref["ratio_b"],
        "statistic": ref["t"],
        "df": ref["df"],
        "p_value": ref["p_two_sided"],
        "ratio_ci_low": ref["ci_low"],
        "ratio_ci_high": ref["ci_high"],
    }


def _item_sums(df: pd.DataFrame, freq: float | None, items: list[str]) -> tuple[np.ndarray, ...]:
    """Σ energy and Σ output tokens per item at one clock (None = default), from the records."""
    at = df["freq_requested_mhz"].isna() if freq is None else df["freq_requested_mhz"] == freq
    work = pd.DataFrame(
        {
            "item": df.loc[at, "item_id"].astype(str),
            "energy": pd.to_numeric(df.loc[at, "energy_j"]).astype(float),
            "tokens": pd.to_numeric(df.loc[at, "output_tokens"]).astype(float),
        }
    )
    sums = work.groupby("item")[["energy", "tokens"]].sum().loc[items]
    return sums["energy"].to_numpy(), sums["tokens"].to_numpy()


def _assert_paired_row(row: pd.Series, df: pd.DataFrame, freq: float, items: list[str]) -> None:
    ref = _paired_delta_by_hand(*_item_sums(df, freq, items), *_item_sums(df, None, items), 0.95)
    assert row["test"].startswith("paired t on items")
    assert row["n_pairs"] == len(items) and 1 <= row["df"] < len(items) - 1
    for key, value in ref.items():
        assert row[key] == pytest.approx(value, rel=1e-9), key
    assert row["pct_change"] == pytest.approx(100 * (ref["ratio"] - 1))


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


def test_pairwise_is_paired_by_item_in_a_blocked_design() -> None:
    rng = np.random.default_rng(11)
    item = rng.lognormal(0, 0.6, 10)
    values = {
        None: item.tolist(),
        1500.0: (item * rng.normal(0.99, 0.03, 10)).tolist(),
        1000.0: (item * rng.normal(0.90, 0.03, 10)).tolist(),
    }
    df = _blocked_frame(values)
    table = pairwise_vs_default(df).set_index("freq_mhz")
    assert (table["n_pairs"] == 10).all()
    items = [f"item-{i}" for i in range(10)]
    for freq in (1500.0, 1000.0):
        _assert_paired_row(table.loc[freq], df, freq, items)
    assert table["p_holm"].tolist() == pytest.approx(_holm(table["p_value"].tolist()))
    row = table.loc[1000.0]
    assert row["significant"] and row["ratio_ci_high"] < 1.0
    # the same windows as unrelated items: items swamp a 10 % saving
    unpaired = pairwise_vs_default(df.assign(item_id=[f"u{i}" for i in range(len(df))]))
    assert unpaired.set_index("freq_mhz").loc[1000.0, "p_value"] > 0.05


def test_pairwise_pairs_only_the_items_both_clocks_ran() -> None:
    rng = np.random.default_rng(12)
    item = rng.lognormal(0, 0.4, 8)
    df = _blocked_frame({None: item.tolist(), 1200.0: (item * 0.95).tolist()})
    capped = (df["freq_requested_mhz"] == 1200.0).fillna(False)  # NA at default clocks
    df = df[~(capped & df["item_id"].isin(["item-0", "item-1"]))]
    # noise so that the paired differences are not all alike
    df = df.assign(energy_j=df["energy_j"] * rng.lognormal(0, 0.02, len(df)))
    row = pairwise_vs_default(df).iloc[0]
    assert (row["n"], row["n_baseline"], row["n_pairs"]) == (6, 8, 6)
    _assert_paired_row(row, df, 1200.0, [f"item-{i}" for i in range(2, 8)])


def _small_sweep(
    factors: dict[float | None, float],
    *,
    seed: int,
    n_items: int = 5,
    reps: int = 2,
    noise: float = 0.02,
    equal_items: bool = False,
) -> pd.DataFrame:
    """`n_items` items × `reps` repetitions at every clock, one window each: item i costs its
    own J/token × the clock's factor × lognormal(0, `noise`) per window, on its own number of
    output tokens (the same at every clock). With ``equal_items`` every item costs the same
    and has 64 tokens."""
    rng = np.random.default_rng(seed)
    per_token = np.full(n_items, 0.5) if equal_items else rng.lognormal(math.log(0.5), 0.3, n_items)
    tokens = np.full(n_items, 64) if equal_items else rng.integers(32, 129, n_items)
    rows = []
    for rep in range(reps):
        for freq, factor in factors.items():
            for i in range(n_items):
                rows.append(
                    {
                        "run_id": "r",
                        "item_id": f"item-{i}",
                        "rep": rep,
                        "freq_requested_mhz": freq,
                        "freq_applied_mhz": freq,
                        "cap_held": None if freq is None else True,
                        "output_tokens": int(tokens[i]),
                        "energy_j": per_token[i] * factor * tokens[i] * rng.lognormal(0, noise),
                    }
                )
    return as_records(pd.DataFrame(rows))


def test_pairwise_detects_a_6pct_saving_with_5_items_and_2_reps() -> None:
    """A cap that truly saves 6 % J/token, 5 items × 2 repetitions, 2 % window noise: the paired
    t on items finds it (Holm across two caps), the signed-rank test could not (p ≥ 1/16)."""
    truth = {None: 1.0, 1500.0: 0.94, 1200.0: 1.0}
    df = _small_sweep(truth, seed=0)
    table = pairwise_vs_default(df).set_index("freq_mhz")
    items = [f"item-{i}" for i in range(5)]
    for freq in (1500.0, 1200.0):
        _assert_paired_row(table.loc[freq], df, freq, items)
    saving = table.loc[1500.0]
    assert saving["significant"] and saving["p_holm"] < 0.01
    assert saving["ratio_ci_low"] <= 0.94 <= saving["ratio_ci_high"] < 1.0
    assert saving["pct_change"] == pytest.approx(-6.0, abs=1.0)
    # the old test: Wilcoxon's signed rank on the five paired item values
    ja, da = _item_sums(df, 1500.0, items)
    jb, db = _item_sums(df, None, items)
    assert stats.wilcoxon(ja / da, jb / db).pvalue >= 0.0625  # 2 / 2⁵: its floor at n = 5
    # over seeds: the saving is found nearly always, the cap that changes nothing rarely
    significant = pd.DataFrame(
        [
            pairwise_vs_default(_small_sweep(truth, seed=s)).set_index("freq_mhz")["significant"]
            for s in range(1, 21)
        ]
    )
    assert significant[1500.0].mean() >= 0.85
    assert significant[1200.0].mean() <= 0.15


def test_paired_t_is_the_paired_t_on_log_items_when_items_are_alike() -> None:
    # the linearised value of an item is its relative deviation: for items of equal size and
    # tokens that is its log deviation, so the test is scipy's paired t on log item values
    # (equal tokens: h = 1/n, the textbook SE; alike energies: Kish's df all but n − 1)
    df = _small_sweep({None: 1.0, 1500.0: 0.95}, seed=4, n_items=8, noise=0.005, equal_items=True)
    row = pairwise_vs_default(df).iloc[0]
    items = [f"item-{i}" for i in range(8)]
    ja, da = _item_sums(df, 1500.0, items)
    jb, db = _item_sums(df, None, items)
    ref = stats.ttest_rel(np.log(ja / da), np.log(jb / db))
    assert row["statistic"] == pytest.approx(ref.statistic, rel=1e-3)
    assert row["p_value"] == pytest.approx(ref.pvalue, rel=1e-2)
    assert row["df"] == pytest.approx(kish_df(ja / ja.sum() + jb / jb.sum()), rel=1e-12)
    assert row["df"] == pytest.approx(ref.df, rel=1e-4) and ref.df == 7


# --- length correlations ---------------------------------------------------------------------------


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
    stratum = table[table["scope"] == "stratum"].set_index("variable")
    row = stratum.loc["input_tokens"]
    assert row["n"] == 5 and row["rho"] == pytest.approx(0.8)
    t = 0.8 * math.sqrt(3 / (1 - 0.64))
    assert row["p_value"] == pytest.approx(2 * stats.t.sf(t, 3))
    constant = stratum.loc["output_tokens"]
    assert math.isnan(constant["rho"]) and "constant" in constant["note"]
    assert set(table["scope"]) == {"stratum", "pooled"}
    # one stratum: nothing to pool
    pooled = table[table["scope"] == "pooled"].set_index("variable").loc["input_tokens"]
    assert math.isnan(pooled["rho"]) and "nothing to pool" in pooled["note"]


def _fisher_pool(rhos: list[float], ns: list[int]) -> tuple[float, float, float]:
    """Fisher-z pool by hand: pooled ρ, its two-sided p and Cochran's Q p (weights n − 3)."""
    z, w = np.arctanh(rhos), np.array(ns, dtype=float) - 3.0
    zbar = (w * z).sum() / w.sum()
    q = (w * (z - zbar) ** 2).sum()
    p = 2 * stats.norm.sf(abs(zbar) * math.sqrt(w.sum()))
    return math.tanh(zbar), p, float(stats.chi2.sf(q, len(rhos) - 1))


def test_spearman_on_sweep_pools_agreeing_tasks() -> None:
    tasks = ("qa", "summarization")
    df = sweep_requests((1200.0,), n_per_freq=30, length_jitter=True, tasks=tasks)
    table = spearman_lengths(df)
    strata = table[(table["scope"] == "stratum") & (table["variable"] == "output_tokens")]
    assert len(table[table["scope"] == "stratum"]) == 4  # 2 tasks × 2 variables
    rhos = []
    for task in tasks:
        sub = df[df["task"] == task]
        ref = stats.spearmanr(sub["output_tokens"], sub["energy_j"])  # one window per item
        row = strata[strata["task"] == task].iloc[0]
        assert row["n"] == 30 and row["rho"] == pytest.approx(ref.statistic)
        assert row["p_value"] == pytest.approx(ref.pvalue)
        rhos.append(ref.statistic)
    pooled = table[(table["scope"] == "pooled") & (table["variable"] == "output_tokens")].iloc[0]
    rho, p, q_p = _fisher_pool(rhos, [30, 30])
    assert q_p > 0.05 and pooled["strata_agree"]
    assert pooled["rho"] == pytest.approx(rho) and pooled["p_value"] == pytest.approx(p)
    assert pooled["n"] == 60 and pooled["rho"] > 0.9 and pooled["p_value"] < 1e-6
    assert f"Cochran's Q p={q_p:.3g}" in pooled["note"]


def _two_task_lengths(slopes: dict[str, tuple[int, float, float]], seed: int) -> pd.DataFrame:
    """Per task 12 items (one window each): output lengths from `start` in steps of 2, energy =
    base + slope × length + N(0, 3²) J."""
    rng = np.random.default_rng(seed)
    rows = []
    for task, (start, base, slope) in slopes.items():
        out = start + 2 * rng.permutation(12)
        energy = base + slope * out + rng.normal(0.0, 3.0, 12)
        rows += [
            {"task": task, "item_id": f"{task}-{i}", "output_tokens": int(o), "energy_j": float(e)}
            for i, (o, e) in enumerate(zip(out, energy, strict=True))
        ]
    return as_records(pd.DataFrame(rows))


def test_spearman_refuses_to_pool_tasks_that_disagree() -> None:
    # Simpson's paradox: QA answers are short and cheap, summaries long and dear, so across the
    # two tasks length and energy look strongly related; within QA longer answers cost *less*,
    # within summarisation more: the tasks disagree and no pooled ρ is given
    df = _two_task_lengths({"qa": (10, 80.0, -2.0), "summarization": (100, 300.0, 1.0)}, seed=0)
    raw = stats.spearmanr(df["output_tokens"], df["energy_j"])
    assert raw.statistic > 0.7 and raw.pvalue < 1e-3  # what pooling the raw items would say
    table = spearman_lengths(df)
    rows = table[table["variable"] == "output_tokens"]
    strata = rows[rows["scope"] == "stratum"].set_index("task")
    rhos = []
    for task in ("qa", "summarization"):
        sub = df[df["task"] == task]
        ref = stats.spearmanr(sub["output_tokens"], sub["energy_j"])
        assert strata.loc[task, "rho"] == pytest.approx(ref.statistic)
        rhos.append(ref.statistic)
    assert rhos[0] < -0.8 and rhos[1] > 0.8  # opposite within-task correlations
    pooled = rows[rows["scope"] == "pooled"].iloc[0]
    _rho, _p, q_p = _fisher_pool(rhos, [12, 12])
    assert q_p < 0.05
    assert pooled["strata_agree"] is not None and not pooled["strata_agree"]
    assert math.isnan(pooled["rho"]) and math.isnan(pooled["p_value"])
    assert pooled["note"].startswith("strata disagree") and f"p={q_p:.3g}" in pooled["note"]


def test_spearman_pools_within_task_correlations_not_the_raw_one() -> None:
    # both tasks: longer answers cost less inside the task; across tasks the raw ρ is positive.
    # The tasks agree, and the Fisher-z pool keeps their (negative) sign
    df = _two_task_lengths({"qa": (10, 80.0, -1.0), "summarization": (100, 400.0, -1.0)}, seed=1)
    assert stats.spearmanr(df["output_tokens"], df["energy_j"]).statistic > 0.4
    table = spearman_lengths(df)
    rows = table[table["variable"] == "output_tokens"]
    rhos = [
        stats.spearmanr(sub["output_tokens"], sub["energy_j"]).statistic
        for _, sub in df.groupby("task")
    ]
    rho, p, q_p = _fisher_pool(rhos, [12, 12])
    assert q_p > 0.05
    pooled = rows[rows["scope"] == "pooled"].iloc[0]
    assert pooled["strata_agree"] and pooled["rho"] == pytest.approx(rho)
    assert rho < -0.8 and "Fisher-z pool of 2 strata" in pooled["note"]
    assert pooled["p_value"] == pytest.approx(p)


# --- design-aware test choice: Welch for unequal variances, blocked tests for paired items --------


def test_welch_anova_for_unequal_variances_against_statsmodels_and_formula() -> None:
    groups, req = normal_groups(5, {None: (10.0, 0.2), 1500.0: (10.3, 2.0), 1000.0: (9.0, 4.0)})
    assert all((g > 0).all() for g in groups.values())  # so the log values are tested
    res = frequency_effect(req).iloc[0]
    assert res["test"] == "welch_anova"  # not Kruskal–Wallis: it does not fix unequal variances
    assert "Levene rejects equal variances" in res["test_reason"]
    g = [np.log(v) for v in groups.values()]
    ref = anova_oneway(g, use_var="unequal", welch_correction=True)
    assert res["statistic"] == pytest.approx(ref.statistic)
    assert res["p_value"] == pytest.approx(ref.pvalue)
    assert res["df_within"] == pytest.approx(ref.df_denom)
    # Welch (1951) by hand: weights n/s², weighted grand mean, F* and its denominator df
    w = np.array([len(x) / x.var(ddof=1) for x in g])
    means = np.array([x.mean() for x in g])
    grand = (w * means).sum() / w.sum()
    k = len(g)
    lam = sum((1 - wi / w.sum()) ** 2 / (len(x) - 1) for wi, x in zip(w, g, strict=True))
    f = ((w * (means - grand) ** 2).sum() / (k - 1)) / (1 + 2 * (k - 2) / (k**2 - 1) * lam)
    assert res["statistic"] == pytest.approx(f)
    assert res["df_within"] == pytest.approx((k**2 - 1) / (3 * lam))


def _three_clock_items(seed: int) -> dict[float | None, list[float]]:
    rng = np.random.default_rng(seed)
    item = rng.lognormal(0, 0.6, 10)  # items differ far more than clocks do
    values = {None: item * 1.00, 1500.0: item * 0.97, 1000.0: item * 0.93}
    return {f: (v * rng.lognormal(0, 0.02, 10)).tolist() for f, v in values.items()}


def test_rm_anova_on_per_item_log_values_against_statsmodels() -> None:
    values = _three_clock_items(8)
    df = _blocked_frame(values, reps=2)
    res = frequency_effect(df).iloc[0]
    assert "complete blocks" in res["test_reason"] and res["n_total"] == 30
    # per item: Σ energy / Σ tokens over the two repetitions (v and v + 0.01, one token each)
    matrix = pd.DataFrame(
        np.log(np.column_stack([np.asarray(v) + 0.005 for v in values.values()])),
        index=[f"item-{i}" for i in range(10)],
    )
    from_records = _item_log_jpt(df)[[0.0, 1500.0, 1000.0]].set_axis(range(3), axis=1)
    np.testing.assert_allclose(from_records.loc[matrix.index], matrix, rtol=1e-12)
    _assert_rm_anova(res, matrix)
    assert res["significant"]
    # the same windows treated as independent groups miss the effect: items swamp it
    unpaired = frequency_effect(df.assign(item_id=[f"u{i}" for i in range(len(df))])).iloc[0]
    assert unpaired["design"] == "independent" and unpaired["p_value"] > 0.05


def test_friedman_when_asked_on_per_item_values_against_scipy() -> None:
    values = _three_clock_items(8)
    res = frequency_effect(_blocked_frame(values, reps=2), test="friedman").iloc[0]
    assert res["test"] == "friedman" and res["test_reason"] == "friedman asked for"
    assert res["n_blocks"] == 10
    # per-item values (the mean of v and v + 0.01); ranks within an item ignore the log
    means = [np.asarray(v) + 0.005 for v in values.values()]
    ref = stats.friedmanchisquare(*means)
    assert res["statistic"] == pytest.approx(ref.statistic)
    assert res["p_value"] == pytest.approx(ref.pvalue)
    assert res["effect_size"] == pytest.approx(ref.statistic / (10 * 2))  # Kendall's W
    assert res["effect_size_kind"] == "kendalls_w"
    assert res["significant"]


def test_two_blocked_levels_rm_anova_is_the_paired_t_squared() -> None:
    rng = np.random.default_rng(9)
    item = rng.lognormal(0, 0.5, 8)
    values = {None: item.tolist(), 1200.0: (item * rng.normal(0.95, 0.02, 8)).tolist()}
    df = _blocked_frame(values)
    res = frequency_effect(df).iloc[0]
    ref = stats.ttest_rel(np.log(values[1200.0]), np.log(values[None]))
    assert res["test"] == "rm_anova" and (res["df_between"], res["df_within"]) == (1, 7)
    assert res["statistic"] == pytest.approx(ref.statistic**2)  # F(1, n−1) = t²
    assert res["p_value"] == pytest.approx(ref.pvalue)
    t2 = ref.statistic**2
    assert res["effect_size"] == pytest.approx(t2 / (t2 + 7))  # partial η² = t² / (t² + df)
    # the rank fallback, asked for: Wilcoxon's signed rank on the log values
    rank = frequency_effect(df, test="friedman").iloc[0]
    d = np.log(values[1200.0]) - np.log(values[None])
    ref_w = stats.wilcoxon(d)
    assert rank["test"] == "wilcoxon"
    assert rank["statistic"] == pytest.approx(ref_w.statistic)
    assert rank["p_value"] == pytest.approx(ref_w.pvalue)
    # matched-pairs rank-biserial: (R+ − R−) / (R+ + R−) over |differences| ranked
    ranks = stats.rankdata(np.abs(d))
    r = (ranks[d > 0].sum() - ranks[d < 0].sum()) / ranks.sum()
    assert rank["effect_size"] == pytest.approx(r) and r < -0.8


def test_incomplete_blocks_use_a_mixed_model_against_statsmodels() -> None:
    rng = np.random.default_rng(10)
    item = rng.lognormal(0, 0.5, 12)
    values = {
        f: (item * scale * rng.lognormal(0, 0.03, 12)).tolist()
        for f, scale in ((None, 1.0), (1500.0, 0.96), (1000.0, 0.9))
    }
    df = _blocked_frame(values)
    at_1000 = (df["freq_requested_mhz"] == 1000.0).fillna(False)  # NA at default clocks
    df = df[~(at_1000 & df["item_id"].isin(["item-0", "item-1"]))]
    res = frequency_effect(df).iloc[0]
    assert res["design"] == "blocked-incomplete" and res["test"] == "mixedlm"
    assert "some blocks are missing" in res["test_reason"] and res["n_total"] == 34
    # log item values (one window, one token each), standardised: the LR test is scale-free
    lr = mixedlm_lr_on_logs(
        df["energy_j"],
        df["freq_requested_mhz"].astype(float).fillna(0).astype(str).to_numpy(),
        df["item_id"].astype(str).to_numpy(),
    )
    assert res["statistic"] == pytest.approx(lr, rel=1e-4)
    assert res["p_value"] == pytest.approx(stats.chi2.sf(lr, 2), rel=1e-3)
    assert res["significant"]


def test_spearman_counts_items_against_scipy() -> None:
    # 6 windows of 4 requests, each window its own set of items: one point per item set
    # (mean length, mean energy per request)
    windows = [(1200.0, 10.0 * k, (k, k + 1, k + 2, k + 3)) for k in (3, 1, 4, 2, 6, 5)]
    df = batched_window_requests(windows)
    table = spearman_lengths(df)
    row = table[(table["scope"] == "stratum") & (table["variable"] == "output_tokens")].iloc[0]
    assert row["n"] == 6  # not 24 requests
    mean_len = [k + 1.5 for k in (3, 1, 4, 2, 6, 5)]
    mean_energy = [10.0 * k / 4 for k in (3, 1, 4, 2, 6, 5)]
    ref = stats.spearmanr(mean_len, mean_energy)
    assert row["rho"] == pytest.approx(ref.statistic)
    assert row["p_value"] == pytest.approx(ref.pvalue)


def test_spearman_pools_an_items_repetitions_and_clocks() -> None:
    # 6 items, each run at two clocks × two repetitions: one point per item (its mean)
    rng = np.random.default_rng(13)
    lengths = np.array([30, 10, 50, 20, 60, 40])
    rows = [
        {
            "item_id": f"item-{i}",
            "rep": rep,
            "freq_requested_mhz": freq,
            "freq_applied_mhz": freq,
            "cap_held": True,
            "output_tokens": int(n),
            "energy_j": float(n * (1.0 if freq == 1500.0 else 1.3) + rng.normal(0, 8.0)),
        }
        for freq in (1500.0, 1000.0)
        for rep in range(2)
        for i, n in enumerate(lengths)
    ]
    df = as_records(pd.DataFrame(rows))
    row = spearman_lengths(df).query("scope == 'stratum' and variable == 'output_tokens'").iloc[0]
    per_item = df.assign(e=pd.to_numeric(df["energy_j"]).astype(float)).groupby("item_id")["e"]
    ref = stats.spearmanr(lengths, per_item.mean().loc[[f"item-{i}" for i in range(6)]])
    assert row["n"] == 6 and row["rho"] == pytest.approx(ref.statistic)


# Numbers that were once wrong: the statistical unit is the item, never the request.
def test_pairwise_tests_count_items_not_requests() -> None:
    df = batched_windows({None: [1.0, 1.3, 0.9], 1200.0: [1.1, 1.4, 1.2]}, batch=8)
    table = pairwise_vs_default(df, alpha=0.05, min_samples=3)
    row = table[table["freq_mhz"] == 1200.0].iloc[0]
    assert row["n"] == 3 and row["n_baseline"] == 3  # a window's 8 requests are one item set
    # each window's J/token is its value: two independent ratios over 3 vs 3 item sets
    t, dof, p, _ci = _indep(np.array([1.1, 1.4, 1.2]), np.array([1.0, 1.3, 0.9]))
    assert row["statistic"] == pytest.approx(t) and row["df"] == pytest.approx(dof)
    assert row["p_value"] == pytest.approx(p) and p > 0.05  # not 24 vs 24 pseudo-replicates


def test_ols_and_spearman_count_windows_and_items() -> None:
    df = batched_windows({None: [1.0, 1.3, 0.9, 1.2], 1200.0: [1.1, 1.4, 1.2, 0.8]}, batch=8)
    df["input_tokens"] = df["window_id"] * 10  # one length per window
    _coef, info = energy_ols(df, predictors=("input_tokens", "freq_applied_mhz"))
    # default-clock rows have no frequency: 4 windows (of 8 requests) at 1200 MHz, 4 items
    assert (info["n"], info["n_clusters"], info["n_dropped_rows"]) == (4, 4, 4)
    rho = spearman_lengths(df, variables=("input_tokens",))
    assert (rho["n"] == [8, 8]).all()  # 8 item sets: the stratum row and its pooled row


def test_unequal_variances_get_welch_anova_not_kruskal() -> None:
    df = batched_windows({None: [1.0, 1.01, 0.99, 1.0], 1200.0: [0.5, 1.5, 0.7, 1.9]}, batch=1)
    row = frequency_effect(df).iloc[0]
    assert row["test"] == "welch_anova" and "Levene" in row["test_reason"]
