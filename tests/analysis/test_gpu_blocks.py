"""GPU identity in the statistics: cards of one model (gpu_uuid) are blocks, two models
(gpu_name) are never pooled."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis_fixtures import as_records, sweep_requests
from analysis_settings import energy_ols, frequency_effect, spearman_lengths, summarize
from hand_stats import mixedlm_lr_on_logs

SLOPE_J_PER_MHZ = 0.01
OFFSET_J = 10.0  # card B draws 10 J more per request than card A at every clock
CLOCKS = {"GPU-A": (1800.0, 1500.0), "GPU-B": (1500.0, 1200.0)}  # B ran the low clocks


def two_cards(n_items: int = 12, seed: int = 0) -> pd.DataFrame:
    """Two cards of one model, each running the same items at its own clocks (one window per
    request); energy = 10 J + slope × clock + the card's offset + small noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for uuid, clocks in CLOCKS.items():
        for freq in clocks:
            for i in range(n_items):
                energy = 10.0 + SLOPE_J_PER_MHZ * freq + (OFFSET_J if uuid == "GPU-B" else 0.0)
                rows.append(
                    {
                        "run_id": f"run-{uuid}",
                        "gpu_name": "sim-h200",
                        "gpu_uuid": uuid,
                        "item_id": f"item-{i}",
                        "freq_requested_mhz": freq,
                        "freq_applied_mhz": freq,
                        "energy_j": energy + rng.normal(0.0, 0.05),
                        "input_tokens": 64 + 8 * (i % 3),
                        "output_tokens": 1,
                    }
                )
    df = pd.DataFrame(rows)
    df["window_id"] = np.arange(1, len(df) + 1)
    return as_records(df)


def test_blocked_regression_recovers_the_clock_effect_that_pooling_hides() -> None:
    df = two_cards()
    coef, info = energy_ols(df)
    assert info["gpu_blocks"] == 2 and info["gpu_name"] == "sim-h200"
    # one window per request; an item on card A and on card B are two clusters
    assert (info["n"], info["n_clusters"]) == (48, 24)
    by_term = coef.set_index("term")
    slope = by_term.loc["freq_applied_mhz"]
    assert slope["ci_low"] <= SLOPE_J_PER_MHZ <= slope["ci_high"]
    assert by_term.loc["gpu[GPU-B]", "coef"] == pytest.approx(OFFSET_J, abs=0.1)
    # the same rows with the card ignored: B's offset is read as "lower clocks cost more"
    pooled, pooled_info = energy_ols(df.assign(gpu_uuid="one card"))
    assert pooled_info["gpu_blocks"] == 1
    pooled_slope = pooled.set_index("term").loc["freq_applied_mhz"]
    assert pooled_slope["coef"] < 0 < SLOPE_J_PER_MHZ
    assert not pooled_slope["ci_low"] <= SLOPE_J_PER_MHZ <= pooled_slope["ci_high"]


def test_cards_are_blocks_in_the_omnibus_test() -> None:
    df = two_cards()
    res = frequency_effect(df, metric="energy_j").iloc[0]
    # an item on card A and on card B are two blocks, each measured at that card's two clocks
    assert res["design"] == "blocked-incomplete" and res["n_blocks"] == 2 * 12
    assert res["test"] == "mixedlm" and res["note"] == "on log values"
    # reference: the LR test of the clock in a random-intercept model, blocks = card + item
    lr = mixedlm_lr_on_logs(
        df["energy_j"],
        df["freq_requested_mhz"].astype(float).astype(str).to_numpy(),
        (df["gpu_uuid"].astype(str) + "/" + df["item_id"].astype(str)).to_numpy(),
    )
    assert res["statistic"] == pytest.approx(lr, rel=1e-4)
    assert res["p_value"] == pytest.approx(stats.chi2.sf(lr, 2), rel=1e-3)
    assert res["significant"]


def test_two_gpu_models_are_reported_separately() -> None:
    a100 = sweep_requests((1500.0, 1200.0), n_per_freq=6, gpu_name="A100", gpu_uuid="GPU-1")
    h200 = sweep_requests((1500.0, 1200.0), n_per_freq=6, gpu_name="H200", gpu_uuid="GPU-2")
    h200 = h200.assign(energy_j=h200["energy_j"] * 0.5, run_id="b" * 32)
    both = pd.concat([a100, h200], ignore_index=True)
    s = summarize(both)
    assert sorted(s["gpu_name"]) == ["A100", "A100", "H200", "H200"] and (s["n"] == 6).all()
    ratio = s.groupby("gpu_name")["energy_j_mean"].mean()
    assert ratio["H200"] / ratio["A100"] == pytest.approx(0.5, rel=0.05)
    effect = frequency_effect(both)
    assert sorted(effect["gpu_name"]) == ["A100", "H200"]
    spearman = spearman_lengths(both)
    for scope in ("stratum", "pooled"):  # strata and their pools: one GPU model each
        assert sorted(spearman.loc[spearman["scope"] == scope, "gpu_name"]) == [
            "A100",
            "A100",
            "H200",
            "H200",
        ]
    coef, info = energy_ols(both)
    assert coef.empty and info["skipped"].startswith("records of 2 GPU models (A100, H200)")
    coef, info = energy_ols(both, gpu_name="H200")
    assert info["skipped"] is None and info["gpu_blocks"] == 1
    assert (info["n"], info["n_clusters"]) == (12, 6)  # 6 items at 2 clocks, one window each
