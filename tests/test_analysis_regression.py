"""regression.py: OLS coefficients vs numpy lstsq, HC3 errors vs the sandwich formula."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from analysis_fixtures import sweep_requests
from llm_energy.analysis.regression import COEF_COLUMNS, energy_ols


def _linear_requests(n: int = 60, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    inp = rng.integers(50, 500, n).astype(float)
    out = rng.integers(10, 200, n).astype(float)
    params = rng.choice([135.0, 1100.0, 7000.0], n)
    freq = rng.choice([900.0, 1200.0, 1500.0, 1800.0], n)
    noise = rng.normal(0, 2.0, n) * (1 + out / 100)  # heteroscedastic: HC3 matters
    energy = 5.0 + 0.01 * inp + 0.4 * out + 0.002 * params + 0.003 * freq + noise
    return pd.DataFrame(
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


def test_ols_matches_lstsq_and_hc3_sandwich() -> None:
    df = _linear_requests()
    coef, info = energy_ols(df)
    assert list(coef.columns) == COEF_COLUMNS
    assert info["skipped"] is None
    assert info["used_predictors"] == [
        "input_tokens",
        "output_tokens",
        "model_params_m",
        "freq_applied_mhz",
    ]
    x = np.column_stack(
        [np.ones(len(df))]
        + [
            df[c].to_numpy()
            for c in ("input_tokens", "output_tokens", "model_params_m", "freq_applied_mhz")
        ]
    )
    y = df["energy_j"].to_numpy()
    beta, *_ = np.linalg.lstsq(x, y, rcond=None)
    np.testing.assert_allclose(coef["coef"].to_numpy(), beta, rtol=1e-8)
    # HC3: (X'X)^-1 X' diag(e² / (1 − h)²) X (X'X)^-1
    resid = y - x @ beta
    xtx_inv = np.linalg.inv(x.T @ x)
    h = np.einsum("ij,jk,ik->i", x, xtx_inv, x)
    meat = x.T @ (x * (resid**2 / (1 - h) ** 2)[:, None])
    se = np.sqrt(np.diag(xtx_inv @ meat @ xtx_inv))
    np.testing.assert_allclose(coef["se_hc3"].to_numpy(), se, rtol=1e-8)
    r2 = 1 - (resid**2).sum() / ((y - y.mean()) ** 2).sum()
    assert info["r2"] == pytest.approx(r2)
    assert info["n"] == len(df)
    # true slopes inside the 95 % CI
    truth = {"output_tokens": 0.4, "freq_applied_mhz": 0.003}
    for term, value in truth.items():
        row = coef.set_index("term").loc[term]
        assert row["ci_low"] <= value <= row["ci_high"]
    assert coef.attrs["r2"] == pytest.approx(r2)


def test_constant_and_missing_predictors_are_dropped_and_reported() -> None:
    df = _linear_requests().drop(columns=["model_params_m"])
    df["input_tokens"] = 128.0
    coef, info = energy_ols(df)
    assert info["dropped_predictors"] == {
        "model_params_m": "missing column",
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
    coef, info = energy_ols(pd.DataFrame({"energy_j": []}))
    assert coef.empty and info["skipped"]


def test_excluded_requests_are_not_fitted() -> None:
    df = _linear_requests()
    df.loc[0, "status"] = "oom"
    df.loc[0, "energy_j"] = 1e9
    _coef, info = energy_ols(df)
    assert info["n"] == len(df) - 1
    assert math.isfinite(info["r2"]) and info["r2"] > 0.9
