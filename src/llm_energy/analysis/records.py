"""Request records → analysis-ready rows: configuration identity, energy kinds, frequency
levels, exclusion reasons and the measurement-window identity (docs/records.md).

A request is *valid* (used for energy, latency and throughput statistics) when its status is
``ok``, its measurement window is trusted, its frequency cap held and no thermal / power
throttling was seen in its window. Quality scores only need ``status == "ok"``: text produced
during a throttled window is still a valid answer.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from llm_energy.record_types import ENERGY_KIND_BY_SOURCE
from llm_energy.records import CONFIG_KEYS

# --- configuration identity -------------------------------------------------------------------

# CONFIG_KEYS (a configuration; gpu_name keeps GPU models apart) comes from the record schema.
#: a configuration minus its frequency: the stratum inside which frequencies are compared
STRATUM_KEYS: tuple[str, ...] = tuple(k for k in CONFIG_KEYS if k != "freq_applied_mhz")
#: request-level analyses: the frequency level of a request, NaN = driver default clocks
FREQ_LEVEL_COL = "freq_level_mhz"

# --- NVML clock event reasons (nvmlClocksEventReason*) -------------------------------------------

CLOCK_EVENT_SW_POWER_CAP = 0x4
CLOCK_EVENT_HW_SLOWDOWN = 0x8
CLOCK_EVENT_SW_THERMAL = 0x20
CLOCK_EVENT_HW_THERMAL = 0x40
CLOCK_EVENT_HW_POWER_BRAKE = 0x80
#: thermal / power reasons that make a window's clocks differ from the cap under study
THROTTLE_MASK = (
    CLOCK_EVENT_SW_POWER_CAP
    | CLOCK_EVENT_HW_SLOWDOWN
    | CLOCK_EVENT_SW_THERMAL
    | CLOCK_EVENT_HW_THERMAL
    | CLOCK_EVENT_HW_POWER_BRAKE
)

# --- exclusion reasons -----------------------------------------------------------------------------

#: code → text; the code names the summary's ``excluded_<code>`` count column
EXCLUSION_REASONS: dict[str, str] = {
    "status": "status not ok",
    "untrusted": "window not trusted",
    "cap_not_held": "cap not held",
    "throttled": "throttled",
}

#: preference when one number must be chosen from mixed kinds (they are never averaged)
ENERGY_KIND_PRIORITY: tuple[str, ...] = ("measured", "estimated", "simulated", "unknown")

#: per-request metrics summarised for every configuration (name → unit-bearing column)
#: infer.phases: a request's share of its prefill window and the rest (docs/records.md)
PHASE_METRICS: tuple[str, ...] = tuple(
    "prefill_energy_j decode_energy_j prefill_time_s decode_time_s".split()
)
METRICS: tuple[str, ...] = (
    *"j_per_token tokens_per_s latency_s ttft_s tpot_s avg_power_w energy_j dynamic_energy_j "
    "edp_j_s ed2p_j_s2".split(),
    *PHASE_METRICS,
)


def numeric_column(requests: pd.DataFrame, col: str) -> pd.Series:
    """Column as float, NaN where null (the schema guarantees the column exists)."""
    values = pd.to_numeric(requests[col], errors="coerce")
    return values if values.dtype == "float64" else values.astype("float64")  # astype: a copy


def is_missing(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, float | np.floating):
        return math.isnan(float(value))
    return False


def _explicit_false(value: Any) -> bool:
    """True only for an explicit false flag; missing (null) means "not applicable"."""
    return not is_missing(value) and not bool(value)


def parse_clock_event_reasons(value: Any) -> int | None:
    """The NVML clock event reason bitmask as the runner writes it: an int, or None when not read
    (the record schema refuses any other format)."""
    return None if is_missing(value) else int(value)


def energy_kinds(requests: pd.DataFrame) -> pd.Series:
    """``energy_kind`` per row; derived from ``energy_source`` when null, else ``"unknown"``."""
    kind = pd.Series("unknown", index=requests.index, dtype="object")
    derived = requests["energy_source"].map(
        lambda s: ENERGY_KIND_BY_SOURCE.get(str(s).lower()) if not is_missing(s) else None
    )
    kind = kind.where(derived.isna(), derived)
    given = requests["energy_kind"].astype("object")
    kind = kind.where(given.isna(), given)
    # Failure records (status oom/error) carry no energy source: they inherit their run's kind
    # (or the only kind present) so that a failed configuration joins the right group.
    unknown = kind == "unknown"
    if unknown.any() and (~unknown).any():
        run_kinds = (
            pd.DataFrame({"run": requests["run_id"].astype("object"), "kind": kind})[~unknown]
            .groupby("run", dropna=False)["kind"]
            .agg(lambda s: s.iloc[0] if s.nunique() == 1 else None)
        )
        inherited = requests["run_id"].astype("object").map(run_kinds)
        kind = kind.where(~unknown | inherited.isna(), inherited)
    return kind.astype("object")


def freq_levels(requests: pd.DataFrame) -> pd.Series:
    """Frequency level of each request in MHz; NaN marks default clocks (``freq_requested_mhz``
    null). A capped request without an applied value falls back to the requested one."""
    applied = numeric_column(requests, "freq_applied_mhz")
    requested = numeric_column(requests, "freq_requested_mhz")
    default = requested.isna()
    level = applied.where(applied.notna(), requested).where(~default)
    return level.rename(FREQ_LEVEL_COL)


def freq_label(freq_mhz: Any) -> str:
    """``"1200 MHz"`` or ``"default"`` for the driver-default group."""
    if is_missing(freq_mhz):
        return "default"
    value = float(freq_mhz)
    return f"{value:.0f} MHz" if value.is_integer() else f"{value:g} MHz"


def key_str(key: Any) -> str:
    """Stable text of a group key (for seeding and messages)."""
    parts = key if isinstance(key, tuple) else (key,)
    return "|".join("nan" if is_missing(p) else str(p) for p in parts)


def prepare_requests(requests: pd.DataFrame) -> pd.DataFrame:
    """Copy of schema-typed records with ``energy_kind`` filled, the derived metrics
    (J/token, EDP, ED²P, frequency level) added and every metric as float."""
    df = requests.copy()
    df["energy_kind"] = energy_kinds(df)
    energy = numeric_column(df, "energy_j")
    out_tokens = numeric_column(df, "output_tokens")
    latency = numeric_column(df, "latency_s")
    df["j_per_token"] = energy / out_tokens.where(out_tokens > 0)
    df["edp_j_s"] = energy * latency
    df["ed2p_j_s2"] = energy * latency**2
    for metric in METRICS:
        df[metric] = numeric_column(df, metric)
    df["freq_applied_mhz"] = numeric_column(df, "freq_applied_mhz")
    df[FREQ_LEVEL_COL] = freq_levels(df)
    return df


def exclusion_flags(requests: pd.DataFrame) -> pd.DataFrame:
    """Boolean frame, one column per code of :data:`EXCLUSION_REASONS`."""
    idx = requests.index
    flags = pd.DataFrame(False, index=idx, columns=list(EXCLUSION_REASONS), dtype=bool)
    flags["status"] = (requests["status"].astype("object") != "ok").to_numpy()
    flags["untrusted"] = [_explicit_false(v) for v in requests["window_trusted"].tolist()]
    flags["cap_not_held"] = [_explicit_false(v) for v in requests["cap_held"].tolist()]
    default = [is_missing(v) for v in requests["freq_requested_mhz"].tolist()]
    flags["throttled"] = [
        bool((parse_clock_event_reasons(v) or 0) & throttle_mask(is_default))
        for v, is_default in zip(requests["clock_event_reasons"].tolist(), default, strict=True)
    ]
    return flags


def throttle_mask(default_clocks: bool) -> int:
    """Reasons that exclude a window. At default clocks the software power cap is part of how the
    driver runs the chip (the baseline itself), so excluding those windows would keep only the
    baseline's cheapest windows and bias savings; under a cap it means the cap was not the limit."""
    return THROTTLE_MASK & ~CLOCK_EVENT_SW_POWER_CAP if default_clocks else THROTTLE_MASK


def valid_mask(requests: pd.DataFrame) -> pd.Series:
    """True for requests usable for energy / timing statistics."""
    return ~exclusion_flags(requests).any(axis=1)


def cluster_ids(frame: pd.DataFrame, cluster_col: str | None = "window_id") -> pd.Series | None:
    """Measurement-window identity per row (``run_id`` + ``window_id``: window ids restart per
    run), or None when no window column is asked for."""
    if not cluster_col:
        return None
    window = frame[cluster_col].astype("object")
    run = frame["run_id"].astype("object")
    ids = [
        None if is_missing(w) else f"{'' if is_missing(r) else r}:{w}"
        for r, w in zip(run.tolist(), window.tolist(), strict=True)
    ]
    return pd.Series(ids, index=frame.index, dtype="object")


#: ``quality_*`` columns that are flags, not scores
NON_SCORE_QUALITY_COLUMNS: frozenset[str] = frozenset({"quality_applicable"})


def quality_columns(requests: pd.DataFrame) -> list[str]:
    """Per-request quality score columns: ``quality_*`` except flags and boolean columns."""
    return sorted(
        str(c)
        for c in requests.columns
        if str(c).startswith("quality_")
        and c not in NON_SCORE_QUALITY_COLUMNS
        and not pd.api.types.is_bool_dtype(requests[c])
    )


def unique_text(series: pd.Series) -> str:
    vals = sorted({str(v) for v in series.tolist() if not is_missing(v)})
    return ",".join(vals)
