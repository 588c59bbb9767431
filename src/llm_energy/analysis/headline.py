"""Headline numbers for ``reports/metrics.json`` (docs/statistics.md) and JSON helpers."""

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
    unique_text,
    valid_mask,
)
from llm_energy.analysis.summary import summarize
from llm_energy.analysis.windows import window_keys


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


JPT_CI = ("j_per_token_ci_low", "j_per_token_ci_high")
#: summary column → field of a task's entry in metrics.json, the column without ``_mean`` (plus
#: its ``quality_<name>`` scores); decode shares (infer.phases): Σ decode / Σ total over its items
TASK_FIELDS: dict[str, str] = {
    c: c.removesuffix("_mean")
    for c in (
        "n_items j_per_token_mean j_per_token_ci_low j_per_token_ci_high latency_p50_s "
        "latency_p50_ci_low latency_p50_ci_high tokens_per_s_mean dynamic_j_per_token_mean "
        "perplexity decode_share_energy_mean decode_share_energy_ci_low "
        "decode_share_energy_ci_high decode_share_time_mean"
    ).split()
}


def _entry(row: Mapping[str, Any], fields: Iterable[str] | None = None) -> dict[str, Any]:
    """A row of :func:`summarize` as a metrics.json entry (only ``fields``; nulls left out)."""
    entry = {new: row.get(old) for old, new in TASK_FIELDS.items()}
    entry |= {k[:-5]: v for k, v in row.items() if k.startswith("quality_") and k.endswith("_mean")}
    keep = set(fields or entry)
    return {k: v for k, v in json_clean(entry).items() if v is not None and k in keep}


def headline_metrics(
    summary: pd.DataFrame, requests: pd.DataFrame, *, ci_level: float
) -> dict[str, Any]:
    """Nested, JSON-ready dict for ``reports/metrics.json`` over valid requests of one energy
    kind (measured > estimated > simulated); ``by_task`` is :func:`summarize` grouped by task
    (docs/statistics.md). ``gpu.freq_applied_mhz`` is null at default clocks and when several
    levels ran (``freq_mode`` = default|capped|mixed); "mixed" marks several values.
    """
    df = prepare_requests(requests)
    valid = valid_mask(df)
    dv = df[valid]
    kind = choose_energy_kind(dv["energy_kind"]) or choose_energy_kind(df["energy_kind"])
    de = df[df["energy_kind"] == kind] if kind is not None else df.iloc[0:0]
    energy: dict[str, Any] = {"kind": kind}
    kinds_present = sorted({str(k) for k in dv["energy_kind"].dropna()})
    if len(kinds_present) > 1:
        energy["kinds_present"] = ",".join(kinds_present)
    energy["source"] = unique_text(de["energy_source"])
    energy["total_j"] = float(dv.loc[dv["energy_kind"] == kind, "energy_j"].sum())
    by_task = {
        str(row["task"]): _entry(row)
        for row in summarize(de, ci_level=ci_level, keys=("task",)).to_dict("records")
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

    counts = {
        "n_requests": len(df),
        "n_valid": int(valid.sum()),
        "n_windows": int(window_keys(dv).nunique()),  # window_table's rows, without the table
        "n_excluded": int((~valid).sum()),
        "n_configs": len(summary) if summary is not None else 0,
    }
    config = {
        k: _single_or_mixed(df[k])
        for k in "model task engine batch_size input_tokens_target output_tokens_target".split()
    }
    out: dict[str, Any] = {"by_task": by_task}
    if len(by_task) > 1:  # Σ/Σ over every task's items, only with its interval
        (all_tasks,) = summarize(de, ci_level=ci_level, keys=("energy_kind",)).to_dict("records")
        pooled = _entry(all_tasks, ("n_items", "j_per_token", *JPT_CI))
        if all(k in pooled for k in JPT_CI):
            out["pooled_over_tasks"] = pooled
    out |= {"energy": energy, "gpu": gpu, "counts": counts, "config": config}
    return json_clean(out | {"by_clock": by_clock_metrics(summary, gpu["name"])})


#: per-configuration summary column → ``by_clock`` field (``llm-energy compare`` reads these):
#: the column itself but ``freq_mhz`` and ``j_per_token``
BY_CLOCK_FIELDS: dict[str, str] = {
    c: {"freq_applied_mhz": "freq_mhz", "j_per_token_mean": "j_per_token"}.get(c, c)
    for c in (
        "model task engine batch_size input_tokens_target output_tokens_target freq_applied_mhz "
        "default_clocks energy_kind energy_source n j_per_token_mean j_per_token_ci_low "
        "j_per_token_ci_high latency_p50_s"
    ).split()
}


def by_clock_metrics(summary: pd.DataFrame | None, device: Any) -> dict[str, dict[str, Any]]:
    """One entry per (configuration, clock) of the summary (:data:`BY_CLOCK_FIELDS` and
    ``device``), keyed ``c00``, ``c01``… with nulls left out: ``dvc exp show --json`` drops
    lists and null values from metrics files."""
    out: dict[str, dict[str, Any]] = {}
    if summary is None or summary.empty:
        return out
    used = pd.to_numeric(summary.get("n"), errors="coerce").fillna(0) > 0
    rows = summary.loc[used, [c for c in BY_CLOCK_FIELDS if c in summary]]  # to_dict: cell by cell
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
