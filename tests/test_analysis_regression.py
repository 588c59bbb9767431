"""regression.py: OLS coefficients vs numpy lstsq, window-clustered errors vs statsmodels and the
CR1 sandwich formula."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats

from analysis_fixtures import as_records, sweep_requests
from analysis_settings import energy_ols
from llm_energy.analysis.regression import COEF_COLUMNS


def _linear_requests(n: int = 60, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    inp = rng.integers(50, 500, n).astype(float)
    out = rng.integers(10, 200, n).astype(float)
    params = rng.choice([135.0, 1100.0, 7000.0], n)
    freq = rng.choice([900.0, 1200.0, 1500.0, 1800.0], n)
    noise = rng.normal(0, 2.0, n) * (1 + out / 100)  # heteroscedastic: HC3 matters
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


def _batched(df: pd.DataFrame, batch: int, seed: int = 1) -> pd.DataFrame:
    """Group consecutive requests into windows of ``batch`` that share one energy reading."""
    out = df.copy()
    out["run_id"] = "r"
    out["window_id"] = np.arange(len(out)) // batch
    for col in ("freq_requested_mhz", "freq_applied_mhz"):  # one clock per window
        out[col] = out.groupby("window_id")[col].transform("first")
    shared = out.groupby("window_id")["energy_j"].transform("mean")
    noise = np.random.default_rng(seed).normal(0, 3.0, out["window_id"].nunique())
    out["energy_j"] = shared + noise[out["window_id"]]
    return as_records(out)


def test_ols_matches_lstsq_and_statsmodels_cluster_errors() -> None:
    df = _batched(_linear_requests(n=120), batch=4)
    coef, info = energy_ols(df)
    assert list(coef.columns) == COEF_COLUMNS
    assert info["skipped"] is None and info["cov_type"].startswith("cluster")
    assert (info["n"], info["n_clusters"]) == (120, 30)
    names = ["input_tokens", "output_tokens", "model_params_m", "freq_applied_mhz"]
    assert info["used_predictors"] == names
    x = np.column_stack([np.ones(len(df))] + [df[c].to_numpy() for c in names])
    y = df["energy_j"].to_numpy()
    beta, *_ = np.linalg.lstsq(x, y, rcond=None)
    np.testing.assert_allclose(coef["coef"].to_numpy(), beta, rtol=1e-8)
    # reference: statsmodels' own cluster-robust fit
    ref = sm.OLS(y, x).fit(cov_type="cluster", cov_kwds={"groups": df["window_id"]}, use_t=True)
    np.testing.assert_allclose(coef["se"].to_numpy(), ref.bse, rtol=1e-8)
    np.testing.assert_allclose(coef["p_value"].to_numpy(), ref.pvalues, rtol=1e-8)
    # and the CR1 sandwich by hand: G/(G-1) (N-1)/(N-K) (X'X)^-1 Σ_g X_g'u_g u_g'X_g (X'X)^-1
    resid = y - x @ beta
    xtx_inv = np.linalg.inv(x.T @ x)
    scores = pd.DataFrame(x * resid[:, None]).groupby(df["window_id"].to_numpy()).sum().to_numpy()
    g, n, k = len(scores), len(y), x.shape[1]
    cov = xtx_inv @ (scores.T @ scores) @ xtx_inv * g / (g - 1) * (n - 1) / (n - k)
    np.testing.assert_allclose(coef["se"].to_numpy(), np.sqrt(np.diag(cov)), rtol=1e-8)
    # t with G − 1 degrees of freedom
    t = coef.set_index("term").loc["output_tokens", "t"]
    p = coef.set_index("term").loc["output_tokens", "p_value"]
    assert p == pytest.approx(2 * stats.t.sf(abs(t), g - 1))
    assert coef.attrs["n_clusters"] == 30


def test_cluster_errors_are_wider_than_request_level_errors_for_shared_readings() -> None:
    df = _batched(_linear_requests(n=160, seed=3), batch=8, seed=4)
    coef, _ = energy_ols(df)
    x = sm.add_constant(
        df[["input_tokens", "output_tokens", "model_params_m", "freq_applied_mhz"]].to_numpy(
            dtype=float
        )
    )
    naive = sm.OLS(df["energy_j"].to_numpy(), x).fit(cov_type="HC3")
    assert coef["se"].iloc[0] > naive.bse[0]


def test_one_request_per_window_is_its_own_cluster() -> None:
    df = _linear_requests()
    coef, info = energy_ols(df)
    assert info["n_clusters"] == info["n"] == len(df)
    truth = {"output_tokens": 0.4, "freq_applied_mhz": 0.003}
    for term, value in truth.items():
        row = coef.set_index("term").loc[term]
        assert row["ci_low"] <= value <= row["ci_high"]


def test_too_few_windows_skips() -> None:
    df = _batched(_linear_requests(n=30), batch=15)  # 2 windows
    coef, info = energy_ols(df)
    assert coef.empty and info["skipped"] == "too few windows: 2 < 3"


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
    assert info["n"] == 24
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
    assert info["skipped"].startswith("too few rows")
    coef, info = energy_ols(as_records(pd.DataFrame()))
    assert coef.empty and info["skipped"]


def test_excluded_requests_are_not_fitted() -> None:
    df = _linear_requests()
    df.loc[0, "status"] = "oom"
    df.loc[0, "energy_j"] = 1e9
    _coef, info = energy_ols(df)
    assert info["n"] == len(df) - 1
    assert math.isfinite(info["r2"]) and info["r2"] > 0.9
