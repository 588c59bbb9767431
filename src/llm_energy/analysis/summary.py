"""Per-configuration summary of the per-request records (docs/records.md → summary.csv).

Pure functions: DataFrames in, DataFrames / dicts out. No files, no hardware.

A request is *valid* (used for energy, latency and throughput statistics) when its status is
``ok``, its measurement window is trusted, its frequency cap held and no thermal / power
throttling was seen in its window. Quality scores only need ``status == "ok"``: text produced
during a throttled window is still a valid answer.

Bootstrap confidence intervals resample *measurement windows* (``window_id``) rather than
requests when that column exists: requests of one batch share one energy reading, so
resampling them independently would make the interval too narrow. With one request per
window this is the ordinary request-level percentile bootstrap.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

# --- configuration identity -------------------------------------------------------------------

CONFIG_KEYS: tuple[str, ...] = (
    "model",
    "task",
    "engine",
    "batch_size",
    "input_tokens_target",
    "output_tokens_target",
    "freq_applied_mhz",
    "energy_kind",
)
#: a configuration minus its frequency: the stratum inside which frequencies are compared
STRATUM_KEYS: tuple[str, ...] = tuple(k for k in CONFIG_KEYS if k != "freq_applied_mhz")
#: request-level analyses: the frequency level of a request, NaN = driver default clocks
FREQ_LEVEL_COL = "freq_level_mhz"

# --- NVML clock event reasons (nvmlClocksEventReason*) -------------------------------------------

CLOCK_EVENT_GPU_IDLE = 0x1
CLOCK_EVENT_APPLICATIONS_CLOCKS = 0x2
CLOCK_EVENT_SW_POWER_CAP = 0x4
CLOCK_EVENT_HW_SLOWDOWN = 0x8
CLOCK_EVENT_SYNC_BOOST = 0x10
CLOCK_EVENT_SW_THERMAL = 0x20
CLOCK_EVENT_HW_THERMAL = 0x40
CLOCK_EVENT_HW_POWER_BRAKE = 0x80
CLOCK_EVENT_DISPLAY_CLOCKS = 0x100
#: thermal / power reasons that make a window's clocks differ from the cap under study
THROTTLE_MASK = (
    CLOCK_EVENT_SW_POWER_CAP
    | CLOCK_EVENT_HW_SLOWDOWN
    | CLOCK_EVENT_SW_THERMAL
    | CLOCK_EVENT_HW_THERMAL
    | CLOCK_EVENT_HW_POWER_BRAKE
)
_CLOCK_EVENT_NAMES: dict[str, int] = {
    "sw_power_cap": CLOCK_EVENT_SW_POWER_CAP,
    "hw_slowdown": CLOCK_EVENT_HW_SLOWDOWN,
    "sw_thermal_slowdown": CLOCK_EVENT_SW_THERMAL,
    "sw_thermal": CLOCK_EVENT_SW_THERMAL,
    "hw_thermal_slowdown": CLOCK_EVENT_HW_THERMAL,
    "hw_thermal": CLOCK_EVENT_HW_THERMAL,
    "hw_power_brake_slowdown": CLOCK_EVENT_HW_POWER_BRAKE,
    "hw_power_brake": CLOCK_EVENT_HW_POWER_BRAKE,
}

# --- exclusion reasons -----------------------------------------------------------------------------

#: code → text; the code names the summary's ``excluded_<code>`` count column
EXCLUSION_REASONS: dict[str, str] = {
    "status": "status not ok",
    "untrusted": "window not trusted",
    "cap_not_held": "cap not held",
    "throttled": "throttled",
}

ENERGY_KIND_BY_SOURCE: dict[str, str] = {
    "nvml": "measured",
    "rapl": "measured",
    "codecarbon-estimate": "estimated",
    "codecarbon": "estimated",
    "simulated": "simulated",
}
#: preference when one number must be chosen from mixed kinds (they are never averaged)
ENERGY_KIND_PRIORITY: tuple[str, ...] = ("measured", "estimated", "simulated", "unknown")

#: per-request metrics summarised for every configuration (name → unit-bearing column)
METRICS: tuple[str, ...] = (
    "j_per_token",
    "tokens_per_s",
    "latency_s",
    "ttft_s",
    "tpot_s",
    "avg_power_w",
    "energy_j",
    "dynamic_energy_j",
    "edp_j_s",
    "ed2p_j_s2",
)
STAT_SUFFIXES: tuple[str, ...] = ("mean", "median", "ci_low", "ci_high", "cv")

_BOOT_CHUNK_ELEMENTS = 2_000_000


# --- small helpers ---------------------------------------------------------------------------------


def _numeric(requests: pd.DataFrame, col: str) -> pd.Series:
    """Column as float (NaN where missing / unparseable); an all-NaN series if absent."""
    if col not in requests.columns:
        return pd.Series(np.nan, index=requests.index, dtype="float64")
    return pd.to_numeric(requests[col], errors="coerce").astype("float64")


def _is_missing(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, float | np.floating):
        return math.isnan(float(value))
    return False


def _explicit_false(value: Any) -> bool:
    """True only for an explicit false flag; missing (null) means "not applicable"."""
    if _is_missing(value):
        return False
    if isinstance(value, bool | np.bool_):
        return not bool(value)
    if isinstance(value, int | float | np.integer | np.floating):
        return float(value) == 0.0
    if isinstance(value, str):
        return value.strip().lower() in {"false", "0", "no", "n"}
    return False


def parse_clock_event_reasons(value: Any) -> int | None:
    """NVML clock event reason bitmask from an int, float, ``"0x28"`` string or list of names."""
    if _is_missing(value) or isinstance(value, bool | np.bool_):
        return None
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        try:
            return int(text, 0)
        except ValueError:
            pass
        try:
            return int(float(text))
        except ValueError:
            pass
        return _CLOCK_EVENT_NAMES.get(text.lower().replace(" ", "_"), 0)
    if isinstance(value, Iterable):
        mask = 0
        for item in value:
            bits = parse_clock_event_reasons(item)
            mask |= bits or 0
        return mask
    return None


def energy_kinds(requests: pd.DataFrame) -> pd.Series:
    """``energy_kind`` per row; derived from ``energy_source`` when absent, else ``"unknown"``."""
    kind = pd.Series("unknown", index=requests.index, dtype="object")
    if "energy_source" in requests.columns:
        derived = requests["energy_source"].map(
            lambda s: ENERGY_KIND_BY_SOURCE.get(str(s).lower()) if not _is_missing(s) else None
        )
        kind = kind.where(derived.isna(), derived)
    if "energy_kind" in requests.columns:
        given = requests["energy_kind"].astype("object")
        kind = kind.where(given.isna(), given)
    # Failure records (status oom/error) carry no energy source: they inherit their run's kind
    # (or the only kind present) so that a failed configuration joins the right group.
    unknown = kind == "unknown"
    if unknown.any() and (~unknown).any():
        if "run_id" in requests.columns:
            run_kinds = (
                pd.DataFrame({"run": requests["run_id"].astype("object"), "kind": kind})[~unknown]
                .groupby("run", dropna=False)["kind"]
                .agg(lambda s: s.iloc[0] if s.nunique() == 1 else None)
            )
            inherited = requests["run_id"].astype("object").map(run_kinds)
            kind = kind.where(~unknown | inherited.isna(), inherited)
        else:
            known = kind[~unknown].unique()
            if len(known) == 1:
                kind = kind.where(~unknown, known[0])
    return kind.astype("object")


def freq_levels(requests: pd.DataFrame) -> pd.Series:
    """Frequency level of each request in MHz; NaN marks the driver-default-clock group.

    A request is at default clocks when ``freq_requested_mhz`` is null (or, without that
    column, when ``freq_applied_mhz`` is null). A capped request without an applied value
    falls back to the requested one.
    """
    applied = _numeric(requests, "freq_applied_mhz")
    if "freq_requested_mhz" not in requests.columns:
        return applied.rename(FREQ_LEVEL_COL)
    requested = _numeric(requests, "freq_requested_mhz")
    default = requested.isna()
    level = applied.where(applied.notna(), requested).where(~default)
    return level.rename(FREQ_LEVEL_COL)


def freq_label(freq_mhz: Any) -> str:
    """``"1200 MHz"`` or ``"default"`` for the driver-default group."""
    if _is_missing(freq_mhz):
        return "default"
    value = float(freq_mhz)
    return f"{value:.0f} MHz" if value.is_integer() else f"{value:g} MHz"


def key_str(key: Any) -> str:
    """Stable text of a group key (for seeding and messages)."""
    parts = key if isinstance(key, tuple) else (key,)
    return "|".join("nan" if _is_missing(p) else str(p) for p in parts)


def group_rng(seed: int, key: Any) -> np.random.Generator:
    """A generator that depends only on the seed and the group, not on the other groups."""
    return np.random.default_rng([int(seed), zlib.crc32(key_str(key).encode())])


def prepare_requests(requests: pd.DataFrame) -> pd.DataFrame:
    """Copy with key columns present, ``energy_kind`` filled and derived metrics added.

    Adds ``j_per_token`` (energy_j / output_tokens, NaN when no tokens), ``tokens_per_s``
    (when absent: output_tokens / latency_s), ``edp_j_s`` (energy × latency),
    ``ed2p_j_s2`` (energy × latency²) and ``freq_level_mhz``.
    """
    df = requests.copy()
    for col in CONFIG_KEYS:
        if col not in df.columns:
            df[col] = np.nan
    df["energy_kind"] = energy_kinds(df)
    energy = _numeric(df, "energy_j")
    out_tokens = _numeric(df, "output_tokens")
    latency = _numeric(df, "latency_s")
    df["j_per_token"] = energy / out_tokens.where(out_tokens > 0)
    if "tokens_per_s" in df.columns:
        df["tokens_per_s"] = _numeric(df, "tokens_per_s")
    else:
        df["tokens_per_s"] = out_tokens / latency.where(latency > 0)
    df["edp_j_s"] = energy * latency
    df["ed2p_j_s2"] = energy * latency**2
    for metric in METRICS:
        df[metric] = _numeric(df, metric)
    df["freq_applied_mhz"] = _numeric(df, "freq_applied_mhz")
    df[FREQ_LEVEL_COL] = freq_levels(df)
    return df


# --- exclusion ----------------------------------------------------------------------------------------


def exclusion_flags(requests: pd.DataFrame) -> pd.DataFrame:
    """Boolean frame, one column per code of :data:`EXCLUSION_REASONS`."""
    idx = requests.index
    flags = pd.DataFrame(False, index=idx, columns=list(EXCLUSION_REASONS), dtype=bool)
    if "status" in requests.columns:
        status = requests["status"]
        flags["status"] = [
            (not _is_missing(s)) and str(s).strip().lower() != "ok" for s in status.tolist()
        ]
    if "window_trusted" in requests.columns:
        flags["untrusted"] = [_explicit_false(v) for v in requests["window_trusted"].tolist()]
    if "cap_held" in requests.columns:
        flags["cap_not_held"] = [_explicit_false(v) for v in requests["cap_held"].tolist()]
    if "clock_event_reasons" in requests.columns:
        default = _default_clock_rows(requests)
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


def _default_clock_rows(requests: pd.DataFrame) -> list[bool]:
    if "freq_requested_mhz" not in requests.columns:
        return [False] * len(requests)
    return [_is_missing(v) for v in requests["freq_requested_mhz"].tolist()]


def exclusion_reasons(requests: pd.DataFrame) -> pd.Series:
    """Per row ``""`` if the request is valid, else ``"; "``-joined reasons.

    Reasons: ``status not ok: <status>``, ``window not trusted``, ``cap not held``,
    ``throttled (0x..)`` (clock event reasons with any :data:`THROTTLE_MASK` bit). Missing
    optional columns simply do not contribute a reason.
    """
    flags = exclusion_flags(requests)
    statuses = requests["status"].tolist() if "status" in requests.columns else None
    reasons_col = (
        requests["clock_event_reasons"].tolist()
        if "clock_event_reasons" in requests.columns
        else None
    )
    out: list[str] = []
    default_rows = _default_clock_rows(requests)
    for i, row in enumerate(flags.itertuples(index=False)):
        parts: list[str] = []
        if row.status:
            parts.append(f"{EXCLUSION_REASONS['status']}: {statuses[i] if statuses else '?'}")
        if row.untrusted:
            parts.append(EXCLUSION_REASONS["untrusted"])
        if row.cap_not_held:
            parts.append(EXCLUSION_REASONS["cap_not_held"])
        if row.throttled:
            bits = (parse_clock_event_reasons(reasons_col[i]) or 0) if reasons_col else 0
            mask = throttle_mask(default_rows[i])
            parts.append(f"{EXCLUSION_REASONS['throttled']} (0x{bits & mask:x})")
        out.append("; ".join(parts))
    return pd.Series(out, index=requests.index, dtype="object", name="exclusion_reason")


def valid_mask(requests: pd.DataFrame) -> pd.Series:
    """True for requests usable for energy / timing statistics."""
    return ~exclusion_flags(requests).any(axis=1)


def status_ok_mask(requests: pd.DataFrame) -> pd.Series:
    return ~exclusion_flags(requests)["status"]


# --- bootstrap -------------------------------------------------------------------------------------


def _cluster_codes(
    clusters: Sequence[Hashable] | np.ndarray | pd.Series | None, n: int
) -> np.ndarray:
    """Integer cluster code per observation; missing cluster ids become singleton clusters."""
    if clusters is None:
        return np.arange(n)
    series = pd.Series(list(clusters) if not isinstance(clusters, pd.Series) else clusters.values)
    codes, _ = pd.factorize(series, use_na_sentinel=True)
    codes = np.asarray(codes, dtype=np.int64)
    missing = codes < 0
    if missing.any():
        start = codes.max() + 1 if (~missing).any() else 0
        codes[missing] = np.arange(start, start + int(missing.sum()))
    _, codes = np.unique(codes, return_inverse=True)
    return codes.astype(np.int64)


def bootstrap_ratio_replicates(
    parts: Mapping[str, tuple[np.ndarray, np.ndarray]],
    n_clusters: int,
    *,
    n_boot: int,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """Bootstrap replicates of ``sum(num) / sum(den)`` for several per-cluster (num, den) pairs.

    All parts share the same resampled clusters. Returns an ``n_boot`` array per part (NaN
    where a resample has a zero denominator).
    """
    out = {name: np.full(n_boot, np.nan) for name in parts}
    if n_clusters == 0 or n_boot <= 0:
        return out
    chunk = max(1, _BOOT_CHUNK_ELEMENTS // n_clusters)
    with np.errstate(invalid="ignore", divide="ignore"):
        for start in range(0, n_boot, chunk):
            stop = min(n_boot, start + chunk)
            idx = rng.integers(0, n_clusters, size=(stop - start, n_clusters))
            for name, (num, den) in parts.items():
                den_sum = den[idx].sum(axis=1)
                out[name][start:stop] = np.where(
                    den_sum > 0, num[idx].sum(axis=1) / den_sum, np.nan
                )
    return out


def cluster_ids(frame: pd.DataFrame, cluster_col: str | None = "window_id") -> pd.Series | None:
    """Measurement-window identity per row (``run_id`` + ``window_id``: window ids restart per
    run), or None when the frame has no window column."""
    if not cluster_col or cluster_col not in frame.columns:
        return None
    window = frame[cluster_col].astype("object")
    if "run_id" not in frame.columns:
        return window
    run = frame["run_id"].astype("object")
    ids = [
        None if _is_missing(w) else f"{'' if _is_missing(r) else r}:{w}"
        for r, w in zip(run.tolist(), window.tolist(), strict=True)
    ]
    return pd.Series(ids, index=frame.index, dtype="object")


def _cluster_sums(values: np.ndarray, codes: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    finite = np.isfinite(values)
    num = np.bincount(codes[finite], weights=values[finite], minlength=k)
    den = np.bincount(codes[finite], minlength=k).astype(float)
    return num, den


def bootstrap_mean_replicates(
    values: Sequence[float] | np.ndarray | pd.Series,
    *,
    n_boot: int,
    rng: np.random.Generator,
    clusters: Sequence[Hashable] | np.ndarray | pd.Series | None = None,
) -> np.ndarray:
    """Bootstrap replicates of the mean (NaNs ignored), resampling clusters when given."""
    arr = np.asarray(values, dtype=float)
    codes = _cluster_codes(clusters, len(arr))
    k = int(codes.max()) + 1 if len(codes) else 0
    num, den = _cluster_sums(arr, codes, k)
    return bootstrap_ratio_replicates({"m": (num, den)}, k, n_boot=n_boot, rng=rng)["m"]


def percentile_ci(replicates: np.ndarray, ci_level: float) -> tuple[float, float]:
    reps = np.asarray(replicates, dtype=float)
    reps = reps[np.isfinite(reps)]
    if reps.size == 0:
        return (math.nan, math.nan)
    tail = (1.0 - ci_level) / 2.0 * 100.0
    lo, hi = np.percentile(reps, [tail, 100.0 - tail])
    return (float(lo), float(hi))


def bootstrap_ci(
    values: Sequence[float] | np.ndarray | pd.Series,
    *,
    ci_level: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
    clusters: Sequence[Hashable] | np.ndarray | pd.Series | None = None,
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean. NaN bounds with fewer than 2 finite values."""
    arr = np.asarray(values, dtype=float)
    if np.isfinite(arr).sum() < 2:
        return (math.nan, math.nan)
    reps = bootstrap_mean_replicates(
        arr, n_boot=n_boot, rng=np.random.default_rng(seed), clusters=clusters
    )
    return percentile_ci(reps, ci_level)


def _cv(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    if finite.size < 2:
        return math.nan
    mean = float(finite.mean())
    if mean == 0.0:
        return math.nan
    return float(finite.std(ddof=1) / abs(mean))


# --- summary ---------------------------------------------------------------------------------------


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


def _unique_text(series: pd.Series) -> str:
    vals = sorted({str(v) for v in series.tolist() if not _is_missing(v)})
    return ",".join(vals)


def summarize(
    requests: pd.DataFrame,
    *,
    ci_level: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
    cluster_col: str | None = "window_id",
) -> pd.DataFrame:
    """One row per configuration (:data:`CONFIG_KEYS`).

    Columns: the keys; ``freq_requested_mhz`` (when single-valued), ``default_clocks``;
    ``n_total`` (rows), ``n`` (valid rows), ``n_excluded``, ``excluded_<code>`` per reason,
    ``excluded_reasons`` (text), ``energy_source``; for every metric of :data:`METRICS`
    ``<m>_mean``, ``<m>_median``, ``<m>_ci_low``, ``<m>_ci_high``, ``<m>_cv``; plus
    ``latency_p50_s``, ``latency_p95_s``, ``energy_total_j``; for every ``quality_*`` column
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
    has_ppl = {"ref_nll_sum", "ref_tokens"} <= set(df.columns)
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
        requested = _numeric(group, "freq_requested_mhz").dropna().unique()
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
        row["energy_source"] = (
            _unique_text(group["energy_source"]) if "energy_source" in group.columns else ""
        )
        rng = group_rng(seed, key_t)
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
    ]
    for m in METRICS:
        cols.extend(f"{m}_{s}" for s in STAT_SUFFIXES)
    cols.extend(
        [
            "latency_p50_s",
            "latency_p95_s",
            "energy_total_j",
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
    clusters = cluster_ids(gvalid, cluster_col)
    codes = _cluster_codes(clusters, len(gvalid))
    k = int(codes.max()) + 1 if len(codes) else 0
    parts: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    arrays: dict[str, np.ndarray] = {}
    for m in METRICS:
        arr = gvalid[m].to_numpy(dtype=float)
        arrays[m] = arr
        if np.isfinite(arr).sum() >= 2:
            parts[m] = _cluster_sums(arr, codes, k)
    reps = bootstrap_ratio_replicates(parts, k, n_boot=n_boot, rng=rng) if parts else {}
    for m in METRICS:
        arr = arrays[m]
        finite = arr[np.isfinite(arr)]
        out[f"{m}_mean"] = float(finite.mean()) if finite.size else math.nan
        out[f"{m}_median"] = float(np.median(finite)) if finite.size else math.nan
        lo, hi = percentile_ci(reps[m], ci_level) if m in reps else (math.nan, math.nan)
        out[f"{m}_ci_low"], out[f"{m}_ci_high"] = lo, hi
        out[f"{m}_cv"] = _cv(arr)
    lat = arrays["latency_s"][np.isfinite(arrays["latency_s"])]
    out["latency_p50_s"] = float(np.percentile(lat, 50)) if lat.size else math.nan
    out["latency_p95_s"] = float(np.percentile(lat, 95)) if lat.size else math.nan
    energy = arrays["energy_j"][np.isfinite(arrays["energy_j"])]
    out["energy_total_j"] = float(energy.sum()) if energy.size else math.nan
    clock = _numeric(gvalid, "sm_clock_mean_mhz")
    out["sm_clock_mean_mhz"] = float(clock.mean()) if clock.notna().any() else math.nan
    temp = _numeric(gvalid, "temperature_c")
    out["temperature_max_c"] = float(temp.max()) if temp.notna().any() else math.nan
    return out


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
        arr = _numeric(gok, q).to_numpy()
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
            _numeric(gok, "ref_nll_sum").to_numpy(),
            _numeric(gok, "ref_tokens").to_numpy(),
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


# --- headline metrics for reports/metrics.json -------------------------------------------------------


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
    if _is_missing(value):
        return None
    return value


def choose_energy_kind(kinds: Iterable[Any]) -> str | None:
    present = {str(k) for k in kinds if not _is_missing(k)}
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
    ``gpu.{freq_applied_mhz, freq_requested_mhz, freq_mode, n_freq_levels, sm_clock_mean_mhz,
    temperature_max_c}``, ``quality.{<name>..., perplexity}``, ``counts.{n_requests, n_valid,
    n_excluded, n_configs}``, ``config.{model, task, engine, batch_size, input_tokens_target,
    output_tokens_target}`` ("mixed" when several). ``gpu.freq_applied_mhz`` is null at driver
    default clocks and when several levels were run (``freq_mode`` = default|capped|mixed).
    Energy figures use one energy kind only (measured > estimated > simulated) and the CI comes
    from the summary when that kind has exactly one configuration.
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
    energy["source"] = _unique_text(de["energy_source"]) if "energy_source" in de else None
    energy["j_per_token"] = _finite_mean(de["j_per_token"])
    energy["j_per_token_ci_low"] = math.nan
    energy["j_per_token_ci_high"] = math.nan
    if summary is not None and not summary.empty and "energy_kind" in summary.columns:
        srows = summary[(summary["energy_kind"] == kind) & (summary["n"] > 0)]
        if len(srows) == 1:
            energy["j_per_token_ci_low"] = srows["j_per_token_ci_low"].iloc[0]
            energy["j_per_token_ci_high"] = srows["j_per_token_ci_high"].iloc[0]
    e_sum = de["energy_j"].sum(min_count=1)
    tok = _numeric(de, "output_tokens")
    tok_sum = tok[de["energy_j"].notna()].sum(min_count=1)
    energy["j_per_token_pooled"] = (
        float(e_sum / tok_sum) if pd.notna(tok_sum) and tok_sum > 0 else math.nan
    )
    energy["dynamic_j_per_token"] = _finite_mean(de["dynamic_energy_j"] / tok.where(tok > 0))
    energy["total_j"] = float(e_sum) if pd.notna(e_sum) else math.nan
    energy["avg_power_w"] = _finite_mean(de["avg_power_w"])
    energy["edp_j_s"] = _finite_mean(de["edp_j_s"])

    lat = dv["latency_s"].dropna().to_numpy(dtype=float)
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
    if n_levels == 1 and _is_missing(distinct[0]):
        mode, freq = "default", None
    elif n_levels == 1:
        mode, freq = "capped", float(distinct[0])
    else:
        mode, freq = ("mixed" if n_levels > 1 else "default"), None
    requested = _numeric(dv, "freq_requested_mhz").dropna().unique()
    gpu = {
        "freq_applied_mhz": freq,
        "freq_requested_mhz": float(requested[0])
        if len(requested) == 1 and mode == "capped"
        else None,
        "freq_mode": mode,
        "n_freq_levels": int(n_levels),
        "sm_clock_mean_mhz": _finite_mean(_numeric(dv, "sm_clock_mean_mhz")),
        "temperature_max_c": float(_numeric(dv, "temperature_c").max())
        if _numeric(dv, "temperature_c").notna().any()
        else math.nan,
    }

    quality: dict[str, Any] = {}
    dok = df[ok]
    for q in quality_columns(df):
        quality[q.removeprefix("quality_")] = _finite_mean(dok[q])
    if {"ref_nll_sum", "ref_tokens"} <= set(df.columns):
        nll = _numeric(dok, "ref_nll_sum")
        rt = _numeric(dok, "ref_tokens")
        use = nll.notna() & rt.notna() & (rt > 0)
        quality["perplexity"] = (
            float(math.exp(nll[use].sum() / rt[use].sum())) if use.any() else math.nan
        )

    counts = {
        "n_requests": len(df),
        "n_valid": int(valid.sum()),
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
        }
    )


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
