"""The run plan (pure): the sweep points (power limit, memory clock, SM clock, engine, batch,
input and output length), repeated and interleaved (or shuffled with the seed) so drifts such as
temperature do not line up with one setting, and the request records."""

from __future__ import annotations

import dataclasses
import itertools
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from llm_energy.config.clocks import ClockPointError
from llm_energy.config.settings import Config, TaskConfig
from llm_energy.device.freq import resolve_points
from llm_energy.record_types import energy_kind


@dataclass(frozen=True)
class SweepPoint:
    freq_mhz: int | None
    engine: str
    batch_size: int
    input_tokens: int | None
    output_tokens: int | None  # None = each task's own output length
    rep: int
    power_limit_w: float | None = None  # None = the limit as found
    mem_freq_mhz: int | None = None  # None = the memory clock as found


MAX_SWEEP_POINTS = 1000  # one run; more is a study for `llm-energy grid` to split


def sweep_axes(cfg: Config) -> dict[str, Sequence[Any]]:
    """Each sweep dimension's values (its sweep list, else the single configured value)."""
    s, inf = cfg.sweep, cfg.infer
    return {
        "power_limits_w": s.power_limits_w or (cfg.gpu.power_limit_w,),
        "mem_freqs_mhz": s.mem_freqs_mhz or (cfg.gpu.mem_freq,),
        "freqs_mhz": s.freqs_mhz or (cfg.gpu.freq,),
        "engines": s.engines or (inf.engine,),
        "batch_sizes": s.batch_sizes or (inf.batch_size,),
        "input_tokens": s.input_tokens or (inf.input_tokens,),
        "output_tokens": s.output_tokens or (inf.output_tokens,),
    }


def sweep_size_problem(cfg: Config) -> str | None:
    """One line when the sweep crosses into more than MAX_SWEEP_POINTS points."""
    axes = {k: len(v) for k, v in sweep_axes(cfg).items() if len(v) > 1}
    n = math.prod(axes.values())
    if n <= MAX_SWEEP_POINTS:
        return None
    crossed = " x ".join(f"{n_values} sweep.{k}" for k, n_values in axes.items())
    return (
        f"the sweep crosses {crossed} = {n} points, over the {MAX_SWEEP_POINTS} one run "
        "allows: sweep fewer values, or split the study with `llm-energy grid`"
    )


def sweep_points(cfg: Config) -> list[SweepPoint]:
    """Every point once per round, rounds repeated (interleaved: the knobs change between
    neighbours, SM clock fastest of the three), or shuffled with the seed."""
    grid = list(itertools.product(*sweep_axes(cfg).values()))
    reps = cfg.infer.repetitions
    points = [
        SweepPoint(f, e, b, i, o, rep=r, power_limit_w=w, mem_freq_mhz=m)
        for r in range(reps)
        for w, m, f, e, b, i, o in grid
    ]
    if cfg.sweep.order == "random":
        random.Random(cfg.meta.seed).shuffle(points)
    return points


def output_spec(task: TaskConfig, point: SweepPoint, cfg: Config) -> tuple[int, str]:
    """(max new tokens, mode) for a task at a point: sweep value > infer override > task default."""
    tokens = point.output_tokens or cfg.infer.output_tokens or task.output_tokens
    mode = cfg.infer.output_mode or task.output_mode
    return tokens, mode


def batches(items: Sequence[Mapping[str, Any]], batch_size: int) -> list[list[Mapping[str, Any]]]:
    return [list(items[i : i + batch_size]) for i in range(0, len(items), batch_size)]


@dataclass(frozen=True)
class WindowFacts:
    """What the meter saw for one window, flattened into each request of the window."""

    window_id: int
    window_energy_j: float
    window_s: float
    window_repeats: int
    window_trusted: bool
    energy_source: str
    idle_power_w: float | None
    freq_requested_mhz: int | None
    freq_applied_mhz: int | None
    sm_clock_mean_mhz: float | None
    sm_clock_min_mhz: float | None
    mem_clock_mhz: float | None
    clock_event_reasons: int | None
    temperature_c: float | None
    cap_held: bool
    window_busy_s: float | None = None  # the work itself; window_s also holds the closing tick wait
    window_tail_s: float = 0.0
    window_tick_aligned: bool = False
    clock_source: str = "none"  # in-window driver samples, or the window's edges
    throttle_source: str = "none"  # NVML throttle-duration counters used, or "none"
    throttle_power_s: float | None = None
    throttle_thermal_s: float | None = None
    power_limit_held: bool | None = None  # energy/window.py power_limit_held


@dataclass(frozen=True)
class PrefillFacts:
    """A batch's prefill window (infer.phases): the same prompts with one new token, repeated
    until trusted like every window. Encoder-decoder models: the encoder and the first decoder
    step. The decode is what the request's own window spent beyond it."""

    prefill_window_energy_j: float
    prefill_window_s: float
    prefill_window_busy_s: float | None
    prefill_window_tail_s: float
    prefill_window_repeats: int
    prefill_window_trusted: bool


def phase_split(row: Mapping[str, Any], tail_power_w: float | None = None) -> dict[str, Any]:
    """Prefill and decode energy and time of a request with a prefill window: its share of that
    window (the closing tick's idle tail out, at `tail_power_w`, as for `energy_j`); decode is
    the request's `energy_j` / `latency_s` minus prefill, so the two add up to the total."""
    if row.get("prefill_window_repeats") is None:
        return {}
    share = 1.0 / (row["batch_fill"] * row["prefill_window_repeats"])
    tail_j = (tail_power_w or 0.0) * row["prefill_window_tail_s"]
    energy_j = (row["prefill_window_energy_j"] - tail_j) * share
    busy_s = row.get("prefill_window_busy_s")
    work_s = busy_s if busy_s is not None else row["prefill_window_s"]
    time_s = work_s / row["prefill_window_repeats"]
    return {
        "prefill_energy_j": energy_j,
        "prefill_time_s": time_s,
        "decode_energy_j": row["energy_j"] - energy_j,
        "decode_time_s": row["latency_s"] - time_s,
    }


def with_idle_baseline(
    row: Mapping[str, Any],
    *,
    power_w: float | None,
    before_w: float | None,
    after_w: float | None,
    se_w: float | None,
    df: int | None,
) -> dict[str, Any]:
    """A request record with its point's idle baseline, the idle tail taken out of its energy
    (the wait for the closing counter tick: the GPU idles there), and the dynamic energy above
    idle with the baseline's own uncertainty (`dynamic_energy_se_j`)."""
    out = dict(row)
    out.update(idle_power_before_w=before_w, idle_power_after_w=after_w)
    out.update(idle_power_se_w=se_w, idle_power_df=df)
    out["idle_power_w"] = power_w
    out.update(dynamic_energy_j=None, dynamic_energy_se_j=None, window_tail_energy_j=None)
    if row.get("status") != "ok" or power_w is None:
        return out
    share = 1.0 / (row["batch_fill"] * row["window_repeats"])
    tail_j = power_w * row.get("window_tail_s", 0.0)
    out["window_tail_energy_j"] = tail_j
    out["energy_j"] = (row["window_energy_j"] - tail_j) * share
    # The idle power applies to the whole window, tail included.
    out["dynamic_energy_j"] = (row["window_energy_j"] - power_w * row["window_s"]) * share
    out["dynamic_energy_se_j"] = None if se_w is None else se_w * row["window_s"] * share
    out.update(phase_split(out, power_w))
    return out


def request_records(
    *,
    base: Mapping[str, Any],
    items: Sequence[Mapping[str, Any]],
    inputs: Sequence[Mapping[str, Any]],
    predictions: Sequence[str],
    output_tokens: Sequence[int],
    ttft_s: float | None,
    window: WindowFacts,
    last_call_s: float | None = None,
    prefill: PrefillFacts | None = None,
) -> list[dict[str, Any]]:
    """One record per request of a window, energy and time split evenly over the batch and the
    window's repeats (the window's totals stay on every record for audit). TTFT and TPOT describe
    the last execution; a batch decodes until its longest output ends, so TPOT divides by that."""
    share = 1.0 / (len(items) * window.window_repeats)
    # One execution of the batch: the work's own time, not the closing tick wait.
    work_s = window.window_busy_s if window.window_busy_s is not None else window.window_s
    latency_s = work_s / window.window_repeats
    energy_j = window.window_energy_j * share
    idle_w = window.idle_power_w
    dynamic = None if idle_w is None else energy_j - idle_w * window.window_s * share
    avg_power_w = window.window_energy_j / window.window_s if window.window_s > 0 else None
    decode_steps = max(output_tokens, default=0) - 1
    tpot = None
    if ttft_s is not None and decode_steps > 0:
        call_s = last_call_s if last_call_s is not None else latency_s
        tpot = max(call_s - ttft_s, 0.0) / decode_steps
    rows = []
    for index, (item, inp, pred, n_out) in enumerate(
        zip(items, inputs, predictions, output_tokens, strict=True)
    ):
        row = {
            **base,
            "task": item["task"],
            "task_kind": item["kind"],
            "dataset": item.get("dataset"),
            "item_id": item["item_id"],
            "batch_index": index,
            **inp,
            "output_tokens": int(n_out),
            "latency_s": latency_s,
            "ttft_s": ttft_s,
            "tpot_s": tpot,
            "tokens_per_s": n_out / latency_s if latency_s > 0 else None,
            "energy_j": energy_j,
            "energy_kind": energy_kind(window.energy_source),
            "dynamic_energy_j": dynamic,
            "avg_power_w": avg_power_w,
            **asdict(window),
            **(asdict(prefill) if prefill is not None else {}),
            "prediction": pred,
            "references": list(item.get("references", [])),
            "status": "ok",
            "error": None,
        }
        rows.append(row | phase_split(row))
    return rows


def failure_records(
    *, base: Mapping[str, Any], items: Sequence[Mapping[str, Any]], status: str, error: str
) -> list[dict[str, Any]]:
    """A configuration that failed (e.g. out of memory) is recorded, not dropped."""
    return [
        {
            **base,
            "task": item["task"],
            "task_kind": item["kind"],
            "dataset": item.get("dataset"),
            "item_id": item["item_id"],
            "status": status,
            "error": error,
            "energy_kind": None,
        }
        for item in items
    ]


def resolve_clocks(cfg: Config, supported_sm_mhz: Sequence[int]) -> Config:
    """`cfg` with its clock points (gpu.freq, sweep.freqs_mhz) resolved to this device's MHz:
    fractions of the maximum, `auto:N` and MHz snapped to a supported clock, checked
    (device/freq.py: one line naming the values that do not resolve or collide). A device that
    reports no SM clocks (the cpu backend) leaves MHz as they are, for the clock session to refuse."""
    if not supported_sm_mhz:
        relative = [p for p in (*cfg.sweep.freqs_mhz, cfg.gpu.freq) if isinstance(p, float | str)]
        if relative:
            raise ClockPointError(
                f"clock point {relative[0]} is relative to the GPU's clocks, but this device "
                "reports no SM clocks (cpu backend): give MHz, or run on a GPU"
            )
        return cfg
    sweep = resolve_points(
        ((f"sweep.freqs_mhz[{i}]", p) for i, p in enumerate(cfg.sweep.freqs_mhz)), supported_sm_mhz
    )
    freq = resolve_points([("gpu.freq", cfg.gpu.freq)], supported_sm_mhz)
    if len(freq) != 1:
        raise ClockPointError(
            f"gpu.freq={cfg.gpu.freq} names several clocks: sweep them with sweep.freqs_mhz"
        )
    return dataclasses.replace(
        cfg,
        sweep=dataclasses.replace(cfg.sweep, freqs_mhz=tuple(mhz for _, mhz in sweep)),
        gpu=dataclasses.replace(cfg.gpu, freq=freq[0][1]),
    )


def needs_resolving(cfg: Config) -> bool:
    """Whether the clock points must be resolved on the device before a run: any relative point,
    or any cap that gpu.control=lock will set (MHz snap there, at most one step)."""
    points = [p for p in (*cfg.sweep.freqs_mhz, cfg.gpu.freq) if p is not None]
    relative = any(not isinstance(p, int) for p in points)
    return relative or (cfg.gpu.control == "lock" and bool(points))
