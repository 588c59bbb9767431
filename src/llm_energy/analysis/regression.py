"""OLS of energy per request on length, model size and frequency, fitted on what was measured:
one row per measurement window, with standard errors clustered by item.

A window's requests share one energy reading, so a request's "own" energy is an even share of
it: regressing those shares on each request's length attributes the batch's total to every
member alike and flattens the slope (0.07 against a true 0.30 J/token at batch 8). Each window
is therefore one row: its energy per request (the reading ÷ requests) against its mean input
and output tokens per request, which is exactly linear in the per-request model. The same items
repeat across repetitions and clocks, so the covariance is cluster-robust by item: CR2 with
Bell–McCaffrey degrees of freedom, the small-cluster correction (a study has few items; CR1 with
G − 1 df covered the true slope 83–90 % of the time at 15 clusters).

GPUs are blocks: records of several GPUs (``gpu_uuid``) get one intercept per GPU (terms
``gpu[<uuid>]``, relative to the first), so a constant offset between two cards is not read as a
clock effect; two GPU models (``gpu_name``) are never pooled in one fit.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.regression.linear_model import OLS
from statsmodels.tools.tools import add_constant

from llm_energy.analysis.headline import choose_energy_kind
from llm_energy.analysis.windows import item_units, window_table

DEFAULT_PREDICTORS: tuple[str, ...] = (
    "input_tokens",
    "output_tokens",
    "model_params_m",
    "freq_applied_mhz",
)
COEF_COLUMNS: list[str] = ["term", "coef", "se", "t", "df", "p_value", "ci_low", "ci_high"]
#: what ``se`` is, for the report and ols_info.json
COV_TYPE = "cluster (item), CR2 with Bell–McCaffrey df"


def _skip(info: dict[str, Any], reason: str) -> tuple[pd.DataFrame, dict[str, Any]]:
    info["skipped"] = reason
    return pd.DataFrame(columns=COEF_COLUMNS), info


def gpu_blocks(uuids: pd.Series) -> pd.DataFrame:
    """Indicator columns ``gpu[<uuid>]`` for every GPU but the first (sorted); none for one GPU."""
    codes = uuids.astype("object").where(uuids.notna(), "unknown")
    names = sorted(set(codes.tolist()))
    return pd.DataFrame(
        {f"gpu[{u}]": (codes == u).to_numpy(dtype=float) for u in names[1:]}, index=uuids.index
    )


def cr2_bell_mccaffrey(
    design: np.ndarray, resid: np.ndarray, groups: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Cluster-robust covariance CR2 (Bell & McCaffrey 2002) and its per-coefficient degrees of
    freedom (the Satterthwaite approximation of Bell–McCaffrey, as Imbens & Kolesár 2016
    recommend for few clusters). With one row per cluster CR2 is HC2 (statsmodels' parity test
    in tests/analysis/test_regression.py)."""
    n, k = design.shape
    bread = np.linalg.pinv(design.T @ design)
    resid_maker = np.eye(n) - design @ bread @ design.T
    meat = np.zeros((k, k))
    columns = []  # per cluster: the n × k map from the errors to its score (for the df)
    for g in np.unique(groups):
        rows = np.flatnonzero(groups == g)
        vals, vecs = np.linalg.eigh(resid_maker[np.ix_(rows, rows)])
        adjust = vecs @ np.diag(np.clip(vals, 1e-12, None) ** -0.5) @ vecs.T
        score = design[rows].T @ adjust @ resid[rows]
        meat += np.outer(score, score)
        columns.append(resid_maker[rows].T @ adjust @ design[rows] @ bread)
    cov = bread @ meat @ bread
    df = np.empty(k)
    for j in range(k):
        g_mat = np.column_stack([c[:, j] for c in columns])
        lam = np.linalg.eigvalsh(g_mat.T @ g_mat)
        df[j] = lam.sum() ** 2 / (lam**2).sum() if (lam**2).sum() > 0 else np.nan
    return cov, df


def energy_ols(
    requests: pd.DataFrame,
    *,
    response: str = "energy_j",
    predictors: Sequence[str] = DEFAULT_PREDICTORS,
    energy_kind: str | None = None,
    min_rows: int | None = None,
    ci_level: float,
    gpu_name: str | None = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """OLS ``response ~ 1 + predictors`` over valid windows (per-request means of the window),
    standard errors clustered by item.

    One energy kind only (``energy_kind``, else measured > estimated > simulated) and one GPU
    model (``gpu_name``; with records of several and none named the fit is skipped). Several
    GPUs of that model are blocks (an intercept each: info ``gpu_blocks``). A predictor
    is dropped when it is all null, or constant over the rows used (info
    ``dropped_predictors``: name → reason); then rows with a null in a used predictor or the
    response are dropped (``n_dropped_rows``; e.g. default-clock rows whose
    ``freq_applied_mhz`` is null). With fewer than ``min_rows`` rows (default: number of
    parameters, intercept included, + 2) or fewer than 3 items the fit is skipped: empty coefficient table and
    ``info["skipped"]``.

    Returns ``(coef_df, info)``; ``coef_df`` columns :data:`COEF_COLUMNS` (t-based p-values and
    CIs, ``ci_level``); ``info``: ``n`` (windows), ``n_clusters`` (items), ``r2``, ``r2_adj``,
    ``used_predictors``, ``dropped_predictors``, ``n_dropped_rows``, ``energy_kind``,
    ``cov_type``, ``ci_level``, ``condition_number``, ``rank_deficient``, ``skipped`` (None when
    fitted). ``coef_df.attrs`` carries ``r2``, ``n``, ``n_clusters``, ``cov_type`` and
    ``energy_kind`` for the report.
    """
    df = window_table(requests)
    kind = energy_kind if energy_kind is not None else choose_energy_kind(df["energy_kind"])
    df = df[df["energy_kind"] == kind] if kind is not None else df
    info: dict[str, Any] = {
        "response": response,
        "n": 0,
        "n_clusters": 0,
        "r2": math.nan,
        "r2_adj": math.nan,
        "used_predictors": [],
        "dropped_predictors": {},
        "n_dropped_rows": 0,
        "energy_kind": kind,
        "cov_type": COV_TYPE,
        "ci_level": ci_level,
        "condition_number": math.nan,
        "rank_deficient": False,
        "skipped": None,
        "gpu_name": gpu_name,
        "gpu_blocks": 0,
    }
    if gpu_name is not None:
        df = df[df["gpu_name"] == gpu_name]
    models = sorted(df["gpu_name"].dropna().unique())
    if len(models) > 1:
        return _skip(
            info,
            f"records of {len(models)} GPU models ({', '.join(models)}): fit one gpu_name at a time",
        )
    info["gpu_name"] = models[0] if models else None
    y_all = pd.to_numeric(df[response], errors="coerce")
    df = df[y_all.notna().to_numpy()]
    candidates: list[str] = []
    for p in predictors:
        col = pd.to_numeric(df[p], errors="coerce")
        if col.notna().sum() == 0:
            info["dropped_predictors"][p] = "all null"
            continue
        candidates.append(p)
    x = df[candidates].apply(pd.to_numeric, errors="coerce").astype(float)
    complete = x.notna().all(axis=1).to_numpy()
    info["n_dropped_rows"] = int((~complete).sum())
    x = x[complete]
    y = pd.to_numeric(df[response], errors="coerce").astype(float)[complete]
    used = []
    for p in candidates:
        if x[p].nunique() <= 1:
            info["dropped_predictors"][p] = "constant"
        else:
            used.append(p)
    info["used_predictors"] = used
    blocks = gpu_blocks(df["gpu_uuid"][complete])
    info["gpu_blocks"] = blocks.shape[1] + 1 if blocks.shape[1] else int(len(y) > 0)
    n = len(y)
    info["n"] = n
    groups = pd.factorize(item_units(df[complete]))[0]
    n_clusters = int(groups.max()) + 1 if n else 0
    info["n_clusters"] = n_clusters
    needed = min_rows if min_rows is not None else len(used) + blocks.shape[1] + 1 + 2
    if n < needed:
        return _skip(info, f"too few rows: {n} < {needed}")
    if n_clusters < 3:
        return _skip(info, f"too few items: {n_clusters} < 3")
    design = add_constant(
        np.column_stack([x[used].to_numpy(dtype=float), blocks.to_numpy(dtype=float)]),
        has_constant="add",
    )
    names = ["const", *used, *blocks.columns]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = OLS(y.to_numpy(dtype=float), design).fit()
    params = np.asarray(fit.params, dtype=float)
    cov, df = cr2_bell_mccaffrey(design, np.asarray(fit.resid, dtype=float), groups)
    se = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    with np.errstate(divide="ignore", invalid="ignore"):
        t = params / se
    half = stats.t.ppf(0.5 + ci_level / 2.0, df) * se
    rank = int(np.linalg.matrix_rank(design))
    info["rank_deficient"] = rank < design.shape[1]
    info["r2"] = float(fit.rsquared)
    info["r2_adj"] = float(fit.rsquared_adj)
    info["condition_number"] = float(fit.condition_number)
    coef = pd.DataFrame(
        {
            "term": names,
            "coef": params,
            "se": se,
            "t": t,
            "df": df,
            "p_value": 2.0 * stats.t.sf(np.abs(t), df),
            "ci_low": params - half,
            "ci_high": params + half,
        }
    )
    coef.attrs.update(
        r2=info["r2"], n=n, n_clusters=n_clusters, cov_type=COV_TYPE, energy_kind=kind
    )
    return coef, info
