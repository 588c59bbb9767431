"""regression.py: one row per measurement window (its energy per request on its mean lengths),
coefficients vs numpy lstsq, item-clustered errors vs statsmodels and the CR1 sandwich formula,
and the batch-8 slope that per-request even shares get wrong."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import linalg, stats

from analysis_fixtures import as_records, sweep_requests
from analysis_settings import energy_ols
from llm_energy.analysis.regression import COEF_COLUMNS, cr2_bell_mccaffrey

PREDICTORS = ["input_tokens", "output_tokens", "model_params_m", "freq_applied_mhz"]


def _linear_requests(n: int = 60, seed: int = 0) -> pd.DataFrame:
    """`n` requests, one window and one item each: energy linear in the predictors."""
    rng = np.random.default_rng(seed)
    inp = rng.integers(50, 500, n).astype(float)
    out = rng.integers(10, 200, n).astype(float)
    params = rng.choice([135.0, 1100.0, 7000.0], n)
    freq = rng.choice([900.0, 1200.0, 1500.0, 1800.0], n)
    noise = rng.normal(0, 2.0, n) * (1 + out / 100)  # heteroscedastic
    energy = 5.0 + 0.01 * inp + 0.4 * out + 0.002 * params + 0.003 * freq + noise
    return as_records(
        pd.DataFrame(
            {
                "model": "m",
                "task": "t",
                "energy_kind": "measured",
                "status": "ok",
                "input_tokens": inp,
                "output_tokens": out,
                "model_params_m": params,
                "freq_requested_mhz": freq,
                "freq_applied_mhz": freq,
                "energy_j": energy,
                "latency_s": 1.0,
            }
        )
    )


def _batched(
    df: pd.DataFrame,
    batch: int,
    *,
    reps: int = 1,
    seed: int = 1,
    noise_sd: float = 3.0,
    item_sd: float = 0.0,
) -> pd.DataFrame:
    """Consecutive requests as windows of ``batch`` sharing one reading (one clock and model
    size per window), each window run ``reps`` times (the same items, a window each): every
    request holds the window's mean energy + N(0, noise_sd²) per window + N(0, item_sd²) per
    item set (shared by its repetitions)."""
    rng = np.random.default_rng(seed)
    base = df.copy()
    base["run_id"] = "r"
    slot = np.arange(len(base)) // batch
    for col in ("freq_requested_mhz", "freq_applied_mhz", "model_params_m"):
        base[col] = base.groupby(slot)[col].transform("first")
    shared = base.groupby(slot)["energy_j"].transform("mean").to_numpy()
    n_slots = int(slot.max()) + 1
    item_effect = rng.normal(0, item_sd, n_slots) if item_sd else np.zeros(n_slots)
    copies = []
    for rep in range(reps):
        noise = rng.normal(0, noise_sd, n_slots)
        copies.append(
            base.assign(
                rep=rep,
                window_id=rep * n_slots + slot,
                energy_j=shared + item_effect[slot] + noise[slot],
            )
        )
    return as_records(pd.concat(copies, ignore_index=True))


def _windows_by_hand(df: pd.DataFrame, predictors: list[str]) -> pd.DataFrame:
    """One row per window straight from the records: its mean energy per request, mean
    predictors, and its item set (the sorted item ids) as the cluster."""
    work = pd.DataFrame(
        {c: pd.to_numeric(df[c]).astype(float) for c in ["energy_j", *predictors]}
    ).assign(window=df["window_id"].astype(int).to_numpy(), item=df["item_id"].astype(str))
    grouped = work.groupby("window", sort=True)
    out = grouped[["energy_j", *predictors]].mean()
    out["items"] = grouped["item"].agg(lambda s: ",".join(sorted(s)))
    return out


def _cr2_by_hand(x: np.ndarray, resid: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """CR2 (Bell & McCaffrey 2002) written from the formula with scipy's matrix functions:
    (X'X)^-1 Σ_g X_g' (I − H_gg)^-1/2 e_g e_g' (I − H_gg)^-1/2 X_g (X'X)^-1."""
    xtx_inv = np.linalg.inv(x.T @ x)
    hat = x @ xtx_inv @ x.T
    meat = np.zeros((x.shape[1], x.shape[1]))
    for g in np.unique(groups):
        rows = groups == g
        adjust = np.real(linalg.sqrtm(np.linalg.inv(np.eye(rows.sum()) - hat[np.ix_(rows, rows)])))
        score = x[rows].T @ adjust @ resid[rows]
        meat += np.outer(score, score)
    return xtx_inv @ meat @ xtx_inv


def test_ols_on_windows_matches_lstsq_and_cr2_item_clusters() -> None:
    df = _batched(_linear_requests(n=120), batch=4, reps=2)  # 30 item sets × 2 runs
    coef, info = energy_ols(df)
    assert list(coef.columns) == COEF_COLUMNS
    assert info["skipped"] is None and info["cov_type"].startswith("cluster (item), CR2")
    assert (info["n"], info["n_clusters"]) == (60, 30)  # windows, items: not 240 requests
    assert info["used_predictors"] == PREDICTORS
    win = _windows_by_hand(df, PREDICTORS)
    x = sm.add_constant(win[PREDICTORS].to_numpy())
    y = win["energy_j"].to_numpy()
    beta, *_ = np.linalg.lstsq(x, y, rcond=None)
    np.testing.assert_allclose(coef["coef"].to_numpy(), beta, rtol=1e-8)
    groups = pd.factorize(win["items"])[0]
    cov = _cr2_by_hand(x, y - x @ beta, groups)
    np.testing.assert_allclose(coef["se"].to_numpy(), np.sqrt(np.diag(cov)), rtol=1e-6)
    # CR2 is at least as wide as statsmodels' CR1 here, and p / CI use the reported df
    cr1 = sm.OLS(y, x).fit(cov_type="cluster", cov_kwds={"groups": groups}, use_t=True)
    assert (coef["se"].to_numpy() > 0.95 * cr1.bse).all()
    row = coef.set_index("term").loc["output_tokens"]
    assert 1 < row["df"] <= 29  # Bell–McCaffrey: at most G − 1
    assert row["p_value"] == pytest.approx(2 * stats.t.sf(abs(row["t"]), row["df"]))
    half = stats.t.ppf(0.975, row["df"]) * row["se"]
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(
        (row["coef"] - half, row["coef"] + half)
    )
    assert coef.attrs["n_clusters"] == 30 and coef.attrs["n"] == 60
    assert info["r2"] == pytest.approx(cr1.rsquared)


def test_cr2_with_one_row_per_cluster_is_statsmodels_hc2() -> None:
    rng = np.random.default_rng(5)
    x = sm.add_constant(rng.normal(size=(25, 2)))
    y = x @ [1.0, 2.0, -1.0] + rng.normal(size=25) * (1 + np.abs(x[:, 1]))
    fit = sm.OLS(y, x).fit()
    cov, _df = cr2_bell_mccaffrey(x, np.asarray(fit.resid), np.arange(25))
    hc2 = sm.OLS(y, x).fit(cov_type="HC2")
    np.testing.assert_allclose(np.sqrt(np.diag(cov)), hc2.bse, rtol=1e-10)
    # Bell–McCaffrey df of a plain mean of independent rows is n − 1 (the t test's)
    ones = np.ones((12, 1))
    v = rng.normal(size=12)
    _cov, df_mean = cr2_bell_mccaffrey(ones, v - v.mean(), np.arange(12))
    assert df_mean[0] == pytest.approx(11.0)


def test_item_clusters_are_wider_than_independent_repetitions() -> None:
    # three runs of the same item sets share each set's own deviation: repetitions are not
    # independent samples, and the item-clustered errors say so
    df = _batched(_linear_requests(n=160, seed=3), batch=4, reps=3, seed=4, item_sd=6.0)
    coef, info = energy_ols(df)
    assert (info["n"], info["n_clusters"]) == (120, 40)
    win = _windows_by_hand(df, PREDICTORS)
    x = sm.add_constant(win[PREDICTORS].to_numpy())
    y = win["energy_j"].to_numpy()
    beta, *_ = np.linalg.lstsq(x, y, rcond=None)
    cov = _cr2_by_hand(x, y - x @ beta, pd.factorize(win["items"])[0])
    np.testing.assert_allclose(coef["se"].to_numpy(), np.sqrt(np.diag(cov)), rtol=1e-6)
    independent = sm.OLS(y, x).fit(cov_type="HC2")  # every window its own unit
    assert (coef["se"].to_numpy() > 1.3 * independent.bse).all()


def _batch8_requests(
    *, n_sets: int = 48, reps: int = 2, seed: int = 0, noise: float = 0.02
) -> pd.DataFrame:
    """Batch-8 windows: request i truly costs 20 + 0.30·input_i + 2.0·output_i J; a window's
    reading is the sum over its 8 requests × lognormal(0, `noise`), and each request holds an
    even share (reading / 8). Lengths are drawn per request (random batching); every item set
    runs `reps` times."""
    rng = np.random.default_rng(seed)
    inp = rng.integers(50, 1001, (n_sets, 8))
    out = rng.integers(10, 201, (n_sets, 8))
    rows = []
    for rep in range(reps):
        for k in range(n_sets):
            reading = (20.0 + 0.30 * inp[k] + 2.0 * out[k]).sum() * rng.lognormal(0, noise)
            rows += [
                {
                    "run_id": "r",
                    "window_id": rep * n_sets + k + 1,
                    "rep": rep,
                    "batch_size": 8,
                    "batch_index": k,
                    "item_id": f"item-{k}-{i}",
                    "input_tokens": int(inp[k, i]),
                    "output_tokens": int(out[k, i]),
                    "window_energy_j": reading,
                    "energy_j": reading / 8,
                }
                for i in range(8)
            ]
    return as_records(pd.DataFrame(rows))


def test_batch8_windows_recover_the_per_request_input_slope() -> None:
    df = _batch8_requests()
    coef, info = energy_ols(df, predictors=("input_tokens", "output_tokens"))
    assert (info["n"], info["n_clusters"]) == (96, 48)  # windows, item sets
    by_term = coef.set_index("term")
    slope = by_term.loc["input_tokens"]
    assert slope["ci_low"] <= 0.30 <= slope["ci_high"]
    assert slope["coef"] == pytest.approx(0.30, abs=0.03)
    out = by_term.loc["output_tokens"]
    assert out["ci_low"] <= 2.0 <= out["ci_high"]
    # parity: statsmodels on the windows (mean lengths, reading / 8), clustered by item set
    win = _windows_by_hand(df, ["input_tokens", "output_tokens"])
    x = sm.add_constant(win[["input_tokens", "output_tokens"]].to_numpy())
    ref = sm.OLS(win["energy_j"].to_numpy(), x).fit()
    np.testing.assert_allclose(coef["coef"].to_numpy(), ref.params, rtol=1e-8)
    cov = _cr2_by_hand(x, np.asarray(ref.resid), pd.factorize(win["items"])[0])
    np.testing.assert_allclose(coef["se"].to_numpy(), np.sqrt(np.diag(cov)), rtol=1e-6)
    # the old fit: every request's even share on its own lengths flattens the slope, and its
    # interval (clustered by window, even) does not come near the truth
    per_request = sm.OLS(
        pd.to_numeric(df["energy_j"]).astype(float).to_numpy(),
        sm.add_constant(df[["input_tokens", "output_tokens"]].astype(float).to_numpy()),
    ).fit(cov_type="cluster", cov_kwds={"groups": df["window_id"].astype(int)}, use_t=True)
    naive_slope = per_request.params[1]
    assert abs(naive_slope - 0.30) > 0.15 and naive_slope < 0.1
    assert per_request.conf_int()[1, 1] < 0.15


def test_one_request_per_window_is_its_own_cluster() -> None:
    df = _linear_requests()
    coef, info = energy_ols(df)
    assert info["n_clusters"] == info["n"] == len(df)
    truth = {"output_tokens": 0.4, "freq_applied_mhz": 0.003}
    for term, value in truth.items():
        row = coef.set_index("term").loc[term]
        assert row["ci_low"] <= value <= row["ci_high"]


def test_too_few_items_skips_even_with_many_windows() -> None:
    # two item sets run six times each: 12 windows, but only 2 independent units
    df = _batched(_linear_requests(n=8), batch=4, reps=6)
    coef, info = energy_ols(df, predictors=("input_tokens", "output_tokens"))
    assert (info["n"], info["n_clusters"]) == (12, 2)
    assert coef.empty and info["skipped"] == "too few items: 2 < 3"


def test_too_few_windows_skips_as_too_few_rows() -> None:
    df = _batched(_linear_requests(n=30), batch=15)  # 2 windows
    coef, info = energy_ols(df, predictors=("input_tokens", "output_tokens"))
    # 2 windows < 2 predictors + intercept + 2: the row check comes first
    assert coef.empty and info["skipped"] == "too few rows: 2 < 5"
    assert (info["n"], info["n_clusters"]) == (2, 2)


def test_constant_and_missing_predictors_are_dropped_and_reported() -> None:
    df = _linear_requests().assign(model_params_m=np.nan)
    df["input_tokens"] = 128.0
    coef, info = energy_ols(df)
    assert info["dropped_predictors"] == {
        "model_params_m": "all null",
        "input_tokens": "constant",
    }
    assert list(coef["term"]) == ["const", "output_tokens", "freq_applied_mhz"]


def test_default_clock_rows_without_frequency_are_dropped() -> None:
    df = sweep_requests((None, 1500.0, 1200.0, 900.0), n_per_freq=8, length_jitter=True)
    coef, info = energy_ols(df)
    assert info["n_dropped_rows"] == 8
    assert info["n"] == 24 and info["n_clusters"] == 8  # 8 items at 3 clocks
    assert info["dropped_predictors"]["model_params_m"] == "constant"
    assert coef.set_index("term").loc["freq_applied_mhz", "coef"] > 0


def test_all_default_clock_frequency_is_dropped_not_fatal() -> None:
    df = sweep_requests((None,), n_per_freq=10, length_jitter=True)
    coef, info = energy_ols(df)
    assert info["dropped_predictors"]["freq_applied_mhz"] == "all null"
    assert "output_tokens" in list(coef["term"])


def test_too_few_rows_skips_with_reason() -> None:
    coef, info = energy_ols(_linear_requests(n=5))
    assert coef.empty and list(coef.columns) == COEF_COLUMNS
    assert info["skipped"] == "too few rows: 5 < 7"


def test_no_records_skip_with_reason() -> None:
    coef, info = energy_ols(as_records(pd.DataFrame()))
    assert coef.empty and list(coef.columns) == COEF_COLUMNS and info["skipped"]


def test_excluded_requests_are_not_fitted() -> None:
    df = _linear_requests()
    df.loc[0, "status"] = "oom"
    df.loc[0, "energy_j"] = 1e9
    _coef, info = energy_ols(df)
    assert info["n"] == len(df) - 1
    assert math.isfinite(info["r2"]) and info["r2"] > 0.9
