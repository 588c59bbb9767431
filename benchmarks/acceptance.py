"""GPU acceptance in one command: measurement overhead, repeatability and tick alignment.

Run it through `benchmarks/gpu_acceptance.sh` (it sets PYTHONPATH and refuses any clock
control). OBSERVE MODE ONLY: nothing here calls a setter; clocks, power limits and the GPU's
state are left as they are. Random-weight models only (no hub access): GPT-2 and Mistral-7B
architectures built from their configs directly on the GPU in bf16.

Phases, in this order, each skipped (and reported SKIP) when the time budget cannot hold it:
1. overhead, GPT-2 arch: benchmarks/overhead.py (infer path vs bare generate, >= 7 rounds);
2. overhead, Mistral-7B arch;
3. repeatability, Mistral-7B arch: 5 repetitions of one request per task shape (generation 32,
   qa 16, summarization 48 fixed new tokens) through the infer path; J/token CV per task;
4. tick-aligned vs random-phase windows around the same steady Mistral-7B work;
5. repeatability, GPT-2 arch, if time is left.

One table of figures against goals (PASS / FAIL / SKIP) is printed, and everything measured,
every round and window included, goes to benchmarks/results/<gpu-name>-<date>.json.

`--stand-in` (or LLM_ENERGY_STAND_IN=1) runs the same phases on a CPU with tiny random models
and the simulated H200 (counter ticking every 10 ms for the infer path, every 100 ms for the
tick comparison), in well under a minute. Its figures test the code, not the hardware.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench_common import (
    ROOT,
    Plan,
    WarmupSettings,
    benchmark_params,
    build_generator,
    meter_for,
    observed_device,
    open_benchmark_device,
    require_observe,
    sample_items,
)
from goal_rows import (
    GoalRow,
    overhead_rows,
    print_table,
    repeat_rows,
    skip_rows,
    split_rows,
    tick_rows,
    verdict,
)
from llm_energy.config.settings import Config, load_config
from llm_energy.errors import UserFacingError, one_line
from llm_energy.io.files import write_json
from llm_energy.run.provenance import git_commit
from overhead import run_overhead
from repeatability import RunParts, phase_split, repeatability
from tick_alignment import generate_work, run_tick_benchmark, sleep_work

EXIT_GOALS_NOT_MET = 3  # ran to the end, but some goal failed or was skipped
RESULTS_DIR = ROOT / "benchmarks" / "results"


def make_plan(stand_in: bool, budget_s: float | None) -> Plan:
    if stand_in:
        return Plan(
            stand_in=True,
            backend="simulated",
            models={"gpt2": "tiny_gpt2", "mistral_7b": "tiny_mistral"},
            dtype=None,
            budget_s=budget_s or 50.0,
            overhead_rounds=7,
            overhead_tokens=8,
            first_warmup=WarmupSettings(k=3, tolerance=0.15, max_s=1.0),
            warmup=WarmupSettings(k=3, tolerance=0.15, max_s=1.0),
            repetitions=5,
            repeat_items=1,
            runner_warmup_max_s=1.0,
            tick_windows=6,
            tick_periods=3.5,
            tick_tokens=4,
            update_period_s=0.01,
            tick_update_period_s=0.1,
            # The simulated counter's 10 ms tick makes 20 periods a 0.2 s window.
            overrides=("gpu.min_window_s=0",),
        )
    return Plan(
        stand_in=False,
        backend="nvml",
        models={"gpt2": "gpt2", "mistral_7b": "mistral_7b"},
        dtype="bfloat16",
        budget_s=budget_s or 225.0,
        overhead_rounds=7,
        overhead_tokens=64,
        # H200 anchors: a fresh process runs ~3x slower for ~10 s, and can be steady while slow.
        first_warmup=WarmupSettings(k=5, tolerance=0.03, max_s=25.0, min_s=12.0),
        # A newly built model can have a cold phase of its own (allocator, kernel selection).
        warmup=WarmupSettings(k=5, tolerance=0.03, max_s=20.0, min_s=8.0),
        repetitions=5,
        repeat_items=1,
        runner_warmup_max_s=20.0,
        tick_windows=12,
        tick_periods=5.5,
        tick_tokens=16,
        update_period_s=None,
        tick_update_period_s=None,
    )


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "unknown"


def _environment() -> dict[str, Any]:
    import torch
    import transformers

    env: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "cuda": torch.version.cuda,
        "host": platform.node(),
        "git_commit": git_commit(ROOT),
    }
    if torch.cuda.is_available():
        env["cuda_device"] = torch.cuda.get_device_name(0)
    return env


# (phase, model role, estimated seconds on the GPU, on the stand-in); run in this order.
PHASES: tuple[tuple[str, str, float, float], ...] = (
    ("overhead", "gpt2", 70.0, 8.0),
    ("split", "gpt2", 15.0, 3.0),  # prefill vs decode (issue 20): short, so before the long ones
    ("overhead", "mistral_7b", 75.0, 8.0),
    ("split", "mistral_7b", 20.0, 3.0),
    ("repeat", "mistral_7b", 45.0, 5.0),
    ("tick", "mistral_7b", 25.0, 7.0),
    ("repeat", "gpt2", 40.0, 5.0),
)


def run_acceptance(
    plan: Plan, results_dir: Path, log: Callable[[str], None] = print
) -> dict[str, Any]:
    """Every phase that fits the budget, one goal table, one JSON file; returns the report."""
    t_start = time.perf_counter()

    def left_s() -> float:
        return plan.budget_s - (time.perf_counter() - t_start)

    cfgs = {
        role: load_config(
            benchmark_params(name, backend=plan.backend, dtype=plan.dtype, overrides=plan.overrides)
        )
        for role, name in plan.models.items()
    }
    for cfg in cfgs.values():
        require_observe(cfg)
    rows: list[GoalRow] = []
    results: dict[str, Any] = {
        "phases": [],
        "overhead": {},
        "repeatability": {},
        "split": {},
        "tick": None,
        "skipped": [],
    }
    with tempfile.TemporaryDirectory(prefix="llm-energy-acceptance-") as tmp:
        workdir = Path(tmp)
        state_dir = workdir / "state"
        base_cfg = cfgs["gpt2"]
        with observed_device(base_cfg, state_dir, update_period_s=plan.update_period_s) as (
            device,
            clocks,
            meter,
        ):
            period_s = meter.measure_update_period_s()
            log(
                f"device: {device.name()} ({device.backend}, {device.energy_source}); counter "
                f"update period {period_s * 1000:.1f} ms; budget {plan.budget_s:.0f} s"
            )
            gens: dict[str, Any] = {}
            build_s: dict[str, float] = {}
            first_warmup = True
            for phase, role, gpu_est_s, cpu_est_s in PHASES:
                est_s = cpu_est_s if plan.stand_in else gpu_est_s
                if role not in gens:
                    est_s += 10.0 if not plan.stand_in else 1.0  # model build
                if left_s() < est_s:
                    reason = f"time budget: {left_s():.0f} s left, ~{est_s:.0f} s needed"
                    results["skipped"].append({"phase": phase, "model": role, "reason": reason})
                    log(f"{phase} {role}: SKIP ({reason})")
                    rows += skip_rows(phase, role, reason)
                    continue
                cfg = cfgs[role]
                if role not in gens:
                    t0 = time.perf_counter()
                    gens[role] = build_generator(cfg, device, workdir)
                    build_s[role] = time.perf_counter() - t0
                    log(f"{role}: {cfg.model.name} built in {build_s[role]:.1f} s")
                gen = gens[role]
                log(f"{phase} {role}:")
                t_phase = time.perf_counter()
                if phase == "overhead":
                    result = run_overhead(
                        cfg,
                        gen=gen,
                        meter=meter,
                        clocks=clocks,
                        device=device,
                        new_tokens=plan.overhead_tokens,
                        rounds=plan.overhead_rounds,
                        warmup=plan.first_warmup if first_warmup else plan.warmup,
                        log=log,
                    )
                    first_warmup = False
                    result["build_s"] = build_s[role]
                    results["overhead"][role] = result
                    rows += overhead_rows(role, result)
                elif phase == "split":
                    result = phase_split(cfg, RunParts(gen, meter, clocks, device), plan, log)
                    results["split"][role] = result
                    rows += split_rows(role, result)
                elif phase == "repeat":
                    result = repeatability(cfg, RunParts(gen, meter, clocks, device), plan, log)
                    results["repeatability"][role] = result
                    rows += repeat_rows(role, result)
                else:
                    result = _tick(gen, cfg, device, period_s, state_dir, plan, log)
                    results["tick"] = result
                    rows += tick_rows(role, result)
                results["phases"].append(
                    {"phase": phase, "model": role, "elapsed_s": time.perf_counter() - t_phase}
                )
            gens.clear()
            device_name = device.name()
            provenance = device.provenance()
    elapsed = time.perf_counter() - t_start
    limit_s = 60.0 if plan.stand_in else 240.0
    rows.append(
        GoalRow(
            "acceptance wall time (after imports)",
            "all",
            f"{elapsed:.0f} s",
            f"<= {limit_s:.0f} s",
            verdict(elapsed <= limit_s),
            elapsed,
        )
    )
    date = time.strftime("%Y-%m-%d", time.gmtime())
    name = ("stand-in-" if plan.stand_in else "") + _slug(device_name)
    out_path = results_dir / f"{name}-{date}.json"
    report = {
        "gpu": device_name,
        "stand_in": plan.stand_in,
        "observe_only": True,
        "date": date,
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "elapsed_s": elapsed,
        "plan": asdict(plan),
        "device": provenance,
        "environment": _environment(),
        "goals": [r.to_dict() for r in rows],
        "all_pass": all(r.status == "PASS" for r in rows),
        **results,
        "results_file": str(out_path),
    }
    results_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_path, report)
    log("")
    print_table(rows, log)
    log(f"\n{'ALL PASS' if report['all_pass'] else 'NOT ALL PASS'}; results: {out_path}")
    return report


def _tick(
    gen: Any,
    cfg: Config,
    device: Any,
    period_s: float,
    state_dir: Path,
    plan: Plan,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """The tick comparison: around the model's own steady generate calls on a GPU; on the
    stand-in around sleeps (steady by construction) on a simulated GPU ticking every 100 ms."""
    if not plan.stand_in:
        ids = gen.encode(sample_items(cfg, "generation", 1)[0]["fields"]["text"])
        return run_tick_benchmark(
            device,
            generate_work(gen, ids, plan.tick_tokens),
            period_s=period_s,
            windows=plan.tick_windows,
            periods=plan.tick_periods,
            seed=cfg.meta.seed,
            log=log,
        )
    # A second simulated GPU (index 1): its own counter, ticking like NVML's.
    tick_device = open_benchmark_device(
        cfg, state_dir, update_period_s=plan.tick_update_period_s, index=1
    )
    with tick_device:
        return run_tick_benchmark(
            tick_device,
            sleep_work(0.02),
            period_s=meter_for(cfg, tick_device).measure_update_period_s(),
            windows=plan.tick_windows,
            periods=plan.tick_periods,
            seed=cfg.meta.seed,
            log=log,
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--stand-in",
        action="store_true",
        default=os.environ.get("LLM_ENERGY_STAND_IN", "") not in ("", "0"),
        help="CPU: tiny random models on the simulated H200 (also LLM_ENERGY_STAND_IN=1)",
    )
    parser.add_argument("--budget-s", type=float, help="time budget (default 225 GPU, 50 stand-in)")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    plan = make_plan(args.stand_in, args.budget_s)
    try:
        report = run_acceptance(plan, args.results_dir)
    except UserFacingError as exc:  # no driver, no GPU, no permission: one line, not a traceback
        print(
            f"gpu_acceptance: {one_line(str(exc))} (on a machine without a GPU: --stand-in)",
            file=sys.stderr,
        )
        return 2
    return 0 if report["all_pass"] else EXIT_GOALS_NOT_MET


if __name__ == "__main__":
    sys.exit(main())
