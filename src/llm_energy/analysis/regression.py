"""OLS of energy per request on length, model size and frequency, one row per measurement
window (even per-request shares flatten the slope: docs/statistics.md, ``regression.csv``),
one intercept per GPU card (``gpu[<uuid>]``), one GPU model per fit.

Errors are clustered by item: CR2 with Bell–McCaffrey df, because a study has few items and
CR1 with G − 1 df covered the true slope only 83–90 % of the time at 15 clusters.
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

DEFAULT_PREDICTORS: tuple[str, ...] = tuple(
    "input_tokens output_tokens model_params_m freq_applied_mhz".split()
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
    windows: pd.DataFrame | None = None,  # window_table(requests), when already made
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """OLS ``response ~ 1 + predictors`` over valid windows of one energy kind (``energy_kind``,
    else measured > estimated > simulated) and one GPU model (with several and no ``gpu_name``
    the fit is skipped). All-null or constant predictors are dropped, then rows with a null
    (e.g. ``freq_applied_mhz`` at default clocks). Fewer than ``min_rows`` rows (default:
    parameters + 2) or 3 items: skipped, with ``info["skipped"]`` saying why.

    Returns ``(coef_df, info)``: :data:`COEF_COLUMNS` with t-based p-values and CIs (``attrs``
    carry ``r2``, ``n``, ``n_clusters``, ``cov_type``, ``energy_kind`` for the report).
    """
    df = window_table(requests) if windows is None else windows
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
