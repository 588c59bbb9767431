"""A per-phase clock estimate: the best prefill/decode clock pair within the latency budget
against the best single clock, with an item bootstrap that repeats both picks
(docs/statistics.md, ``phase_clocks.csv``). An ESTIMATE. Pure."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from llm_energy.analysis.records import FREQ_LEVEL_COL, PHASE_METRICS, STRATUM_KEYS
from llm_energy.analysis.significance import metric_items
from llm_energy.analysis.windows import ITEM_COL

PHASE_CLOCK_COLUMNS: list[str] = [
    *STRATUM_KEYS,
    *(
        "n_items n_levels latency_budget_pct reference_freq_mhz single_freq_mhz "
        "single_energy_j prefill_freq_mhz decode_freq_mhz pair_energy_j pair_latency_s "
        "saving_pct saving_ci_low saving_ci_high ci_method note"
    ).split(),
]
CI_METHOD = "item bootstrap, both picks repeated per resample (percentile); an estimate"


def _reference(levels: np.ndarray) -> int:
    """The default clock (NaN level), else the highest."""
    nan = np.isnan(levels)
    return int(np.flatnonzero(nan)[0]) if nan.any() else int(np.nanargmax(levels))


def _picks(means: np.ndarray, levels: np.ndarray, budget_pct: float) -> dict[str, Any]:
    """Best single clock and best (prefill, decode) pair from per-level phase means
    (`means`: levels × PHASE_METRICS) under latency ≤ reference × (1 + budget)."""
    e_p, e_d, t_p, t_d = means.T
    ref = _reference(levels)
    limit_s = (t_p[ref] + t_d[ref]) * (1 + budget_pct / 100)
    energy, latency = e_p + e_d, t_p + t_d
    single = min(np.flatnonzero(latency <= limit_s), key=lambda i: energy[i])
    pair_e = e_p[:, None] + e_d[None, :]
    pair_e[(t_p[:, None] + t_d[None, :]) > limit_s] = np.inf
    p, d = np.unravel_index(int(np.argmin(pair_e)), pair_e.shape)
    return {
        "reference": ref,
        "single": single,
        "single_energy_j": float(energy[single]),
        "prefill": int(p),
        "decode": int(d),
        "pair_energy_j": float(pair_e[p, d]),
        "pair_latency_s": float(t_p[p] + t_d[d]),
    }


def _savings_pct(means: np.ndarray, ref: int, budget_pct: float) -> np.ndarray:
    """The best pair's saving over the best single clock, both picked again, for a batch of
    per-level phase means (..., levels, PHASE_METRICS): what the bootstrap repeats."""
    e_p, e_d, t_p, t_d = np.moveaxis(means, -1, 0)
    limit_s = (t_p[..., ref] + t_d[..., ref]) * (1 + budget_pct / 100)
    single = np.where(t_p + t_d <= limit_s[..., None], e_p + e_d, np.inf).min(axis=-1)
    fits = t_p[..., :, None] + t_d[..., None, :] <= limit_s[..., None, None]
    pair = np.where(fits, e_p[..., :, None] + e_d[..., None, :], np.inf).min(axis=(-2, -1))
    return 100.0 * (1.0 - pair / single)


def _cubes(
    requests: pd.DataFrame, items: pd.DataFrame | None
) -> list[tuple[dict[str, Any], np.ndarray, np.ndarray]]:
    """Per stratum: (its keys, the levels, items × levels × PHASE_METRICS) over the items measured
    at every level with every phase."""
    frames = [
        metric_items(requests, m, items).set_index([*STRATUM_KEYS, FREQ_LEVEL_COL, ITEM_COL])[
            "value"
        ]
        for m in PHASE_METRICS
    ]
    joined = pd.concat(frames, axis=1, keys=PHASE_METRICS).dropna().reset_index()
    out = []
    for key, group in joined.groupby(list(STRATUM_KEYS), dropna=False, sort=True):
        cube = group.pivot_table(
            index=ITEM_COL, columns=FREQ_LEVEL_COL, values=list(PHASE_METRICS), dropna=False
        )
        levels = np.array(sorted(group[FREQ_LEVEL_COL].unique(), key=lambda f: -np.nan_to_num(f)))
        arr = np.stack(
            [cube[m].reindex(columns=levels).to_numpy(dtype=float) for m in PHASE_METRICS], 2
        )
        arr = arr[np.isfinite(arr).all(axis=(1, 2))]
        head = dict(zip(STRATUM_KEYS, key if isinstance(key, tuple) else (key,), strict=True))
        out.append((head, levels, arr))
    return out


def phase_clock_estimate(
    requests: pd.DataFrame,
    *,
    latency_budget_pct: float,
    ci_level: float,
    n_resamples: int = 999,
    seed: int = 0,
    items: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per stratum: the best single clock, the best prefill/decode clock pair and the
    pair's saving over the single clock with its bootstrap interval. Columns:
    :data:`PHASE_CLOCK_COLUMNS`; empty without phase records."""
    if "prefill_energy_j" not in requests or requests["prefill_energy_j"].isna().all():
        return pd.DataFrame(columns=PHASE_CLOCK_COLUMNS)
    rows = []
    for head, levels, arr in _cubes(requests, items):
        row: dict[str, Any] = {**head, "n_items": len(arr), "n_levels": len(levels)}
        row["latency_budget_pct"] = latency_budget_pct
        if len(levels) < 2 or len(arr) < 3:
            row["note"] = "not estimable: needs 2+ clocks and 3+ items measured at every clock"
            rows.append(row)
            continue
        picks = _picks(arr.mean(axis=0), levels, latency_budget_pct)
        mhz = {k: float(levels[picks[k]]) for k in ("reference", "single", "prefill", "decode")}
        row.update({f"{k}_freq_mhz": v for k, v in mhz.items()})
        row.update({k: picks[k] for k in ("single_energy_j", "pair_energy_j", "pair_latency_s")})
        row["saving_pct"] = 100.0 * (1.0 - picks["pair_energy_j"] / picks["single_energy_j"])

        def saving(
            idx: np.ndarray, axis: int = -1, arr: np.ndarray = arr, ref: int = picks["reference"]
        ) -> np.ndarray:
            means = arr[idx.astype(int)].mean(axis=axis - 2 if axis < 0 else axis)  # over items
            return _savings_pct(means, ref, latency_budget_pct)

        boot = stats.bootstrap(
            (np.arange(len(arr)),),
            saving,
            vectorized=True,
            n_resamples=n_resamples,
            confidence_level=ci_level,
            method="percentile",
            random_state=np.random.default_rng(seed),
        )
        ci = boot.confidence_interval
        row["saving_ci_low"], row["saving_ci_high"] = float(ci.low), float(ci.high)
        row["ci_method"] = CI_METHOD
        row["note"] = "estimate: no clock is switched mid-request" + (
            "; default clocks are the reference" if math.isnan(mhz["reference"]) else ""
        )
        rows.append(row)
    return pd.DataFrame(rows).reindex(columns=PHASE_CLOCK_COLUMNS)
