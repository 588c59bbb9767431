"""Overhead of the infer stage's measurement path against a bare `model.generate` loop.

Same model, same prompts, same output length, same process; rounds alternate bare / infer so that
drift (temperature, turbo, other load) hits both sides alike. The bare side's energy comes from one
meter window around each whole round (no per-request synchronisation); the infer side is the
stage's own InferenceRun with its per-request windows, TTFT streamer and record building.

Goal (issue 3): infer tokens/s >= 0.99x bare, J/token within +-2 %.

    python benchmarks/overhead.py                         # embedded model from `dvc repro model`
    python benchmarks/overhead.py model.weights=random    # any params override (dotted keys)
    LLM_ENERGY_PARAMS=other.yaml python benchmarks/overhead.py --rounds 5 --out results.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from llm_energy.config import apply_overrides, load_config  # noqa: E402
from llm_energy.hw import ClockSession, EnergyMeter, open_device  # noqa: E402
from llm_energy.io.files import read_jsonl, read_yaml  # noqa: E402
from llm_energy.paths import project_paths  # noqa: E402
from llm_energy.runtime.engine import Generator, load_generator  # noqa: E402
from llm_energy.runtime.runner import InferenceRun  # noqa: E402


def _bare_round(
    gen: Generator, meter: EnergyMeter, prompts: list[list[int]], n_new: int
) -> dict[str, float]:
    """Plain generate calls; one window around the whole round (sync at its edges only)."""
    import torch

    tokens = 0
    # inference_mode as in Generator.generate: otherwise the ratio measures autograd bookkeeping
    # (no_grad vs inference_mode, ~7 % on CPU here), not the measurement path.
    with torch.inference_mode(), meter.window() as handle:
        for ids in prompts:
            out = gen.model.generate(
                **gen._batch([ids]), max_new_tokens=n_new, min_new_tokens=n_new, do_sample=False
            )
            tokens += int(out.shape[1] - len(ids))
    reading = handle.reading
    return {"tokens": tokens, "elapsed_s": reading.elapsed_s, "energy_j": reading.energy_j}


def _infer_round(
    cfg: Any, gen: Generator, meter: EnergyMeter, clocks: Any, device: Any, items: dict
) -> dict[str, float]:
    rows: list[dict[str, Any]] = []
    run = InferenceRun(
        cfg,
        generator=gen,
        meter=meter,
        clocks=clocks,
        device=device,
        items_by_task=items,
        write=rows.append,
    )
    run.run()
    ok = [r for r in rows if r["status"] == "ok"]
    # Per-request latency and energy are per execution; sum them like the bare side.
    return {
        "tokens": sum(r["output_tokens"] for r in ok),
        "elapsed_s": sum(r["latency_s"] for r in ok),
        "energy_j": sum(r["energy_j"] for r in ok),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("overrides", nargs="*")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--items", type=int, default=6, help="prompts per round (from data/prepared)"
    )
    parser.add_argument(
        "--tokens", type=int, default=32, help="new tokens per request (fixed length)"
    )
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args()

    paths = project_paths(ROOT)
    params_file = Path(os.environ.get("LLM_ENERGY_PARAMS", paths.params))
    overrides = [
        *args.overrides,
        f"infer.output_tokens={args.tokens}",
        "infer.output_mode=fixed",
        "infer.warmup_requests=0",
        "infer.repetitions=1",
        "gpu.idle_baseline_s=0",
        "sweep.freqs_mhz=[]",
        "sweep.batch_sizes=[]",
        "sweep.input_tokens=[]",
        "sweep.output_tokens=[]",
        "sweep.engines=[]",
    ]
    cfg = load_config(apply_overrides(read_yaml(params_file), overrides))
    task = cfg.tasks[0]
    items = {task.name: read_jsonl(paths.prepared_dir / f"{task.name}.jsonl")[: args.items]}
    raw = dict(cfg.raw)
    raw["task"] = {task.name: raw["task"][task.name]}  # one task keeps the comparison like for like
    cfg = load_config(raw)

    device = open_device(
        cfg.gpu.backend, cfg.gpu.index, state_dir=paths.state_dir, seed=cfg.meta.seed
    )
    with (
        device,
        ClockSession(device, control="observe", journal_dir=paths.state_dir / "journal") as clocks,
    ):
        meter = EnergyMeter(device, min_window_periods=cfg.gpu.min_window_periods)
        meter.measure_update_period_s()
        gen = load_generator(cfg.model, paths.model_dir, backend=device.backend, seed=cfg.meta.seed)
        # The same prompt ids on both sides: fit them once through the runner's own path.
        probe = InferenceRun(
            cfg,
            generator=gen,
            meter=meter,
            clocks=clocks,
            device=device,
            items_by_task=items,
            write=lambda r: None,
        )
        prompts = [probe._fit(task, it, None, args.tokens)["ids"] for it in items[task.name]]
        _bare_round(gen, meter, prompts[:1], 4)  # warm-up both paths
        rounds: list[dict[str, Any]] = []
        for r in range(args.rounds):
            bare = _bare_round(gen, meter, prompts, args.tokens)
            infer = _infer_round(cfg, gen, meter, clocks, device, items)
            rounds.append({"round": r, "bare": bare, "infer": infer})
            print(
                f"round {r}: bare {bare['tokens'] / bare['elapsed_s']:.2f} tok/s, "
                f"infer {infer['tokens'] / infer['elapsed_s']:.2f} tok/s",
                flush=True,
            )

    def tps(side: str) -> list[float]:
        return [x[side]["tokens"] / x[side]["elapsed_s"] for x in rounds]

    def jpt(side: str) -> list[float]:
        return [x[side]["energy_j"] / x[side]["tokens"] for x in rounds]

    tps_ratio = statistics.median(i / b for i, b in zip(tps("infer"), tps("bare"), strict=True))
    jpt_ratio = statistics.median(i / b for i, b in zip(jpt("infer"), jpt("bare"), strict=True))
    result = {
        "model": cfg.model.name,
        "task": task.name,
        "device": device.provenance(),
        "energy_source": device.energy_source,
        "items": len(prompts),
        "new_tokens": args.tokens,
        "rounds": rounds,
        "bare_tokens_per_s_median": statistics.median(tps("bare")),
        "infer_tokens_per_s_median": statistics.median(tps("infer")),
        "tokens_per_s_ratio_median": tps_ratio,
        "j_per_token_ratio_median": jpt_ratio,
        "goal": {"tokens_per_s_ratio_min": 0.99, "j_per_token_ratio_within": 0.02},
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    print(
        f"\n{cfg.model.name} on {device.backend} ({device.energy_source}), {len(prompts)} prompts x "
        f"{args.tokens} tokens, {args.rounds} rounds (medians):"
    )
    print(
        f"  tokens/s  bare {result['bare_tokens_per_s_median']:.2f}  infer {result['infer_tokens_per_s_median']:.2f}"
        f"  ratio {tps_ratio:.4f}"
    )
    print(f"  J/token ratio infer/bare {jpt_ratio:.4f}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
