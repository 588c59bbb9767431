"""Repeatability phase of the acceptance run (benchmarks/acceptance.py): the same requests
repeated through the infer path, J/token per repetition and its CV per task."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench_common import ROOT, Plan, restrict_tasks, sample_items
from bench_stats import cv
from goal_rows import REPEAT_TASKS, pct
from llm_energy.config.settings import Config, load_config
from llm_energy.energy.meter import EnergyMeter
from llm_energy.io.prompts import read_prompt_templates
from llm_energy.paths import project_paths
from llm_energy.run.runner import InferenceRun
from overhead import RowSink


@dataclass(frozen=True)
class RunParts:
    """What an InferenceRun measures with: the generator, meter, clocks and device."""

    gen: Any
    meter: EnergyMeter
    clocks: Any
    device: Any


def through_runner(
    cfg: Config, tasks: tuple[str, ...], infer: dict[str, Any], plan: Plan, parts: RunParts
) -> tuple[InferenceRun, Any, list[dict[str, Any]]]:
    """`plan.repeat_items` items of each task, batch 1, fixed output length, through
    InferenceRun (the stage's warm-up, windows, records) with `infer` on top. Returns the run,
    its totals and the ok rows."""
    raw = restrict_tasks(cfg.raw, tasks)
    raw["infer"] = {
        **raw["infer"],
        "output_mode": "fixed",  # the same token count every repetition
        "output_tokens": None,  # each task's own length
        "batch_size": 1,
        "warmup_max_s": plan.runner_warmup_max_s,
        **infer,
    }
    rcfg = load_config(raw)
    sink = RowSink()
    run = InferenceRun(
        rcfg,
        generator=parts.gen,
        meter=parts.meter,
        clocks=parts.clocks,
        device=parts.device,
        items_by_task={t: sample_items(rcfg, t, plan.repeat_items) for t in tasks},
        templates=read_prompt_templates(rcfg, project_paths(ROOT)),
        write=sink,
    )
    totals = run.run()
    return run, totals, [r for r in sink.rows if r["status"] == "ok"]


def repeatability(
    cfg: Config, parts: RunParts, plan: Plan, log: Callable[[str], None] = print
) -> dict[str, Any]:
    """`plan.repetitions` repetitions of the same requests per task shape through InferenceRun
    (the stage's warm-up, windows, records); J/token per repetition and its CV per task."""
    t0 = time.perf_counter()
    infer = {"repetitions": plan.repetitions, "phases": False}  # the split: phase_split below
    run, totals, ok = through_runner(cfg, REPEAT_TASKS, infer, plan, parts)
    tasks: dict[str, Any] = {}
    for task in REPEAT_TASKS:
        per_rep: dict[int, list[dict[str, Any]]] = {}
        for r in ok:
            if r["task"] == task:
                per_rep.setdefault(int(r["rep"]), []).append(r)
        jpt = [
            sum(float(r["energy_j"]) for r in rows) / sum(int(r["output_tokens"]) for r in rows)
            for _, rows in sorted(per_rep.items())
        ]
        tasks[task] = {
            "repetitions": len(jpt),
            "j_per_token": jpt,
            "j_per_token_mean": statistics.fmean(jpt) if jpt else math.nan,
            "j_per_token_cv": cv(jpt),
            "windows_untrusted": sum(
                1 for r in ok if r["task"] == task and not r["window_trusted"]
            ),
            "window_s": [float(r["window_s"]) for r in ok if r["task"] == task],
            "window_repeats": [int(r["window_repeats"]) for r in ok if r["task"] == task],
        }
        log(f"  {task}: J/token CV {pct(tasks[task]['j_per_token_cv'])} over {len(jpt)} reps")
    warm = run.warmup_record
    return {
        "model": cfg.model.name,
        "tasks": tasks,
        "requests_ok": len(ok),
        "requests_failed": totals.requests_failed,
        "warnings": list(totals.warnings),
        "runner_warmup": warm.to_dict() if warm is not None else None,
        "elapsed_s": time.perf_counter() - t0,
    }


def phase_split(
    cfg: Config, parts: RunParts, plan: Plan, log: Callable[[str], None] = print
) -> dict[str, Any]:
    """Prefill vs decode of the generation task through InferenceRun with infer.phases (each
    batch's prefill in its own windows, decode the rest): the decode shares of time and energy
    (Σ/Σ over requests), and how well prefill + decode match each request's total."""
    _, _, rows = through_runner(cfg, ("generation",), {"phases": True}, plan, parts)
    ok = [r for r in rows if r.get("prefill_energy_j") is not None]

    def total(key: str) -> float:
        return sum(float(r[key]) for r in ok)

    mismatch = (
        max(
            (abs(r["prefill_energy_j"] + r["decode_energy_j"] - r["energy_j"]) / r["energy_j"])
            for r in ok
        )
        if ok
        else math.nan
    )
    result = {
        "model": cfg.model.name,
        "requests": len(ok),
        "decode_share_time": total("decode_time_s") / total("latency_s") if ok else math.nan,
        "decode_share_energy": total("decode_energy_j") / total("energy_j") if ok else math.nan,
        "prefill_j_per_request": total("prefill_energy_j") / len(ok) if ok else math.nan,
        "decode_j_per_request": total("decode_energy_j") / len(ok) if ok else math.nan,
        "min_decode_energy_j": min((float(r["decode_energy_j"]) for r in ok), default=math.nan),
        "max_sum_mismatch": mismatch,
        "prefill_windows_untrusted": sum(1 for r in ok if not r["prefill_window_trusted"]),
    }
    log(
        f"  decode {pct(result['decode_share_time'])} of the time, "
        f"{pct(result['decode_share_energy'])} of the energy over {len(ok)} requests"
    )
    return result
