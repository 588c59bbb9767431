"""Overhead of the infer stage's path against a bare `model.generate` loop, in one process.

Infer side: the stage's own `InferenceRun` (the same Generator, meter windows with their tick
waits, TTFT streamer and record building). Bare side: `model.generate` on pre-built tensors with
the same generation settings, no streamer, no windows, no records; it replays the same prompts
the same number of times as the infer side's windows repeat them, so both sides do equal work.

Method (what the first H200 run got wrong: its first bare round absorbed the ~10 s cold phase,
it ran 2 rounds, and it compared summed per-request latencies with a wall clock):
- both sides are warmed to steady state first (last k latencies agree, time-capped);
- one untimed infer round fills the prompt cache and tells how often each prompt repeats;
- >= 7 interleaved rounds, the side that goes first alternating;
- each side is timed as the wall clock of its whole round (records, TTFT streamer, the
  project's window edges included); J/token comes from one counter window around each whole
  round (tick-aligned edges where the counter ticks);
- per-round ratios infer/bare, their medians with bootstrap CIs.

Goals: infer tokens/s >= 0.99x bare; J/token within +-2 % of bare.

    python benchmarks/overhead.py --model gpt2 --backend nvml          # random weights, bf16
    python benchmarks/overhead.py --stand-in                            # tiny model, simulated GPU
    python benchmarks/overhead.py --model mistral_7b --backend nvml --rounds 9 --out o.json
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from bare_side import bare_inputs, bare_round, generate_kwargs
from bench_common import (
    ROOT,
    WarmupSettings,
    benchmark_params,
    build_generator,
    observed_device,
    require_observe,
    restrict_tasks,
    round_window,
    sample_items,
    warm_until_steady,
    write_result,
)
from bench_stats import median_ratio
from llm_energy.config.settings import Config, load_config
from llm_energy.energy.meter import EnergyMeter
from llm_energy.io.prompts import read_prompt_templates
from llm_energy.paths import project_paths
from llm_energy.run.runner import InferenceRun

GOAL_TOKENS_PER_S_RATIO_MIN = 0.99
GOAL_J_PER_TOKEN_WITHIN = 0.02


class RowSink:
    """The infer side's `write`: keeps the rows of the current round."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def __call__(self, row: Mapping[str, Any]) -> None:
        self.rows.append(dict(row))


#: bootstrap resamples of the benchmark's paired-round medians (bench_stats)
BENCH_N_BOOT = 2000


def overhead_config(cfg: Config, task_name: str, new_tokens: int) -> Config:
    """The run's config for the comparison: one task, fixed output length, no warm-up inside a
    round (both sides are warmed before the rounds), one repetition per round."""
    raw = restrict_tasks(cfg.raw, [task_name])
    raw["infer"] = {
        **raw["infer"],
        "output_tokens": new_tokens,
        "output_mode": "fixed",
        "warmup_requests": 0,
        "repetitions": 1,
        "batch_size": 1,
    }
    return load_config(raw)


def infer_round(run: InferenceRun, sink: RowSink, meter: EnergyMeter) -> dict[str, Any]:
    """One whole `InferenceRun.run()`; one counter window around it (the run's own windows
    nest inside: nothing in them depends on the outer one)."""
    sink.rows.clear()
    with round_window(meter) as w:
        run.run()
    ok = [r for r in sink.rows if r["status"] == "ok"]
    if len(ok) != len(sink.rows):
        raise RuntimeError(f"infer round had failed requests: {[r['error'] for r in sink.rows]}")
    # Each repeat of a window regenerates the whole request: tokens = output x repeats.
    tokens = sum(int(r["output_tokens"]) * int(r["window_repeats"]) for r in ok)
    # Per-request energy is window energy / (repeats x batch): x repeats sums back to windows.
    recorded_j = sum(float(r["energy_j"]) * int(r["window_repeats"]) for r in ok)
    return {
        "tokens": tokens,
        "calls": sum(int(r["window_repeats"]) for r in ok),
        "wall_s": w.wall_s,
        "energy_j": w.energy_j,
        "counter_window_s": w.window_s,
        "tick_aligned": w.tick_aligned,
        "windows": len({r["window_id"] for r in ok}),
        "windows_s": sum({r["window_id"]: float(r["window_s"]) for r in ok}.values()),
        "windows_trusted": all(bool(r["window_trusted"]) for r in ok),
        "recorded_energy_j": recorded_j,
        "ttft_s_median": statistics.median(
            [float(r["ttft_s"]) for r in ok if r.get("ttft_s") is not None] or [math.nan]
        ),
    }


def _rate(side: Mapping[str, Any]) -> float:
    return side["tokens"] / side["wall_s"] if side["wall_s"] > 0 else math.nan


def _jpt(side: Mapping[str, Any], key: str = "energy_j") -> float:
    return side[key] / side["tokens"] if side["tokens"] else math.nan


def summarize_rounds(
    rounds: Sequence[Mapping[str, Any]], *, n_boot: int, level: float, seed: int
) -> dict[str, Any]:
    """Median per-round ratios (infer / bare) with bootstrap CIs, and the goal verdicts."""
    bare = [r["bare"] for r in rounds]
    infer = [r["infer"] for r in rounds]
    tps = median_ratio(
        [_rate(s) for s in infer], [_rate(s) for s in bare], n_boot=n_boot, level=level, seed=seed
    )
    jpt = median_ratio(
        [_jpt(s) for s in infer], [_jpt(s) for s in bare], n_boot=n_boot, level=level, seed=seed + 1
    )
    recorded = median_ratio(
        [_jpt(s, "recorded_energy_j") for s in infer if "recorded_energy_j" in s],
        [_jpt(b) for b, s in zip(bare, infer, strict=True) if "recorded_energy_j" in s],
        n_boot=n_boot,
        level=level,
        seed=seed + 2,
    )
    return {
        "tokens_per_s_ratio": tps.to_dict(),
        "j_per_token_ratio": jpt.to_dict(),
        # The stage's own per-request energy (inside its windows, tick tails included) over the
        # bare side's whole-round J/token: how far the records are from the bare truth.
        "recorded_j_per_token_ratio": recorded.to_dict(),
        "bare_tokens_per_s_median": statistics.median([_rate(s) for s in bare]),
        "infer_tokens_per_s_median": statistics.median([_rate(s) for s in infer]),
        "bare_j_per_token_median": statistics.median([_jpt(s) for s in bare]),
        "infer_j_per_token_median": statistics.median([_jpt(s) for s in infer]),
        "goal": {
            "tokens_per_s_ratio_min": GOAL_TOKENS_PER_S_RATIO_MIN,
            "j_per_token_ratio_within": GOAL_J_PER_TOKEN_WITHIN,
        },
        "pass_tokens_per_s": tps.median >= GOAL_TOKENS_PER_S_RATIO_MIN,
        "pass_j_per_token": abs(jpt.median - 1.0) <= GOAL_J_PER_TOKEN_WITHIN,
    }


def run_overhead(
    cfg: Config,
    *,
    gen: Any,
    meter: EnergyMeter,
    clocks: Any,
    device: Any,
    task_name: str = "generation",
    n_items: int = 1,
    new_tokens: int = 64,
    rounds: int = 8,
    warmup: WarmupSettings | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """The whole comparison for one loaded model; returns a JSON-able dict with every round."""
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds!r}")
    warmup = warmup or WarmupSettings()
    ocfg = overhead_config(cfg, task_name, new_tokens)
    task = ocfg.task(task_name)
    items = sample_items(ocfg, task_name, n_items)
    sink = RowSink()
    run = InferenceRun(
        ocfg,
        generator=gen,
        meter=meter,
        clocks=clocks,
        device=device,
        items_by_task={task_name: items},
        templates=read_prompt_templates(ocfg, project_paths(ROOT)),
        write=sink,
    )
    prompt_ids = [run.prompt_ids(task, item, None, new_tokens) for item in items]
    inputs = [bare_inputs(gen, ids) for ids in prompt_ids]
    kwargs = generate_kwargs(gen, new_tokens)

    def one_infer_call() -> None:
        gen.generate([prompt_ids[0]], max_new_tokens=new_tokens, fixed=True, measure_ttft=True)

    def one_bare_call() -> None:
        import torch

        with torch.inference_mode():
            gen.model.generate(**inputs[0], **kwargs)
        device.synchronize()

    t0 = time.perf_counter()
    warm_infer = warm_until_steady(
        one_infer_call,
        k=warmup.k,
        tolerance=warmup.tolerance,
        max_s=warmup.max_s,
        min_s=warmup.min_s,
    )
    # The bare side shares the process and GPU; its own calls still get their own check.
    warm_bare = warm_until_steady(
        one_bare_call, k=warmup.k, tolerance=warmup.tolerance, max_s=warmup.max_s
    )
    log(
        f"  warm-up: infer {len(warm_infer.latencies_s)} calls ({warm_infer.stopped_by}), "
        f"bare {len(warm_bare.latencies_s)} calls ({warm_bare.stopped_by}), "
        f"{time.perf_counter() - t0:.1f} s"
    )
    calibration = infer_round(run, sink, meter)
    repeats_by_item = {r["item_id"]: int(r["window_repeats"]) for r in sink.rows}
    plan = [
        (inp, repeats_by_item[str(item["item_id"])])
        for inp, item in zip(inputs, items, strict=True)
    ]
    results: list[dict[str, Any]] = []
    for r in range(rounds):
        first = "bare" if r % 2 == 0 else "infer"
        sides: dict[str, dict[str, Any]] = {}
        for side in (first, "infer" if first == "bare" else "bare"):
            sides[side] = (
                bare_round(gen, meter, plan, new_tokens)
                if side == "bare"
                else infer_round(run, sink, meter)
            )
        results.append({"round": r, "first": first, **sides})
        log(
            f"  round {r} ({first} first): tok/s bare {_rate(sides['bare']):.2f} "
            f"infer {_rate(sides['infer']):.2f}; J/token bare {_jpt(sides['bare']):.4g} "
            f"infer {_jpt(sides['infer']):.4g}"
        )
    return {
        "model": cfg.model.name,
        "dtype": cfg.model.dtype,
        "weights": cfg.model.weights,
        "torch_device": gen.device,
        "energy_source": device.energy_source,
        "device": device.provenance(),
        "task": task_name,
        "items": len(items),
        "new_tokens": new_tokens,
        "repeats_by_item": repeats_by_item,
        "meter": {
            "update_period_s": meter.update_period_s,
            "min_trusted_s": meter.min_trusted_s,
            "tick_align": meter.tick_align,
        },
        "warmup": {
            "settings": warmup.__dict__,
            "infer": warm_infer.to_dict(),
            "bare": warm_bare.to_dict(),
        },
        "calibration_round": calibration,
        "rounds": results,
        **summarize_rounds(
            results,
            n_boot=BENCH_N_BOOT,
            level=cfg.aggregate.ci_level,
            seed=cfg.meta.seed,
        ),
        "elapsed_s": time.perf_counter() - t0,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("overrides", nargs="*", help="params overrides, e.g. gpu.min_window_s=1")
    parser.add_argument("--model", default="gpt2", help="conf/model/<name>.yaml, random weights")
    parser.add_argument("--backend", default="nvml", choices=["nvml", "simulated", "cpu"])
    parser.add_argument(
        "--stand-in", action="store_true", help="tiny_gpt2 on the simulated GPU (CPU)"
    )
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--items", type=int, default=1, help="prompts per round")
    parser.add_argument("--tokens", type=int, default=64, help="new tokens per request (fixed)")
    parser.add_argument("--task", default="generation")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args(argv)

    overrides = list(args.overrides)
    model, backend, dtype, period = args.model, args.backend, None, None
    if args.stand_in:
        model, backend, period = "tiny_gpt2", "simulated", 0.01
        overrides = ["gpu.min_window_s=0", *overrides]
    elif backend == "nvml":
        dtype = "bfloat16"
    cfg = load_config(benchmark_params(model, backend=backend, dtype=dtype, overrides=overrides))
    require_observe(cfg)
    with tempfile.TemporaryDirectory(prefix="llm-energy-overhead-") as tmp:
        state_dir = Path(tmp) / "state"
        with observed_device(cfg, state_dir, update_period_s=period) as (device, clocks, meter):
            meter.measure_update_period_s()
            gen = build_generator(cfg, device, Path(tmp))
            result = run_overhead(
                cfg,
                gen=gen,
                meter=meter,
                clocks=clocks,
                device=device,
                task_name=args.task,
                n_items=args.items,
                new_tokens=args.tokens,
                rounds=args.rounds,
            )
    tps, jpt = result["tokens_per_s_ratio"], result["j_per_token_ratio"]
    print(
        f"\n{result['model']} on {device.backend} ({result['energy_source']}), "
        f"{args.rounds} rounds, medians infer/bare:\n"
        f"  tokens/s ratio {tps['median']:.4f} (95 % CI {tps['ci_low']:.4f}-{tps['ci_high']:.4f})"
        f"  goal >= {GOAL_TOKENS_PER_S_RATIO_MIN}\n"
        f"  J/token ratio  {jpt['median']:.4f} (95 % CI {jpt['ci_low']:.4f}-{jpt['ci_high']:.4f})"
        f"  goal 1 +- {GOAL_J_PER_TOKEN_WITHIN}"
    )
    write_result(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
