"""significance.py against hand-worked values and known distributions."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis_fixtures import groups_to_requests, sweep_requests
from llm_energy.analysis.significance import (
    FREQUENCY_EFFECT_COLUMNS,
    PAIRWISE_COLUMNS,
    frequency_effect,
    pairwise_vs_default,
    spearman_lengths,
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
    assert res["test"] == "kruskal"
    assert "Shapiro" in res["note"]
    h_ref = stats.kruskal(*[np.array(v) for v in groups.values()]).statistic
    assert res["statistic"] == pytest.approx(h_ref)


def test_anova_detects_a_real_frequency_effect() -> None:
    df = sweep_requests((None, 1500.0, 1000.0), n_per_freq=12, noise=0.03, seed=7)
    res = frequency_effect(df).iloc[0]
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
    assert frequency_effect(pd.DataFrame({"energy_j": []})).empty


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


def test_pairwise_welch_holm_against_manual() -> None:
    rng = np.random.default_rng(2)
    groups = {
        None: rng.normal(10.0, 1.0, 12),
        1500.0: rng.normal(10.3, 1.0, 12),
        1200.0: rng.normal(9.0, 1.0, 12),
        900.0: rng.normal(8.0, 1.0, 12),
    }
    table = pairwise_vs_default(groups_to_requests({k: v.tolist() for k, v in groups.items()}))
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
    df = pd.DataFrame(
        {
            "model": "m",
            "task": "t",
            "energy_kind": "measured",
            "input_tokens": [1, 2, 3, 4, 5],
            "output_tokens": [10, 10, 10, 10, 10],
            "energy_j": [2.0, 1.0, 4.0, 3.0, 5.0],
        }
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
