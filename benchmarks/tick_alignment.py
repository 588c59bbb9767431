"""Tick-aligned versus random-phase energy windows around the same steady work.

The energy counter publishes a new value every update period (H200: ~0.1 s). A window around a
piece of work whose edges fall at random phases measures an interval shifted by up to one
period at each edge: it counts idle time before the work and misses the work's last moments
(anchors: 0.5 s windows spread +-8 %). A tick-aligned window (`EnergyMeter(tick_align=True)`)
reads each edge right after a counter update: the work starts on a tick and every joule of it
is counted; what is left is the idle tail until the closing tick (`tail_s`, <= one period).

This benchmark warms a model to steady state, sizes a fixed chunk of work (back-to-back
`generate` calls) to about `periods` update periods, and measures it repeatedly in windows of
both kinds, interleaved (the kind that goes first alternates; a random pause before each window
makes its phase random). It reports every window and the spread (CV, min-max) of each kind.
Goal: tick-aligned windows spread less than random-phase ones.

The default work length, 5.5 periods, is what a typical request is: some fraction off a tick
boundary. At an exact multiple (`--periods 5`) the closing tick falls either just after the
work or one period later, so the idle tail (and the tick-aligned energy) becomes bimodal; the
tail-corrected figure (energy - tail x idle power, idle measured once) shows what remains then.

Works on NVML (a real GPU, observe only) and on the simulated device, whose counter ticks like
NVML's, so it also runs on a CPU:

    python benchmarks/tick_alignment.py --stand-in                   # simulated H200, tiny model
    python benchmarks/tick_alignment.py --backend nvml --model gpt2  # real GPU, random weights
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench_common import (
    benchmark_params,
    build_generator,
    open_benchmark_device,
    require_observe,
    sample_items,
    warm_until_steady,
    write_result,
)
from bench_stats import cv
from llm_energy.config.settings import load_config
from llm_energy.energy.meter import EnergyMeter


def generate_work(gen: Any, ids: Sequence[int], new_tokens: int) -> Callable[[], None]:
    """One bare `generate` call of fixed length (no streamer, no records): the unit of work."""
    import torch

    input_ids = torch.tensor([list(ids)], device=gen.device)
    kwargs = {
        "input_ids": input_ids,
        "attention_mask": torch.ones_like(input_ids),
        "max_new_tokens": new_tokens,
        "min_new_tokens": new_tokens,
        "do_sample": False,
        "disable_compile": True,
    }

    def call() -> None:
        with torch.inference_mode():
            gen.model.generate(**kwargs)

    return call


def sleep_work(seconds: float) -> Callable[[], None]:
    """Work for the simulated device, whose power model counts wall time inside a window as
    busy: a sleep is exactly steady, where a tiny model on a shared CPU is not (its call times
    vary by tens of percent, which would drown the edge effect this benchmark is about)."""

    def call() -> None:
        time.sleep(seconds)

    return call


def window_meters(device: Any, period_s: float) -> tuple[EnergyMeter, EnergyMeter]:
    """(tick-aligned, random-phase) meters on one device. Short windows are the point here, so
    neither imposes a duration floor."""
    common = {"min_window_periods": 1, "min_window_s": 0.0, "update_period_s": period_s}
    return (
        EnergyMeter(device, tick_align=True, **common),
        EnergyMeter(device, tick_align=False, **common),
    )


def measure_window(
    meter: EnergyMeter, work: Callable[[], None], calls: int, idle_w: float
) -> dict[str, Any]:
    with meter.window() as w:
        for _ in range(calls):
            work()
    r = w.reading
    assert r is not None
    return {
        "energy_j": r.energy_j,
        # The idle wait for the closing tick is inside the window: take it out at idle power.
        "energy_tail_corrected_j": r.energy_j - r.tail_s * idle_w,
        "elapsed_s": r.elapsed_s,
        "busy_s": r.busy_s,
        "tail_s": r.tail_s,
        "tick_aligned": r.tick_aligned,
    }


def summarize_windows(windows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    energies = [w["energy_j"] for w in windows if math.isfinite(w["energy_j"])]
    mean = statistics.fmean(energies) if energies else math.nan
    return {
        "n": len(windows),
        "energy_j_mean": mean,
        "energy_cv": cv(energies),
        "energy_tail_corrected_cv": cv([w["energy_tail_corrected_j"] for w in windows]),
        "energy_spread_pct": (max(energies) - min(energies)) / 2 / mean * 100
        if energies and mean
        else math.nan,
        "elapsed_s_mean": statistics.fmean(w["elapsed_s"] for w in windows)
        if windows
        else math.nan,
        "busy_s_cv": cv([w["busy_s"] for w in windows if w["busy_s"] is not None]),
        "tail_s_mean": statistics.fmean(w["tail_s"] for w in windows) if windows else math.nan,
    }


def run_tick_benchmark(
    device: Any,
    work: Callable[[], None],
    *,
    period_s: float,
    windows: int = 12,
    periods: float = 5.5,
    idle_s: float = 1.0,
    warmup_max_s: float = 20.0,
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """`windows` windows of each kind around the same fixed work (~`periods` update periods).
    Returns every window, the spread of each kind and whether tick alignment spread less."""
    if windows < 2 or periods < 1 or idle_s <= 0:
        raise ValueError("need at least 2 windows of each kind, each at least 1 period long")
    t_start = time.perf_counter()
    warm = warm_until_steady(work, k=5, tolerance=0.05, max_s=warmup_max_s)
    call_s = statistics.median(warm.latencies_s[-5:])
    calls = max(1, round(periods * period_s / call_s))
    tick_meter, random_meter = window_meters(device, period_s)
    idle_w = tick_meter.measure_idle_power_w(idle_s)
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []
    for i in range(windows):
        kinds = ("tick", "random") if i % 2 == 0 else ("random", "tick")
        for kind in kinds:
            time.sleep(rng.uniform(0.0, period_s))  # a phase independent of the last window
            meter = tick_meter if kind == "tick" else random_meter
            rows.append({"index": i, "kind": kind, **measure_window(meter, work, calls, idle_w)})
    tick = summarize_windows([r for r in rows if r["kind"] == "tick"])
    rand = summarize_windows([r for r in rows if r["kind"] == "random"])
    log(
        f"  {calls} call(s) of {call_s * 1000:.0f} ms per window; tick-aligned energy CV "
        f"{tick['energy_cv']:.2%} (+-{tick['energy_spread_pct']:.1f} %), random phase "
        f"{rand['energy_cv']:.2%} (+-{rand['energy_spread_pct']:.1f} %); tick-aligned minus idle "
        f"tail {tick['energy_tail_corrected_cv']:.2%}"
    )
    return {
        "energy_source": device.energy_source,
        "update_period_s": period_s,
        "periods_per_window": periods,
        "calls_per_window": calls,
        "idle_w": idle_w,
        "call_s": call_s,
        "warmup": warm.to_dict(),
        "windows_per_kind": windows,
        "tick_aligned": tick,
        "random_phase": rand,
        "cv_ratio_random_over_tick": rand["energy_cv"] / tick["energy_cv"]
        if tick["energy_cv"]
        else math.inf,
        "pass": bool(tick["energy_cv"] < rand["energy_cv"]),
        "windows": rows,
        "elapsed_s": time.perf_counter() - t_start,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="gpt2", help="conf/model/<name>.yaml, random weights")
    parser.add_argument("--backend", default="nvml", choices=["nvml", "simulated"])
    parser.add_argument(
        "--stand-in",
        action="store_true",
        help="the simulated H200 (CPU), with 20 ms sleeps as its steady work",
    )
    parser.add_argument("--windows", type=int, default=12, help="windows of each kind")
    parser.add_argument(
        "--periods", type=float, default=5.5, help="update periods of work per window"
    )
    parser.add_argument("--tokens", type=int, default=16, help="new tokens per generate call")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    model, backend, dtype = args.model, args.backend, None
    if args.stand_in:
        model, backend = "tiny_gpt2", "simulated"
    elif backend == "nvml":
        dtype = "bfloat16"
    cfg = load_config(benchmark_params(model, backend=backend, dtype=dtype))
    require_observe(cfg)
    with tempfile.TemporaryDirectory(prefix="llm-energy-tick-") as tmp:
        device = open_benchmark_device(cfg, Path(tmp) / "state")
        with device:
            period_s = EnergyMeter(device).measure_update_period_s()
            if args.stand_in:
                work = sleep_work(0.02)
            else:
                gen = build_generator(cfg, device, Path(tmp))
                ids = gen.encode(sample_items(cfg, "generation", 1)[0]["fields"]["text"])
                work = generate_work(gen, ids, args.tokens)
            result = run_tick_benchmark(
                device,
                work,
                period_s=period_s,
                windows=args.windows,
                periods=args.periods,
                seed=cfg.meta.seed,
            )
    print(json.dumps({k: v for k, v in result.items() if k != "windows"}, indent=2, default=str))
    write_result(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
