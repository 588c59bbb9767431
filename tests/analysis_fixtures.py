"""Synthetic per-request records (docs/records.md columns) for the analysis tests.

The frequency sweep follows a known DVFS-like model (``true_*`` functions) plus seeded
multiplicative noise, so tests can compute the right answer independently of the code under
test.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from llm_energy.records import AGGREGATE_REQUESTS, INFER_REQUESTS, typed_frame

F_MAX_MHZ = 1980.0
TPOT_BASE_S = 0.020  # time per output token at F_MAX
PREFILL_S_PER_TOKEN = 5e-5  # prefill time per input token at F_MAX
MEM_BOUND_SHARE = 0.55  # share of decode time that does not scale with 1/f
IDLE_POWER_W = 70.0
DYN_POWER_W = 230.0
POWER_EXPONENT = 2.2

MODEL_PARAMS_M = {"m-small": 135.0, "m-large": 1_100.0}
TASK_KIND = {"qa": "qa", "generation": "generation", "summarization": "summarization"}
SOURCE_BY_KIND = {"measured": "nvml", "estimated": "codecarbon-estimate", "simulated": "simulated"}


def effective_freq(freq_mhz: float | None) -> float:
    return F_MAX_MHZ if freq_mhz is None or math.isnan(float(freq_mhz)) else float(freq_mhz)


def model_scale(model: str) -> float:
    return (MODEL_PARAMS_M.get(model, 135.0) / 135.0) ** 0.5


def true_tpot_s(freq_mhz: float | None, model: str = "m-small") -> float:
    ratio = F_MAX_MHZ / effective_freq(freq_mhz)
    return TPOT_BASE_S * model_scale(model) * (MEM_BOUND_SHARE + (1 - MEM_BOUND_SHARE) * ratio)


def true_ttft_s(freq_mhz: float | None, input_tokens: float, model: str = "m-small") -> float:
    ratio = F_MAX_MHZ / effective_freq(freq_mhz)
    return PREFILL_S_PER_TOKEN * input_tokens * model_scale(model) * (0.3 + 0.7 * ratio)


def true_latency_s(
    freq_mhz: float | None, input_tokens: float, output_tokens: float, model: str = "m-small"
) -> float:
    return true_ttft_s(freq_mhz, input_tokens, model) + output_tokens * true_tpot_s(freq_mhz, model)


def true_power_w(freq_mhz: float | None) -> float:
    return IDLE_POWER_W + DYN_POWER_W * (effective_freq(freq_mhz) / F_MAX_MHZ) ** POWER_EXPONENT


def true_j_per_token(
    freq_mhz: float | None, input_tokens: float, output_tokens: float, model: str = "m-small"
) -> float:
    lat = true_latency_s(freq_mhz, input_tokens, output_tokens, model)
    return true_power_w(freq_mhz) * lat / output_tokens


def sweep_requests(
    freqs: Sequence[float | None] = (None, 1800.0, 1500.0, 1200.0, 900.0),
    *,
    n_per_freq: int = 20,
    models: Sequence[str] = ("m-small",),
    tasks: Sequence[str] = ("qa",),
    energy_kind: str = "measured",
    input_tokens: int = 256,
    output_tokens: int = 64,
    length_jitter: bool = False,
    noise: float = 0.02,
    seed: int = 0,
    default_applied_mhz: float | None = None,
    reps: int = 1,
    rep0_slowdown: float = 1.0,
    gpu_name: str = "sim-gpu",
    gpu_uuid: str = "GPU-sim-0",
) -> pd.DataFrame:
    """A frequency sweep: one request per row, every records.md column present.

    ``None`` in ``freqs`` is the driver-default group (``freq_requested_mhz`` null,
    ``freq_applied_mhz`` = ``default_applied_mhz``, null by default). With ``length_jitter``
    input and output lengths vary per item (uniform in [0.5, 1.5] × target), the same
    items at every frequency. ``reps`` repeats every item (``rep`` 0..reps-1, a window each);
    ``rep0_slowdown`` multiplies the latency (and so the energy) of rep 0: a cold start.
    """
    rng = np.random.default_rng(seed)
    if length_jitter:  # per item: every frequency sees the same items, as in a real sweep
        in_lengths = rng.integers(input_tokens // 2, input_tokens * 3 // 2 + 1, size=n_per_freq)
        out_lengths = rng.integers(output_tokens // 2, output_tokens * 3 // 2 + 1, size=n_per_freq)
    else:
        in_lengths = np.full(n_per_freq, input_tokens)
        out_lengths = np.full(n_per_freq, output_tokens)
    rows: list[dict[str, Any]] = []
    t0 = pd.Timestamp("2025-01-01T00:00:00Z")
    window = 0
    for model in models:
        for task in tasks:
            for freq in freqs:
                for rep, i in itertools.product(range(reps), range(n_per_freq)):
                    n_in, n_out = int(in_lengths[i]), int(out_lengths[i])
                    slow = rep0_slowdown if rep == 0 else 1.0
                    ttft = true_ttft_s(freq, n_in, model) * rng.lognormal(0.0, noise) * slow
                    tpot = true_tpot_s(freq, model) * rng.lognormal(0.0, noise) * slow
                    latency = ttft + n_out * tpot
                    power = true_power_w(freq) * rng.lognormal(0.0, noise)
                    energy = power * latency
                    window += 1
                    applied = default_applied_mhz if freq is None else freq
                    started = t0 + pd.Timedelta(seconds=window * 2)
                    rows.append(
                        {
                            "run_id": "0" * 32,
                            "experiment": "synthetic",
                            "model": model,
                            "model_family": "causal",
                            "weights": "random",
                            "model_params_m": MODEL_PARAMS_M.get(model, 135.0),
                            "task": task,
                            "task_kind": TASK_KIND.get(task, task),
                            "dataset": f"{task}-samples",
                            "item_id": f"{task}-{i}",
                            "rep": rep,
                            "engine": "eager",
                            "batch_size": 1,
                            "batch_index": i,
                            "input_tokens_target": input_tokens,
                            "input_tokens": n_in,
                            "input_truncated": False,
                            "output_tokens_target": output_tokens,
                            "output_mode": "fixed",
                            "output_tokens": n_out,
                            "latency_s": latency,
                            "ttft_s": ttft,
                            "tpot_s": tpot,
                            "tokens_per_s": n_out / latency,
                            "window_id": window,
                            "window_energy_j": energy,
                            "window_s": latency,
                            "window_repeats": 1,
                            "window_trusted": True,
                            "energy_j": energy,
                            "energy_source": SOURCE_BY_KIND[energy_kind],
                            "energy_kind": energy_kind,
                            "idle_power_w": IDLE_POWER_W,
                            "dynamic_energy_j": energy - IDLE_POWER_W * latency,
                            "avg_power_w": power,
                            "freq_requested_mhz": freq,
                            "freq_applied_mhz": applied,
                            "sm_clock_mean_mhz": effective_freq(freq) - 5.0,
                            "sm_clock_min_mhz": effective_freq(freq) - 15.0,
                            "mem_clock_mhz": 2619.0,
                            "clock_event_reasons": 0,
                            "temperature_c": 55.0,
                            "cap_held": None if freq is None else True,
                            "prediction": "text",
                            "references": ["text"],
                            "ref_nll_sum": 2.0 * n_out if task == "generation" else None,
                            "ref_tokens": n_out if task == "generation" else None,
                            "quality_exact_match": float(i % 2) if task == "qa" else None,
                            "gpu_name": gpu_name,
                            "gpu_uuid": gpu_uuid,
                            "status": "ok",
                            "error": None,
                            "started_at": started.isoformat(),
                            "ended_at": (started + pd.Timedelta(seconds=latency)).isoformat(),
                        }
                    )
    return as_records(pd.DataFrame(rows))


#: values of an ok, measured record for the columns a test frame leaves out
RECORD_DEFAULTS: dict[str, Any] = {
    "run_id": "r",
    "experiment": "synthetic",
    "model": "m",
    "model_family": "causal",
    "weights": "random",
    "model_params_m": 135.0,
    "rep": 0,
    "engine": "eager",
    "batch_size": 1,
    "batch_fill": 1,
    "batch_index": 0,
    "output_tokens_target": 16,
    "output_mode": "fixed",
    "task": "t",
    "task_kind": "qa",
    "status": "ok",
    "started_at": "2025-01-01T00:00:00+00:00",
    "ended_at": "2025-01-01T00:00:01+00:00",
    "input_tokens": 64,
    "output_tokens": 1,
    "latency_s": 1.0,
    "window_repeats": 1,
    "window_tail_s": 0.0,
    "input_truncated": False,
    "window_trusted": True,
    "window_tick_aligned": False,
    "clock_source": "none",
    "throttle_source": "none",
    "prediction": "",
    "quality_applicable": True,
    "gpu_name": "sim-gpu",
    "gpu_uuid": "GPU-sim-0",
}


def as_records(frame: pd.DataFrame) -> pd.DataFrame:
    """A test frame completed to a schema-typed aggregate record frame: left-out columns get
    :data:`RECORD_DEFAULTS`, a window and an item of their own per row, null otherwise."""
    df = frame.copy().reset_index(drop=True)
    for col, value in RECORD_DEFAULTS.items():
        if col not in df.columns:
            df[col] = [value] * len(df)
    if "item_id" not in df.columns:
        df["item_id"] = [f"item-{i}" for i in range(len(df))]
    if "window_id" not in df.columns:
        df["window_id"] = list(range(1, len(df) + 1))
    if "window_s" not in df.columns:
        df["window_s"] = df["latency_s"]
    if "tokens_per_s" not in df.columns:
        df["tokens_per_s"] = df["output_tokens"] / df["latency_s"]
    if "energy_source" not in df.columns:
        kinds = df["energy_kind"] if "energy_kind" in df.columns else ["measured"] * len(df)
        df["energy_source"] = [SOURCE_BY_KIND.get(k, "nvml") for k in kinds]
    if "references" not in df.columns:
        df["references"] = [[] for _ in range(len(df))]
    for col in AGGREGATE_REQUESTS.columns:
        if col.name not in df.columns and col.nullable:
            df[col.name] = None
    return typed_frame(df, AGGREGATE_REQUESTS, "test records", "fix the test frame")


def minimal_requests(values: Sequence[float], **columns: Any) -> pd.DataFrame:
    """Bare records: energy_j = values, output_tokens = 1, latency_s = 1 unless overridden."""
    n = len(values)
    data: dict[str, Any] = {
        "energy_j": list(values),
        "output_tokens": [1] * n,
        "latency_s": [1.0] * n,
    }
    data.update(columns)
    return as_records(pd.DataFrame(data))


def groups_to_requests(
    groups: dict[float | None, Sequence[float]],
    *,
    model: str = "m",
    task: str = "t",
    energy_kind: str = "measured",
    metric_col: str = "energy_j",
) -> pd.DataFrame:
    """Frequency level → values of ``metric_col`` (j_per_token = energy_j with 1 output token)."""
    rows: list[dict[str, Any]] = []
    for freq, values in groups.items():
        for v in values:
            rows.append(
                {
                    "model": model,
                    "task": task,
                    "energy_kind": energy_kind,
                    "freq_requested_mhz": freq,
                    "freq_applied_mhz": freq,
                    "output_tokens": 1,
                    "latency_s": 1.0,
                    "energy_j": 1.0,
                    metric_col: float(v),
                    "status": "ok",
                }
            )
    return as_records(pd.DataFrame(rows))


def window_row(
    window_id: int, freq: float | None, batch_size: int, **columns: Any
) -> dict[str, Any]:
    """One ok request of a trusted window at clock `freq` (model m, task t, eager), plus `columns`."""
    return {
        "run_id": "r",
        "window_id": window_id,
        "model": "m",
        "task": "t",
        "engine": "eager",
        "batch_size": batch_size,
        "freq_requested_mhz": freq,
        "freq_applied_mhz": freq,
        "status": "ok",
        "window_trusted": True,
        **columns,
    }


def batched_window_requests(
    windows: Sequence[tuple[float | None, float, Sequence[int]]],
    *,
    window_repeats: int = 1,
    latency_s: float = 1.0,
    energy_kind: str = "measured",
    item_prefix: str = "it",
) -> pd.DataFrame:
    """One measurement window per ``(freq, window_energy_j, output tokens per request)``: the
    window's energy is split evenly over its requests and repeats (docs/records.md), its requests
    are items ``<prefix>-<w>-<i>`` (the same ids at every frequency for the same window index
    within a frequency), natural-length outputs."""
    rows: list[dict[str, Any]] = []
    position: dict[Any, int] = {}
    for window, (freq, energy, outputs) in enumerate(windows, start=1):
        slot = position.get(freq, 0)
        position[freq] = slot + 1
        n = len(outputs)
        for i, n_out in enumerate(outputs):
            rows.append(
                window_row(
                    window,
                    freq,
                    n,
                    input_tokens_target=64,
                    output_tokens_target=16,  # natural lengths up to a cap
                    item_id=f"{item_prefix}-{slot}-{i}",
                    rep=0,
                    energy_source=SOURCE_BY_KIND[energy_kind],
                    energy_kind=energy_kind,
                    window_energy_j=energy,
                    window_s=latency_s * window_repeats,
                    window_repeats=window_repeats,
                    energy_j=energy / (n * window_repeats),
                    output_tokens=int(n_out),
                    input_tokens=64,
                    latency_s=latency_s,
                    cap_held=None if freq is None else True,
                )
            )
    return as_records(pd.DataFrame(rows))


def infer_record(**overrides: Any) -> dict[str, Any]:
    """One measured record as infer writes it to ``data/infer/requests.jsonl``: every column of
    the record schema, :data:`RECORD_DEFAULTS` where it has one, null where allowed."""
    row: dict[str, Any] = {c.name: None for c in INFER_REQUESTS.columns if c.required != "no"}
    row.update({k: v for k, v in RECORD_DEFAULTS.items() if k in row})
    row.update(
        item_id="item-0",
        window_id=1,
        window_s=1.0,
        energy_j=1.0,
        tokens_per_s=1.0,
        energy_source="simulated",
        energy_kind="simulated",
        references=[],
    )
    row.update(overrides)
    return row


def batched_windows(levels: dict[float | None, list[float]], batch: int) -> pd.DataFrame:
    """Requests of `batch` per window, one window per value, each level a clock."""
    rows, window = [], 0
    for freq, window_values in levels.items():
        for value in window_values:
            window += 1
            for _ in range(batch):  # every request of a window shares its reading
                rows.append(
                    window_row(
                        window,
                        freq,
                        batch,
                        input_tokens_target=None,
                        output_tokens_target=8,
                        energy_kind="measured",
                        energy_j=value * 8,
                        output_tokens=8,
                        cap_held=True,
                        latency_s=1.0,
                    )
                )
    return as_records(pd.DataFrame(rows))
