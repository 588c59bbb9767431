"""Headline numbers for ``reports/metrics.json`` (a DVC metrics file) and JSON helpers.

Pure: DataFrames in, JSON-ready dicts out. Energy figures use one energy kind only, and J/token
is Σ energy / Σ tokens over the valid requests of that kind (never a mean of per-request ratios).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from llm_energy.analysis.records import (
    ENERGY_KIND_PRIORITY,
    FREQ_LEVEL_COL,
    is_missing,
    numeric_column,
    prepare_requests,
    quality_columns,
    status_ok_mask,
    unique_text,
    valid_mask,
)
from llm_energy.analysis.windows import window_table


def json_clean(value: Any) -> Any:
    """Numpy scalars → Python, NaN/inf → None, recursively (JSON-serialisable)."""
    if isinstance(value, Mapping):
        return {str(k): json_clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_clean(v) for v in value]
    if isinstance(value, np.bool_ | bool):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        f = float(value)
        return f if math.isfinite(f) else None
    if is_missing(value):
        return None
    return value


def choose_energy_kind(kinds: Iterable[Any]) -> str | None:
    present = {str(k) for k in kinds if not is_missing(k)}
    for kind in ENERGY_KIND_PRIORITY:
        if kind in present:
            return kind
    return sorted(present)[0] if present else None


def _single_or_mixed(series: pd.Series) -> Any:
    vals = pd.unique(series.dropna())
    if len(vals) == 0:
        return None
    if len(vals) == 1:
        return vals[0]
    return "mixed"


def _finite_mean(series: pd.Series) -> float:
    arr = pd.to_numeric(series, errors="coerce").to_numpy(dtype=float)
    arr = arr[np.isfinite(arr)]
    return float(arr.mean()) if arr.size else math.nan


def headline_metrics(summary: pd.DataFrame, requests: pd.DataFrame) -> dict[str, Any]:
    """Nested, JSON-ready dict for ``reports/metrics.json`` (over valid requests).

    Keys: ``energy.{kind, source, j_per_token, j_per_token_ci_low, j_per_token_ci_high,
    j_per_token_pooled, dynamic_j_per_token, total_j, avg_power_w, edp_j_s}``,
    ``perf.{tokens_per_s, latency_p50_s, latency_p95_s, latency_mean_s, ttft_s, tpot_s}``,
    ``gpu.{name, freq_applied_mhz, freq_requested_mhz, freq_mode, n_freq_levels,
    sm_clock_mean_mhz, temperature_max_c}``, ``quality.{<name>..., perplexity}``,
    ``counts.{n_requests, n_valid, n_windows, n_excluded, n_configs}``,
    ``config.{model, task, engine, batch_size, input_tokens_target,
    output_tokens_target}`` ("mixed" when several), ``by_clock`` (per configuration and clock,
    see :func:`by_clock_metrics`). ``gpu.freq_applied_mhz`` is null at driver
    default clocks and when several levels were run (``freq_mode`` = default|capped|mixed).
    Energy figures use one energy kind only (measured > estimated > simulated) and the CI comes
    from the summary when that kind has exactly one configuration. ``j_per_token`` and
    ``dynamic_j_per_token`` are Σ energy / Σ tokens (``j_per_token_pooled`` is the same number,
    kept for older readers); latency percentiles are over measurement windows. ``gpu.name`` is
    the GPU model (``gpu_name`` stamped by aggregate from run.json; "mixed" when several).
    """
    df = prepare_requests(requests)
    valid = valid_mask(df)
    ok = status_ok_mask(df)
    dv = df[valid]
    kind = choose_energy_kind(dv["energy_kind"]) or choose_energy_kind(df["energy_kind"])
    de = dv[dv["energy_kind"] == kind] if kind is not None else dv.iloc[0:0]
    energy: dict[str, Any] = {"kind": kind}
    kinds_present = sorted({str(k) for k in dv["energy_kind"].dropna()})
    if len(kinds_present) > 1:
        energy["kinds_present"] = ",".join(kinds_present)
    energy["source"] = unique_text(de["energy_source"])
    energy["j_per_token_ci_low"] = math.nan
    energy["j_per_token_ci_high"] = math.nan
    if summary is not None and not summary.empty:
        srows = summary[(summary["energy_kind"] == kind) & (summary["n"] > 0)]
        if len(srows) == 1:
            energy["j_per_token_ci_low"] = srows["j_per_token_ci_low"].iloc[0]
            energy["j_per_token_ci_high"] = srows["j_per_token_ci_high"].iloc[0]
    e_sum = de["energy_j"].sum(min_count=1)
    tok = numeric_column(de, "output_tokens")
    tok_sum = tok[de["energy_j"].notna()].sum(min_count=1)
    energy["j_per_token"] = (
        float(e_sum / tok_sum) if pd.notna(tok_sum) and tok_sum > 0 else math.nan
    )
    energy["j_per_token_pooled"] = energy["j_per_token"]
    dyn = numeric_column(de, "dynamic_energy_j")
    dyn_use = dyn.notna() & (tok > 0)
    energy["dynamic_j_per_token"] = (
        float(dyn[dyn_use].sum() / tok[dyn_use].sum()) if dyn_use.any() else math.nan
    )
    energy["total_j"] = float(e_sum) if pd.notna(e_sum) else math.nan
    energy["avg_power_w"] = _finite_mean(de["avg_power_w"])
    energy["edp_j_s"] = _finite_mean(de["edp_j_s"])

    windows = window_table(dv, prepared=True, valid_only=False)
    lat = pd.to_numeric(windows["latency_s"], errors="coerce").dropna().to_numpy(dtype=float)
    perf = {
        "tokens_per_s": _finite_mean(dv["tokens_per_s"]),
        "latency_p50_s": float(np.percentile(lat, 50)) if lat.size else math.nan,
        "latency_p95_s": float(np.percentile(lat, 95)) if lat.size else math.nan,
        "latency_mean_s": float(lat.mean()) if lat.size else math.nan,
        "ttft_s": _finite_mean(dv["ttft_s"]),
        "tpot_s": _finite_mean(dv["tpot_s"]),
    }

    levels = dv[FREQ_LEVEL_COL] if not dv.empty else df[FREQ_LEVEL_COL]
    distinct = pd.unique(levels)
    n_levels = len(distinct)
    if n_levels == 1 and is_missing(distinct[0]):
        mode, freq = "default", None
    elif n_levels == 1:
        mode, freq = "capped", float(distinct[0])
    else:
        mode, freq = ("mixed" if n_levels > 1 else "default"), None
    requested = numeric_column(dv, "freq_requested_mhz").dropna().unique()
    gpu = {
        "name": _single_or_mixed(df["gpu_name"]),
        "freq_applied_mhz": freq,
        "freq_requested_mhz": float(requested[0])
        if len(requested) == 1 and mode == "capped"
        else None,
        "freq_mode": mode,
        "n_freq_levels": int(n_levels),
        "sm_clock_mean_mhz": _finite_mean(numeric_column(dv, "sm_clock_mean_mhz")),
        "temperature_max_c": float(numeric_column(dv, "temperature_c").max())
        if numeric_column(dv, "temperature_c").notna().any()
        else math.nan,
    }

    quality: dict[str, Any] = {}
    dok = df[ok]
    for q in quality_columns(df):
        quality[q.removeprefix("quality_")] = _finite_mean(dok[q])
    if dok["ref_tokens"].notna().any():
        nll = numeric_column(dok, "ref_nll_sum")
        rt = numeric_column(dok, "ref_tokens")
        use = nll.notna() & rt.notna() & (rt > 0)
        quality["perplexity"] = (
            float(math.exp(nll[use].sum() / rt[use].sum())) if use.any() else math.nan
        )

    counts = {
        "n_requests": len(df),
        "n_valid": int(valid.sum()),
        "n_windows": len(windows),
        "n_excluded": int((~valid).sum()),
        "n_configs": len(summary) if summary is not None else 0,
    }
    config = {
        k: _single_or_mixed(df[k])
        for k in (
            "model",
            "task",
            "engine",
            "batch_size",
            "input_tokens_target",
            "output_tokens_target",
        )
    }
    return json_clean(
        {
            "energy": energy,
            "perf": perf,
            "gpu": gpu,
            "quality": quality,
            "counts": counts,
            "config": config,
            "by_clock": by_clock_metrics(summary, gpu["name"]),
        }
    )


#: per-configuration summary column → ``by_clock`` field (``llm-energy compare`` reads these)
BY_CLOCK_FIELDS: dict[str, str] = {
    "model": "model",
    "task": "task",
    "engine": "engine",
    "batch_size": "batch_size",
    "input_tokens_target": "input_tokens_target",
    "output_tokens_target": "output_tokens_target",
    "freq_applied_mhz": "freq_mhz",
    "default_clocks": "default_clocks",
    "energy_kind": "energy_kind",
    "energy_source": "energy_source",
    "n": "n",
    "j_per_token_mean": "j_per_token",
    "j_per_token_ci_low": "j_per_token_ci_low",
    "j_per_token_ci_high": "j_per_token_ci_high",
    "latency_p50_s": "latency_p50_s",
}


def by_clock_metrics(summary: pd.DataFrame | None, device: Any) -> dict[str, dict[str, Any]]:
    """One entry per (configuration, clock) of the summary: ``{"c00": {model, task, …, freq_mhz,
    default_clocks, energy_kind, energy_source, device, n, j_per_token, j_per_token_ci_low,
    j_per_token_ci_high, latency_p50_s}}``.

    A dict keyed ``c00``, ``c01``… rather than a list, and nulls left out: ``dvc exp show
    --json`` drops lists and null values from metrics files. ``j_per_token`` is the window mean
    of the summary, so it matches its interval over items.
    """
    out: dict[str, dict[str, Any]] = {}
    if summary is None or summary.empty:
        return out
    rows = summary[pd.to_numeric(summary.get("n"), errors="coerce").fillna(0) > 0]
    for i, row in enumerate(rows.to_dict("records")):
        entry = {new: row.get(old) for old, new in BY_CLOCK_FIELDS.items() if old in row}
        entry["device"] = device
        clean = json_clean(entry)
        out[f"c{i:02d}"] = {k: v for k, v in clean.items() if v is not None}
    return out


def flatten_dict(data: Mapping[str, Any], sep: str = ".", prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` → ``{"a.b": 1}``."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{sep}{key}" if prefix else str(key)
        if isinstance(value, Mapping) and value:
            out.update(flatten_dict(value, sep=sep, prefix=name))
        else:
            out[name] = value
    return out
