"""Per-configuration summary of the per-request records (docs/records.md → summary.csv).

Pure functions: DataFrames in, DataFrames / dicts out. No files, no hardware.

The unit is the measurement window (:mod:`llm_energy.analysis.windows`): bootstrap intervals
resample windows, medians and CVs are over per-window values, and J/token is Σ energy / Σ
tokens over the configuration's windows (not a mean of per-request ratios, which over-weights
short answers of a batch that shared one reading). With one request per window this is the
ordinary request-level analysis.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from llm_energy.analysis.bootstrap import (
    bootstrap_mean_replicates,
    bootstrap_ratio_replicates,
    cluster_codes,
    cluster_ratio_sums,
    cluster_sums,
    cv,
    percentile_ci,
)
from llm_energy.analysis.records import (
    CONFIG_KEYS,
    EXCLUSION_REASONS,
    FREQ_LEVEL_COL,
    METRICS,
    config_rng,
    exclusion_flags,
    numeric_column,
    prepare_requests,
    quality_columns,
    unique_text,
)
from llm_energy.analysis.windows import RATIO_METRICS, window_keys

STAT_SUFFIXES: tuple[str, ...] = ("mean", "median", "ci_low", "ci_high", "cv")
#: metrics with a ``<m>_<suffix>`` block in summary.csv
SUMMARY_METRICS: tuple[str, ...] = (*METRICS, "dynamic_j_per_token")


def summarize(
    requests: pd.DataFrame,
    *,
    ci_level: float,
    n_boot: int,
    seed: int,
    cluster_col: str | None = "window_id",
) -> pd.DataFrame:
    """One row per configuration (:data:`CONFIG_KEYS`).

    Columns: the keys; ``freq_requested_mhz`` (when single-valued), ``default_clocks``;
    ``n_total`` (rows), ``n`` (valid rows), ``n_excluded``, ``excluded_<code>`` per reason,
    ``excluded_reasons`` (text), ``energy_source``, ``n_windows`` (valid measurement windows:
    the unit of every interval); for every metric of :data:`METRICS` and
    ``dynamic_j_per_token``: ``<m>_mean``, ``<m>_median``, ``<m>_ci_low``, ``<m>_ci_high``,
    ``<m>_cv``. ``<m>_mean`` is the mean over valid requests, except for the ratio metrics
    (J/token), where it is Σ energy / Σ tokens over the configuration's windows; the CI is a
    percentile bootstrap resampling windows; median and CV are over per-window values. Plus
    ``latency_p50_s``, ``latency_p95_s`` (over windows), ``energy_total_j``; for every ``quality_*`` column
    ``<q>_mean``, ``<q>_ci_low``, ``<q>_ci_high``, ``<q>_n`` (over status-ok rows); when the
    records carry ``ref_nll_sum``/``ref_tokens``: ``perplexity``, ``perplexity_ci_low``,
    ``perplexity_ci_high``; and ``ci_level``, ``n_boot``.

    Also ``sm_clock_mean_mhz`` (mean observed SM clock) and ``temperature_max_c`` over valid
    rows. A configuration whose requests all failed stays as a row with ``n == 0`` and NaN
    metrics. Driver-default requests (``freq_requested_mhz`` null) form their own group with
    NaN ``freq_applied_mhz``, even if a clock was recorded for them, so they never merge with
    a cap at the same clock; energy kinds never mix.
    """
    df = prepare_requests(requests)
    df["freq_applied_mhz"] = df[FREQ_LEVEL_COL]
    flags = exclusion_flags(df)
    valid = ~flags.any(axis=1)
    ok = ~flags["status"]
    qcols = quality_columns(df)
    has_ppl = bool(df["ref_tokens"].notna().any())
    rows: list[dict[str, Any]] = []
    if df.empty:
        return pd.DataFrame(columns=_summary_columns(qcols, has_ppl))
    grouped = df.groupby(list(CONFIG_KEYS), dropna=False, sort=True)
    for key, group in grouped:
        key_t = key if isinstance(key, tuple) else (key,)
        row: dict[str, Any] = dict(zip(CONFIG_KEYS, key_t, strict=True))
        gidx = group.index
        gvalid = group[valid.loc[gidx].to_numpy()]
        gflags = flags.loc[gidx]
        requested = numeric_column(group, "freq_requested_mhz").dropna().unique()
        row["freq_requested_mhz"] = float(requested[0]) if len(requested) == 1 else math.nan
        row["default_clocks"] = bool(group[FREQ_LEVEL_COL].isna().all())
        row["n_total"] = len(group)
        row["n"] = len(gvalid)
        row["n_excluded"] = int(gflags.any(axis=1).sum())
        for code in EXCLUSION_REASONS:
            row[f"excluded_{code}"] = int(gflags[code].sum())
        row["excluded_reasons"] = "; ".join(
            f"{text}={int(gflags[code].sum())}"
            for code, text in EXCLUSION_REASONS.items()
            if gflags[code].any()
        )
        row["energy_source"] = unique_text(group["energy_source"])
        rng = config_rng(seed, CONFIG_KEYS, key_t)
        row.update(_metric_block(gvalid, cluster_col, ci_level=ci_level, n_boot=n_boot, rng=rng))
        gok = group[ok.loc[gidx].to_numpy()]
        row.update(_quality_block(gok, qcols, has_ppl, ci_level=ci_level, n_boot=n_boot, rng=rng))
        row["ci_level"] = ci_level
        row["n_boot"] = n_boot
        rows.append(row)
    out = pd.DataFrame(rows)
    return out.reindex(columns=_summary_columns(qcols, has_ppl)).reset_index(drop=True)


def _summary_columns(qcols: Sequence[str], has_ppl: bool) -> list[str]:
    cols = [
        *CONFIG_KEYS,
        "freq_requested_mhz",
        "default_clocks",
        "n_total",
        "n",
        "n_excluded",
        *(f"excluded_{c}" for c in EXCLUSION_REASONS),
        "excluded_reasons",
        "energy_source",
        "n_windows",
    ]
    for m in SUMMARY_METRICS:
        cols.extend(f"{m}_{s}" for s in STAT_SUFFIXES)
    cols.extend(
        [
            "latency_p50_s",
            "latency_p95_s",
            "energy_total_j",
            "dynamic_j_per_token_idle_se",
            "sm_clock_mean_mhz",
            "temperature_max_c",
        ]
    )
    for q in qcols:
        cols.extend([f"{q}_mean", f"{q}_ci_low", f"{q}_ci_high", f"{q}_n"])
    if has_ppl:
        cols.extend(["perplexity", "perplexity_ci_low", "perplexity_ci_high"])
    cols.extend(["ci_level", "n_boot"])
    return cols


def _metric_block(
    gvalid: pd.DataFrame,
    cluster_col: str | None,
    *,
    ci_level: float,
    n_boot: int,
    rng: np.random.Generator,
) -> dict[str, float]:
    out: dict[str, float] = {}
    clusters = window_keys(gvalid) if cluster_col else None
    codes = cluster_codes(clusters, len(gvalid))
    k = int(codes.max()) + 1 if len(codes) else 0
    out["n_windows"] = k
    sums: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for m in SUMMARY_METRICS:
        if m in RATIO_METRICS:
            num_col, den_col = RATIO_METRICS[m]
            sums[m] = cluster_ratio_sums(
                numeric_column(gvalid, num_col).to_numpy(),
                numeric_column(gvalid, den_col).to_numpy(),
                codes,
                k,
            )
        else:
            sums[m] = cluster_sums(numeric_column(gvalid, m).to_numpy(), codes, k)
    parts = {m: (num, den) for m, (num, den) in sums.items() if (den > 0).sum() >= 2}
    reps = bootstrap_ratio_replicates(parts, k, n_boot=n_boot, rng=rng) if parts else {}
    per_window: dict[str, np.ndarray] = {}
    for m, (num, den) in sums.items():
        with np.errstate(invalid="ignore", divide="ignore"):
            per_window[m] = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
        finite = per_window[m][np.isfinite(per_window[m])]
        out[f"{m}_mean"] = float(num.sum() / den.sum()) if den.sum() > 0 else math.nan
        out[f"{m}_median"] = float(np.median(finite)) if finite.size else math.nan
        lo, hi = percentile_ci(reps[m], ci_level) if m in reps else (math.nan, math.nan)
        out[f"{m}_ci_low"], out[f"{m}_ci_high"] = lo, hi
        out[f"{m}_cv"] = cv(per_window[m])
    _widen_for_idle_uncertainty(out, gvalid, ci_level)
    lat = per_window["latency_s"][np.isfinite(per_window["latency_s"])]
    out["latency_p50_s"] = float(np.percentile(lat, 50)) if lat.size else math.nan
    out["latency_p95_s"] = float(np.percentile(lat, 95)) if lat.size else math.nan
    energy = numeric_column(gvalid, "energy_j").dropna()
    out["energy_total_j"] = float(energy.sum()) if len(energy) else math.nan
    clock = numeric_column(gvalid, "sm_clock_mean_mhz")
    out["sm_clock_mean_mhz"] = float(clock.mean()) if clock.notna().any() else math.nan
    temp = numeric_column(gvalid, "temperature_c")
    out["temperature_max_c"] = float(temp.max()) if temp.notna().any() else math.nan
    return out


def idle_se_per_token(requests: pd.DataFrame) -> float:
    """Standard error of a configuration's dynamic J/token that comes from its idle baselines.

    One baseline (a point's before/after idle reading) is shared by all the requests measured
    at that point, so its error moves them together: per baseline, the requests'
    ``dynamic_energy_se_j`` add up linearly; independent baselines add in quadrature."""
    se = numeric_column(requests, "dynamic_energy_se_j")
    tokens = numeric_column(requests, "output_tokens")
    use = se.notna() & tokens.notna() & (tokens > 0)
    if not use.any() or tokens[use].sum() <= 0:
        return math.nan
    ids = ["run_id", "idle_power_before_w", "idle_power_after_w"]
    per_baseline = se[use].groupby([requests.loc[use, c] for c in ids], dropna=False).sum()
    return float(np.sqrt((per_baseline**2).sum()) / tokens[use].sum())


def _widen_for_idle_uncertainty(
    out: dict[str, float], gvalid: pd.DataFrame, ci_level: float
) -> None:
    """The bootstrap resamples windows but not the baselines they share: add the baselines'
    own uncertainty to the dynamic J/token interval, in quadrature with its half-widths."""
    idle_se = idle_se_per_token(gvalid)
    out["dynamic_j_per_token_idle_se"] = idle_se
    mean = out.get("dynamic_j_per_token_mean", math.nan)
    lo, hi = out.get("dynamic_j_per_token_ci_low"), out.get("dynamic_j_per_token_ci_high")
    if not math.isfinite(idle_se) or lo is None or hi is None or not math.isfinite(mean):
        return
    z = float(stats.norm.ppf(0.5 + ci_level / 2))
    extra = z * idle_se
    if math.isfinite(lo) and math.isfinite(hi):
        out["dynamic_j_per_token_ci_low"] = mean - math.hypot(mean - lo, extra)
        out["dynamic_j_per_token_ci_high"] = mean + math.hypot(hi - mean, extra)


def _quality_block(
    gok: pd.DataFrame,
    qcols: Sequence[str],
    has_ppl: bool,
    *,
    ci_level: float,
    n_boot: int,
    rng: np.random.Generator,
) -> dict[str, float]:
    out: dict[str, float] = {}
    for q in qcols:
        arr = numeric_column(gok, q).to_numpy()
        finite = arr[np.isfinite(arr)]
        out[f"{q}_mean"] = float(finite.mean()) if finite.size else math.nan
        out[f"{q}_n"] = int(finite.size)
        if finite.size >= 2:
            reps = bootstrap_mean_replicates(finite, n_boot=n_boot, rng=rng)
            out[f"{q}_ci_low"], out[f"{q}_ci_high"] = percentile_ci(reps, ci_level)
        else:
            out[f"{q}_ci_low"] = out[f"{q}_ci_high"] = math.nan
    if has_ppl:
        ppl, lo, hi = perplexity_with_ci(
            numeric_column(gok, "ref_nll_sum").to_numpy(),
            numeric_column(gok, "ref_tokens").to_numpy(),
            ci_level=ci_level,
            n_boot=n_boot,
            rng=rng,
        )
        out["perplexity"], out["perplexity_ci_low"], out["perplexity_ci_high"] = ppl, lo, hi
    return out


def perplexity_with_ci(
    nll_sum: np.ndarray,
    ref_tokens: np.ndarray,
    *,
    ci_level: float,
    n_boot: int,
    rng: np.random.Generator,
) -> tuple[float, float, float]:
    """Corpus perplexity ``exp(Σ nll / Σ tokens)`` with a request-resampling percentile CI."""
    nll = np.asarray(nll_sum, dtype=float)
    tok = np.asarray(ref_tokens, dtype=float)
    use = np.isfinite(nll) & np.isfinite(tok) & (tok > 0)
    nll, tok = nll[use], tok[use]
    if tok.sum() <= 0:
        return (math.nan, math.nan, math.nan)
    ppl = float(math.exp(nll.sum() / tok.sum()))
    if use.sum() < 2:
        return (ppl, math.nan, math.nan)
    reps = bootstrap_ratio_replicates({"p": (nll, tok)}, len(nll), n_boot=n_boot, rng=rng)["p"]
    lo, hi = percentile_ci(reps, ci_level)
    return (ppl, float(math.exp(lo)), float(math.exp(hi)))
