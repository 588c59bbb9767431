"""Per-configuration summary of the records (summary.csv), over items: columns in
docs/records.md, what each estimates in docs/statistics.md. J/token is Σ energy / Σ tokens,
never a mean of per-request ratios (which over-weights a batch's short answers)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from llm_energy.analysis.estimators import (
    Estimate,
    mean_estimate,
    median_estimate,
    ratio_estimate,
    with_extra_se,
)
from llm_energy.analysis.records import (
    CONFIG_KEYS,
    EXCLUSION_REASONS,
    FREQ_LEVEL_COL,
    METRICS,
    exclusion_flags,
    is_missing,
    key_str,
    numeric_column,
    prepare_requests,
    quality_columns,
    unique_text,
)
from llm_energy.analysis.windows import RATIO_METRICS, item_table, window_table
from llm_energy.records import OTHER_KNOB_KEYS

STAT_SUFFIXES: tuple[str, ...] = ("mean", "median", "ci_low", "ci_high", "cv")
#: metrics with a ``<m>_<suffix>`` block in summary.csv
SUMMARY_METRICS: tuple[str, ...] = (
    *METRICS,
    "dynamic_j_per_token",
    "decode_share_energy",
    "decode_share_time",
)
#: what every ``<m>_ci_*`` interval is, for the table, the report and docs/statistics.md
CI_METHOD = "t over items (delta method for Σ/Σ ratios; log scale for positive quantities)"


def summarize(
    requests: pd.DataFrame, *, ci_level: float, keys: Sequence[str] = CONFIG_KEYS
) -> pd.DataFrame:
    """One row per configuration (``keys``: :data:`CONFIG_KEYS`, or coarser groups such as the
    task, as metrics.json uses), columns :func:`_summary_columns` (docs/records.md). All-failed
    configurations stay (``n == 0``, NaN metrics); default-clock requests are their own group
    (NaN ``freq_applied_mhz``), never merged with a cap at the same clock."""
    df = prepare_requests(requests)
    df["freq_applied_mhz"] = df[FREQ_LEVEL_COL]
    flags = exclusion_flags(df)
    valid = ~flags.any(axis=1)
    ok = ~flags["status"]
    qcols = quality_columns(df)
    has_ppl = bool(df["ref_tokens"].notna().any())
    rows: list[dict[str, Any]] = []
    if df.empty:
        return pd.DataFrame(columns=_summary_columns(keys, qcols, has_ppl))
    # one window table for every configuration (its keys carry the frequency level)
    all_windows = window_table(df[valid.to_numpy()], prepared=True, valid_only=False)
    windows_of = {
        key_str(k): w for k, w in all_windows.groupby(list(keys), dropna=False, sort=False)
    }
    empty_windows = all_windows.iloc[0:0]
    grouped = df.groupby(list(keys), dropna=False, sort=True)
    for key, group in grouped:
        key_t = key if isinstance(key, tuple) else (key,)
        row: dict[str, Any] = dict(zip(keys, key_t, strict=True))
        gidx = group.index
        gvalid = group[valid.loc[gidx].to_numpy()]
        gflags = flags.loc[gidx]
        requested = numeric_column(group, "freq_requested_mhz").dropna().unique()
        row["freq_requested_mhz"] = float(requested[0]) if len(requested) == 1 else math.nan
        row["default_clocks"] = bool(group[FREQ_LEVEL_COL].isna().all()) and all(
            is_missing(row.get(k)) for k in OTHER_KNOB_KEYS
        )
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
        notes: dict[str, str] = {}
        windows = windows_of.get(key_str(key_t), empty_windows)
        row.update(_metric_block(gvalid, windows, ci_level, notes))
        gok = group[ok.loc[gidx].to_numpy()]
        row.update(_quality_block(gok, qcols, has_ppl, ci_level, notes))
        row["interval_note"] = interval_note(notes) or None
        row["ci_level"] = ci_level
        row["ci_method"] = CI_METHOD
        rows.append(row)
    out = pd.DataFrame(rows)
    return out.reindex(columns=_summary_columns(keys, qcols, has_ppl)).reset_index(drop=True)


def interval_note(notes: dict[str, str]) -> str:
    """One text for a row's missing intervals (``notes``: metric → its note, "" when its
    interval is there): the reason alone when every interval shares it, else the metrics named
    by reason."""
    missing = {name: why for name, why in notes.items() if why}
    reasons = sorted(set(missing.values()))
    if not reasons:
        return ""
    if len(missing) == len(notes) and len(reasons) == 1:
        return reasons[0]
    by_reason = {why: [n for n, w in missing.items() if w == why] for why in reasons}
    return "; ".join(f"{', '.join(names)}: {why}" for why, names in by_reason.items())


def _summary_columns(keys: Sequence[str], qcols: Sequence[str], has_ppl: bool) -> list[str]:
    cols = [
        *keys,
        "freq_requested_mhz",
        "default_clocks",
        "n_total",
        "n",
        "n_excluded",
        *(f"excluded_{c}" for c in EXCLUSION_REASONS),
        "excluded_reasons",
        "energy_source",
        "n_windows",
        "n_items",
    ]
    for m in SUMMARY_METRICS:
        cols.extend(f"{m}_{s}" for s in STAT_SUFFIXES)
    cols.extend(
        (
            "latency_p50_s latency_p50_ci_low latency_p50_ci_high latency_p50_ci_level "
            "latency_p95_s energy_total_j dynamic_j_per_token_idle_se dynamic_j_per_token_idle_df "
            "sm_clock_mean_mhz temperature_max_c"
        ).split()
    )
    for q in qcols:
        cols.extend([f"{q}_mean", f"{q}_ci_low", f"{q}_ci_high", f"{q}_n"])
    if has_ppl:
        cols.extend(["perplexity", "perplexity_ci_low", "perplexity_ci_high"])
    cols.extend(["interval_note", "ci_level", "ci_method"])
    return cols


def _put(
    out: dict[str, Any], name: str, est: Estimate, notes: dict[str, str], measured: bool
) -> None:
    """A metric's estimate into the row; its note only when the metric was measured at all (a
    metric nobody recorded, e.g. TTFT with ``infer.measure_ttft`` off, needs no excuse)."""
    out[f"{name}_mean"] = est.value
    out[f"{name}_ci_low"], out[f"{name}_ci_high"] = est.ci_low, est.ci_high
    if measured:
        notes[name] = est.note


def _cv(values: np.ndarray) -> float:
    """Coefficient of variation over items (sample SD / |mean|); NaN below 2 items."""
    finite = values[np.isfinite(values)]
    if finite.size < 2 or finite.mean() == 0:
        return math.nan
    return float(finite.std(ddof=1) / abs(finite.mean()))


def _metric_block(
    gvalid: pd.DataFrame, windows: pd.DataFrame, ci_level: float, notes: dict[str, str]
) -> dict[str, Any]:
    items = item_table(windows, [])
    out: dict[str, Any] = {"n_windows": len(windows), "n_items": len(items)}
    for m in SUMMARY_METRICS:
        values = items[m].to_numpy(dtype=float) if m in items else np.array([])
        if m in RATIO_METRICS:
            est = ratio_estimate(
                items[f"{m}_num"].to_numpy(dtype=float),
                items[f"{m}_den"].to_numpy(dtype=float),
                level=ci_level,
            )
        else:
            est = mean_estimate(values[np.isfinite(values)], level=ci_level)
        if m == "dynamic_j_per_token":
            idle_se, idle_df = idle_se_per_token(gvalid)
            out["dynamic_j_per_token_idle_se"] = idle_se
            out["dynamic_j_per_token_idle_df"] = idle_df
            est = with_extra_se(est, idle_se, idle_df)
        source = RATIO_METRICS[m][0] if m in RATIO_METRICS else m  # zero tokens: say so
        _put(out, m, est, notes, bool(np.isfinite(items[source].to_numpy(dtype=float)).any()))
        finite = values[np.isfinite(values)]
        out[f"{m}_median"] = float(np.median(finite)) if finite.size else math.nan
        out[f"{m}_cv"] = _cv(values)
    lat = items["latency_s"].to_numpy(dtype=float) if len(items) else np.array([])
    p50 = median_estimate(lat, level=ci_level)
    out["latency_p50_s"] = p50.value
    out["latency_p50_ci_low"], out["latency_p50_ci_high"] = p50.ci_low, p50.ci_high
    out["latency_p50_ci_level"] = p50.level if math.isfinite(p50.ci_low) else math.nan
    if lat.size:
        notes["latency_p50"] = p50.note
    finite_lat = lat[np.isfinite(lat)]
    out["latency_p95_s"] = float(np.percentile(finite_lat, 95)) if finite_lat.size else math.nan
    energy = numeric_column(gvalid, "energy_j").dropna()
    out["energy_total_j"] = float(energy.sum()) if len(energy) else math.nan
    clock = numeric_column(gvalid, "sm_clock_mean_mhz")
    out["sm_clock_mean_mhz"] = float(clock.mean()) if clock.notna().any() else math.nan
    temp = numeric_column(gvalid, "temperature_c")
    out["temperature_max_c"] = float(temp.max()) if temp.notna().any() else math.nan
    return out


def idle_se_per_token(requests: pd.DataFrame) -> tuple[float, float]:
    """(standard error, degrees of freedom) of a configuration's dynamic J/token from its idle
    baselines. A baseline moves every request of its point together, so per baseline the
    requests' ``dynamic_energy_se_j`` add linearly; baselines add in quadrature, their df
    (``idle_power_df``; 1 without it: a before/after pair) by Welch–Satterthwaite."""
    se = numeric_column(requests, "dynamic_energy_se_j")
    tokens = numeric_column(requests, "output_tokens")
    use = se.notna() & tokens.notna() & (tokens > 0)
    if not use.any() or tokens[use].sum() <= 0:
        return math.nan, math.nan
    ids = ["run_id", "idle_power_before_w", "idle_power_after_w"]
    df_col = numeric_column(requests, "idle_power_df").fillna(1.0).clip(lower=1.0)
    keys = [requests.loc[use, c] for c in ids]
    per_baseline = se[use].groupby(keys, dropna=False).sum()
    df_baseline = df_col[use].groupby(keys, dropna=False).min()
    total_var = float((per_baseline**2).sum())
    if total_var <= 0:
        return 0.0, math.nan
    denom = float(((per_baseline**4) / df_baseline).sum())
    return math.sqrt(total_var) / float(tokens[use].sum()), total_var**2 / denom


def _quality_block(
    gok: pd.DataFrame, qcols: Sequence[str], has_ppl: bool, ci_level: float, notes: dict[str, str]
) -> dict[str, Any]:
    """Quality over items: each item's mean score (over its repetitions), then a t interval."""
    out: dict[str, Any] = {}
    item = gok["task"].astype(str) + "|" + gok["item_id"].astype(str)
    for q in qcols:
        per_item = numeric_column(gok, q).groupby(item.to_numpy()).mean().dropna()
        est = mean_estimate(per_item.to_numpy(dtype=float), level=ci_level)
        if est.estimable and (per_item >= 0).all():  # scores cannot go below 0 …
            est = replace(est, ci_low=max(est.ci_low, 0.0))
        if est.estimable and (per_item <= 1).all():  # … nor above 1 when they are shares
            est = replace(est, ci_high=min(est.ci_high, 1.0))
        _put(out, q, est, notes, len(per_item) > 0)
        out[f"{q}_n"] = len(per_item)
    if has_ppl:
        nll = numeric_column(gok, "ref_nll_sum").groupby(item.to_numpy()).sum(min_count=1)
        tok = numeric_column(gok, "ref_tokens").groupby(item.to_numpy()).sum(min_count=1)
        est = ratio_estimate(nll.to_numpy(dtype=float), tok.to_numpy(dtype=float), level=ci_level)
        out["perplexity"] = math.exp(est.value) if math.isfinite(est.value) else math.nan
        out["perplexity_ci_low"] = math.exp(est.ci_low) if est.estimable else math.nan
        out["perplexity_ci_high"] = math.exp(est.ci_high) if est.estimable else math.nan
        if est.note and len(nll.dropna()):
            notes["perplexity"] = est.note
    return out
