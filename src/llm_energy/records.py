"""The record schema: every column of the records and tables passed between stages, in one place
(name, kind, nullable; unit from the name's suffix, docs/records.md). :func:`typed_frame` checks a
loaded frame against its schema and returns it typed. Pure: the caller names the file."""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pandas as pd

from llm_energy.errors import InputFileError
from llm_energy.record_types import Column, Kind, Required, Schema


def _cols(kind: Kind, names: str, *, nullable: bool = True, required: Required = "always"):
    return tuple(Column(n, kind, nullable, required) for n in names.split())


def _ok(kind: Kind, names: str) -> tuple[Column, ...]:
    """Columns every measured (status ok) record carries, never null there."""
    return _cols(kind, names, nullable=False, required="ok")


# --- data/infer/requests.jsonl: what run/runner.py and run/plan.py write --------------------------

INFER_REQUESTS = Schema(
    "infer requests",
    (
        *_cols("str", "run_id experiment model model_family weights", nullable=False),
        Column("model_params_m", "float"),
        *_cols("int", "rep batch_size batch_fill output_tokens_target", nullable=False),
        *_cols("int", "input_tokens_target freq_requested_mhz freq_applied_mhz"),
        # sweep.power_limits_w / mem_freqs_mhz (null: as found; records before them lack them)
        *_cols("float", "power_limit_requested_w power_limit_applied_w", required="no"),
        *_cols("int", "mem_freq_requested_mhz mem_freq_applied_mhz", required="no"),
        Column("power_limit_held", "bool", required="no"),  # energy/window.py
        *_cols("str", "engine output_mode task task_kind item_id status", nullable=False),
        *_cols("str", "dataset error energy_kind"),
        *_cols("str", "started_at ended_at", nullable=False),
        *_cols(
            "float",
            "idle_power_before_w idle_power_after_w idle_power_se_w idle_power_w "
            "dynamic_energy_j dynamic_energy_se_j window_tail_energy_j",
            required="ok",
        ),
        # degrees of freedom of idle_power_se_w (idle samples of the point's baseline − 1)
        Column("idle_power_df", "int", required="no"),
        *_ok("int", "batch_index input_tokens output_tokens window_id window_repeats"),
        *_ok("bool", "input_truncated window_trusted window_tick_aligned"),
        *_ok("float", "latency_s window_s window_tail_s"),
        *_cols(
            "float",
            "ttft_s tpot_s tokens_per_s energy_j avg_power_w window_energy_j window_busy_s "
            "sm_clock_mean_mhz sm_clock_min_mhz mem_clock_mhz temperature_c "
            "throttle_power_s throttle_thermal_s",
            required="ok",
        ),
        *_ok("str", "energy_source clock_source throttle_source prediction"),
        Column("input_truncation_reason", "str", required="ok"),
        # the NVML clock event reason bitmask, as the runner writes it (int, null = not read)
        Column("clock_event_reasons", "int", required="ok"),
        Column("cap_held", "bool", required="ok"),
        Column("references", "list", nullable=False, required="ok"),
        # infer.phases: the batch's prefill window (same prompts, one new token); decode is
        # the rest of the request (docs/records.md)
        *_cols(
            "float",
            "prefill_energy_j prefill_time_s decode_energy_j decode_time_s "
            "prefill_window_energy_j prefill_window_s prefill_window_busy_s prefill_window_tail_s",
            required="no",
        ),
        Column("prefill_window_repeats", "int", required="no"),
        Column("prefill_window_trusted", "bool", required="no"),
        # generation tasks only
        Column("ref_nll_sum", "float", required="no"),
        Column("ref_tokens", "int", required="no"),
    ),
)

#: data/aggregate/requests.jsonl: the infer records, the run's GPU identity and quality scores
AGGREGATE_REQUESTS = Schema(
    "aggregate requests",
    (
        *INFER_REQUESTS.columns,
        Column("gpu_name", "str"),
        Column("gpu_uuid", "str"),
        Column("quality_applicable", "bool", required="ok"),
    ),
    extra=((r"quality_\w+", "float"),),
)

#: a configuration: summary.csv, quality.csv and repetition.csv rows are keyed by these
#: (gpu_name: two GPU models are never pooled)
CONFIG_COLUMNS: tuple[Column, ...] = (
    Column("model", "str", nullable=False),
    Column("task", "str", nullable=False),
    Column("engine", "str", nullable=False),
    Column("batch_size", "int", nullable=False),
    Column("input_tokens_target", "int"),
    Column("output_tokens_target", "int", nullable=False),
    Column("freq_applied_mhz", "float"),
    *_cols("float", "power_limit_applied_w mem_freq_applied_mhz", required="no"),
    Column("energy_kind", "str"),
    Column("gpu_name", "str"),
)
CONFIG_KEYS: tuple[str, ...] = tuple(c.name for c in CONFIG_COLUMNS)
#: configuration keys of knobs other than the SM clock: set, the row is not the default baseline
OTHER_KNOB_KEYS = ("power_limit_applied_w", "mem_freq_applied_mhz")
STRATUM_COLUMNS = tuple(c for c in CONFIG_COLUMNS if c.name != "freq_applied_mhz")

_STAT = r"_(mean|median|ci_low|ci_high|cv)"
SUMMARY = Schema(
    "summary",
    (
        *CONFIG_COLUMNS,
        Column("freq_requested_mhz", "float"),
        Column("default_clocks", "bool", nullable=False),
        *_cols("int", "n_total n n_excluded n_windows n_items", nullable=False),
        *_cols("str", "excluded_reasons energy_source interval_note ci_method"),
        *_cols(
            "float",
            "latency_p50_s latency_p50_ci_low latency_p50_ci_high latency_p50_ci_level "
            "latency_p95_s energy_total_j dynamic_j_per_token_idle_se dynamic_j_per_token_idle_df "
            "sm_clock_mean_mhz temperature_max_c ci_level",
        ),
    ),
    extra=(
        (r"excluded_\w+", "int"),
        (r"quality_\w+_n", "int"),
        (r"quality_\w+_(mean|ci_low|ci_high)", "float"),
        (r"\w+" + _STAT, "float"),
        (r"perplexity(_ci_low|_ci_high)?", "float"),
    ),
)

REPETITION = Schema(
    "repetition",
    (
        *CONFIG_COLUMNS,
        Column("metric", "str", nullable=False),
        *_cols("int", "n_rep0 n_rest n_pairs"),
        *_cols("float", "median_rep0 median_rest ratio p_value"),
        *_cols("str", "test note"),
        Column("flagged", "bool"),
    ),
)

_RESULT = (
    *_cols("str", "test note effect_size_kind"),
    *_cols("float", "statistic p_value effect_size"),
)
FREQUENCY_EFFECT = Schema(
    "frequency_effect",
    (
        *STRATUM_COLUMNS,
        Column("metric", "str", nullable=False),
        *_cols("str", "levels design test_reason verdict"),
        *_cols("int", "n_levels n_total n_blocks"),
        *_cols("float", "shapiro_min_p levene_p df_between df_within"),
        *_cols("bool", "normal equal_var significant"),
        *_RESULT,
    ),
)
PAIRWISE = Schema(
    "pairwise",
    (
        *STRATUM_COLUMNS,
        Column("metric", "str", nullable=False),
        *_cols(
            "float",
            "freq_mhz baseline_freq_mhz mean mean_baseline ratio ratio_ci_low ratio_ci_high "
            "pct_change df p_holm",
        ),
        *_cols("str", "label baseline test note"),
        *_cols("int", "n n_baseline n_pairs"),
        *_cols("float", "statistic p_value"),
        Column("significant", "bool"),
    ),
)
SPEARMAN = Schema(
    "spearman",
    (
        *_cols("str", "scope model task energy_kind gpu_name variable metric note"),
        *_cols("int", "n output_tokens_target"),
        *_cols("float", "rho p_value"),
        *_cols("bool", "significant strata_agree"),
    ),
)
REGRESSION = Schema(
    "regression",
    (Column("term", "str", nullable=False), *_cols("float", "coef se t df p_value ci_low ci_high")),
)
PARETO = Schema(
    "pareto",
    (*SUMMARY.columns, Column("on_frontier", "bool"), Column("label", "str")),
    extra=SUMMARY.extra,
)
RECOMMENDATION = Schema(
    "recommendation",
    (
        *STRATUM_COLUMNS,
        *_cols("str", "metric baseline recommended_label ci_method note"),
        *_cols(
            "float",
            "baseline_freq_mhz baseline_mean baseline_latency_s latency_limit_s "
            "latency_budget_pct recommended_freq_mhz recommended_mean recommended_latency_s "
            "saving_pct saving_ci_low saving_ci_high "
            "latency_change_pct latency_change_ci_high ci_level",
        ),
        *_cols("int", "baseline_n min_samples n_levels n_candidates n_family recommended_n"),
        *_cols("bool", "saves_energy paired"),
    ),
)
#: the tables stats writes to reports/stats/<name>.csv and plots reads back
STATS_TABLES: dict[str, Schema] = {
    s.name: s for s in (FREQUENCY_EFFECT, PAIRWISE, SPEARMAN, REGRESSION, PARETO, RECOMMENDATION)
} | {"phases": PAIRWISE}  # the same comparison, per prefill/decode energy and time metric
PHASE_CLOCKS = Schema(
    "phase_clocks",
    (
        *STRATUM_COLUMNS,
        *_cols("int", "n_items n_levels"),
        *_cols(
            "float",
            "latency_budget_pct reference_freq_mhz single_freq_mhz single_energy_j "
            "prefill_freq_mhz decode_freq_mhz pair_energy_j pair_latency_s saving_pct "
            "saving_ci_low saving_ci_high",
        ),
        *_cols("str", "ci_method note"),
    ),
)
STATS_TABLES["phase_clocks"] = PHASE_CLOCKS


# --- checking --------------------------------------------------------------------------------------


def _is_null(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float | np.floating) and math.isnan(float(value))


def _fits(value: Any, kind: Kind) -> bool:
    if isinstance(value, bool | np.bool_):
        return kind == "bool"
    if kind == "int":
        return isinstance(value, int | np.integer) or (
            isinstance(value, float | np.floating) and float(value).is_integer()
        )
    if kind == "float":
        return isinstance(value, int | float | np.integer | np.floating)
    if kind == "str":
        return isinstance(value, str)
    if kind == "list":
        return isinstance(value, list | tuple | np.ndarray)
    return False


def _cast(series: pd.Series, col: Column) -> pd.Series:
    if col.kind == "float":
        values = pd.to_numeric(series, errors="coerce")
        return values if values.dtype == "float64" else values.astype("float64")  # astype: a copy
    convert = {"int": int, "bool": bool}.get(col.kind)  # str and list values stay as they are
    values = [None if _is_null(v) else convert(v) if convert else v for v in series.tolist()]
    return pd.Series(values, index=series.index, dtype=col.dtype)


def typed_frame(
    frame: pd.DataFrame, schema: Schema, path: Any, remedy: str, *, csv: bool = False
) -> pd.DataFrame:
    """``frame`` checked against ``schema`` and typed: every declared column present with its
    dtype (a column not required here is added as null). ``csv``: numbers pandas read in a text
    column are taken as text. A missing required column, a value of
    the wrong type, a null where none is allowed or an undeclared column raises one
    :class:`InputFileError` naming ``path``, the column and ``remedy``."""
    out = frame.copy()
    ok = (
        out["status"].astype("object").eq("ok").to_numpy()
        if "status" in out.columns
        else np.ones(len(out), dtype=bool)
    )
    for col in schema.columns:
        needed = col.required == "always" or (col.required == "ok" and ok.any())
        if col.name not in out.columns:
            if needed and len(out):
                raise InputFileError(path, f"no column '{col.name}' ({schema.name} schema)", remedy)
            out[col.name] = None
        rows = ok if col.required == "ok" else np.ones(len(out), dtype=bool)
        if csv and col.kind == "str":
            out[col.name] = out[col.name].astype("object").map(_number_text)
        _check(out[col.name], col.kind, col.nullable, rows, path, col.name, remedy)
        out[col.name] = _cast(out[col.name], col)
    for name in [c for c in out.columns if c not in set(schema.names())]:
        kind = next((k for rx, k in schema.extra if re.fullmatch(rx, str(name))), None)
        if kind is None:
            raise InputFileError(
                path,
                f"unexpected column '{name}' ({schema.name} schema, llm_energy/records.py)",
                remedy,
            )
        _check(out[name], kind, True, np.ones(len(out), dtype=bool), path, str(name), remedy)
        out[name] = _cast(out[name], Column(str(name), kind))
    return out


_FAST_DTYPES = {"float": "fiu", "int": "iu", "bool": "b"}  # numpy dtype kinds read without a check


def _number_text(value: Any) -> Any:
    """A CSV cell pandas read as a number in a text column (e.g. a level "1200"), as text."""
    if isinstance(value, float | np.floating) and not math.isnan(float(value)):
        return str(int(value)) if float(value).is_integer() else str(float(value))
    if isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_):
        return str(int(value))
    return value


def _check(
    series: pd.Series,
    kind: Kind,
    nullable: bool,
    rows: np.ndarray,
    path: Any,
    name: str,
    remedy: str,
) -> None:
    if series.dtype.kind in _FAST_DTYPES.get(kind, "") and (
        nullable or not series.isna()[rows].any()
    ):
        return
    for i, (value, used) in enumerate(zip(series.tolist(), rows, strict=True)):
        if _is_null(value) if not isinstance(value, list | tuple | np.ndarray) else False:
            if used and not nullable:
                raise InputFileError(path, f"column '{name}' is null in row {i + 1}", remedy)
        elif not _fits(value, kind):
            raise InputFileError(
                path,
                f"column '{name}' holds {type(value).__name__} {value!r:.40} in row {i + 1}, "
                f"expected {kind} (records in an older format are not supported)",
                remedy,
            )


def required_keys(schema: Schema, status_ok: bool) -> list[str]:
    """The keys every record must carry (``status_ok``: those of a measured record too)."""
    wanted = {"always", "ok"} if status_ok else {"always"}
    return [c.name for c in schema.columns if c.required in wanted]


def plain_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as plain Python values for JSON (pd.NA → None, numpy scalars → Python)."""
    return frame.astype("object").where(frame.notna(), None).to_dict(orient="records")
