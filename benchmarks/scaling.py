"""Scale-out on one node: the same grid with N = 1, 2, 4 simulated GPUs.

For each N: a fresh copy of the repo (the tiny `ci` experiment) and `llm-energy grid --prepare`
(set-up, not timed). Then, by default, `llm-energy grid --run -j N` (cli/grid_run.py: N slots,
each a clone of the commit) is timed from the line announcing its slots (before it: composing
and validating the units, starting the stage server, making the slots; reported as set-up)
until it exits with every experiment pushed back. `--via queue` times DVC's queue instead:
`grid --queue` (set-up), then `dvc queue start -j N` until every experiment has committed.
Each unit is a 4-cap sweep on the simulated GPU (`gpu.index=auto`, N simulated GPUs) whose
measured phase is mostly waiting (`gpu.cooldown_s` after each clock change), so this 2-core
machine's CPU is not what limits it; what remains CPU-bound is DVC and the other stages.

Reported per N: wall time, speed-up over N=1 (goal >= 0.9 x N), the span and sum of the infer
stages' measured phases (from each unit's progress file; sum / span = how many ran at once, N
when the measured phase scales perfectly), lead-in and tail, and, from N=1, the overhead per
experiment: (wall - sum of measured phases) / units = DVC, checkout, validate, aggregate,
stats and the commit of the experiment.

    python benchmarks/scaling.py                       # N = 1, 2, 4; 4 units; ~5 min on 2 cores
    python benchmarks/scaling.py --units 8             # 2 units per GPU at N = 4; ~10 min
    python benchmarks/scaling.py --via queue           # DVC's queue; ~6 min
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))

from bench_common import fresh_workspace  # noqa: E402
from llm_energy.cli import stage_server  # noqa: E402
from llm_energy.run.progress import parse_iso  # noqa: E402

CAPS = "[1005,1305,1605,1905]"


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return proc.stdout


def _committed(ws: Path, names: Sequence[str]) -> int:
    refs = subprocess.run(
        ["git", "for-each-ref", "--format=%(refname)", "refs/exps"],
        cwd=ws,
        capture_output=True,
        text=True,
    ).stdout.split()
    return len({r.rsplit("/", 1)[-1] for r in refs} & set(names))


def _grid_run(ws: Path, env: dict[str, str], cmd: list[str]) -> tuple[float, float, float]:
    """(set-up s, start epoch, wall s) of `grid --run`: its set-up (composing and validating the
    units, starting the stage server, making the slots) ends at the line announcing the slots."""
    t0, start, start_epoch, lines = time.monotonic(), 0.0, 0.0, []
    proc = subprocess.Popen(cmd, cwd=ws, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)  # fmt: skip
    for line in proc.stdout or ():
        lines.append(line)
        if not start and " slot(s) on " in line:
            start, start_epoch = time.monotonic(), time.time()
    if proc.wait() != 0 or not start:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{''.join(lines)[-3000:]}")
    return start - t0, start_epoch, time.monotonic() - start


def _wait_for_queue(ws: Path, env: dict[str, str], names: Sequence[str]) -> None:
    dvc = [sys.executable, "-m", "dvc"]
    last_check = time.monotonic()
    while _committed(ws, names) < len(names):
        time.sleep(0.5)
        if time.monotonic() - last_check > 20:  # a failed unit never commits: stop early
            last_check = time.monotonic()
            status = _run([*dvc, "queue", "status"], ws, env)
            if "Failed" in status:
                raise SystemExit(f"a queued experiment failed:\n{status}")


def one_run(gpus: int, units: int, cooldown_s: float, work: Path, via: str) -> dict[str, Any]:
    ws, state = work / f"ws{gpus}", work / f"state{gpus}"
    env = fresh_workspace(ws, state)
    seeds = ",".join(str(s) for s in range(max(1, units // 2)))
    sets = [
        "gpu=simulated",
        f"gpu.simulated_count={gpus}",
        "gpu.index=auto",
        "gpu.max_window_repeats=300",
        f"sweep.freqs_mhz={CAPS}",
        f"gpu.cooldown_s={cooldown_s}",
        "task=generation,qa",
        f"meta.seed={seeds}",
    ]
    args = [a for s in sets for a in ("-S", s)]
    cli = [sys.executable, "-m", "llm_energy.cli.main"]
    units_json = json.loads(_run([*cli, "grid", "--json", *args], ws, env))
    names = [u["name"] for u in units_json]
    t0 = time.monotonic()
    _run([*cli, "grid", "--prepare", *args], ws, env)
    if via == "queue":
        _run([*cli, "grid", "--queue", *args], ws, env)
    setup_s = time.monotonic() - t0
    dvc = [sys.executable, "-m", "dvc"]
    start, start_epoch = time.monotonic(), time.time()
    try:
        if via == "run":
            cmd = [*cli, "grid", "--run", "-j", str(gpus), *args]
            grid_setup_s, start_epoch, wall_s = _grid_run(ws, env, cmd)
            setup_s += grid_setup_s
        else:
            _run([*dvc, "queue", "start", "-j", str(gpus)], ws, env)
            _wait_for_queue(ws, env, names)
            wall_s = time.monotonic() - start
    finally:
        if via == "queue":
            subprocess.run([*dvc, "queue", "stop", "--kill"], cwd=ws, env=env, capture_output=True)
        # `grid --queue` / `--run` started the stage server (its name includes the state dir)
        subprocess.run([*cli, "stage-server", "--stop"], cwd=ws, env=env, capture_output=True)
    if _committed(ws, names) < len(names):
        raise SystemExit(f"only {_committed(ws, names)} of {len(names)} experiments are in {ws}")
    served = sum(e.get("returncode") == 0 for e in stage_server.read_log(str(state)))
    phases = []
    for name in names:
        rec = json.loads((state / "progress" / f"{name}.json").read_text())
        begin, end = parse_iso(rec["started_at"]), parse_iso(rec["updated_at"])
        phases.append({"unit": name, "gpu_uuid": rec["gpu_uuid"], "begin": begin, "end": end})
    span_s = max(p["end"] for p in phases) - min(p["begin"] for p in phases)
    return {
        "gpus": gpus,
        "via": via,
        "units": len(names),
        "setup_s": round(setup_s, 1),
        "wall_s": round(wall_s, 1),
        # before the first measured phase (workers, checkout, validate, infer's start) and after
        # the last (aggregate, stats, DVC's commit and collection of every experiment)
        "lead_in_s": round(min(p["begin"] for p in phases) - start_epoch, 1),
        "tail_s": round(start_epoch + wall_s - max(p["end"] for p in phases), 1),
        "infer_sum_s": sum(p["end"] - p["begin"] for p in phases),
        "infer_span_s": span_s,
        "gpus_used": len({p["gpu_uuid"] for p in phases}),
        "stages_served": served,  # by the stage server: aggregate and stats of every unit
        "phases": phases,
    }


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    base = next(r for r in runs if r["gpus"] == 1)
    for r in runs:
        speedup = base["wall_s"] / r["wall_s"]
        r["speedup"] = round(speedup, 2)
        r["infer_span_speedup"] = round(base["infer_span_s"] / r["infer_span_s"], 2)
        # measured phases running at once: sum of phases / their span (N when all overlap)
        r["measured_parallelism"] = round(r["infer_sum_s"] / r["infer_span_s"], 2)
        r["goal_speedup"] = round(0.9 * r["gpus"], 2)
        r["goal_met"] = speedup >= 0.9 * r["gpus"]  # not the rounded one
    overhead = (base["wall_s"] - base["infer_sum_s"]) / base["units"]
    return {
        "runs": runs,
        "overhead_per_experiment_s": round(overhead, 1),
        "measured_phase_per_unit_s": round(base["infer_sum_s"] / base["units"], 1),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--gpus", default="1,2,4", help="simulated GPU counts (must include 1)")
    parser.add_argument("--units", type=int, default=4, help="units in the grid (even)")
    parser.add_argument("--cooldown-s", type=float, default=8.0, help="wait after each of 4 caps")
    parser.add_argument(
        "--via",
        choices=["run", "queue"],
        default="run",
        help="run: llm-energy grid --run -j N (slots); queue: --queue, then dvc queue start -j N",
    )
    parser.add_argument("--out", type=Path, help="default: benchmarks/results/scaling[-queue].json")
    args = parser.parse_args(argv)
    counts = [int(g) for g in args.gpus.split(",")]
    if 1 not in counts:
        parser.error("--gpus must include 1 (the baseline)")
    runs = []
    with tempfile.TemporaryDirectory(prefix="llm-energy-scaling-") as tmp:
        for n in counts:
            print(f"N={n}: ...", file=sys.stderr, flush=True)
            runs.append(one_run(n, args.units, args.cooldown_s, Path(tmp), args.via))
            print(f"N={n}: wall {runs[-1]['wall_s']} s", file=sys.stderr, flush=True)
    result = {
        "benchmark": "scaling",
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "settings": {"units": args.units, "caps": CAPS, "cooldown_s": args.cooldown_s},
        "via": args.via,
        "energy": "simulated (labelled simulated): this measures scheduling, not energy",
        **summarize(runs),
    }
    suffix = ("" if args.via == "run" else f"-{args.via}") + (
        "" if args.units == 4 else f"-{args.units}units"
    )
    args.out = args.out or ROOT / "benchmarks" / "results" / f"scaling{suffix}.json"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for r in result["runs"]:
        print(
            f"N={r['gpus']}: wall {r['wall_s']:.1f} s, speed-up {r['speedup']:.2f} "
            f"(goal {r['goal_speedup']:.2f}: {'met' if r['goal_met'] else 'NOT met'}), infer span "
            f"{r['infer_span_s']:.0f} s (x{r['infer_span_speedup']:.2f}, "
            f"{r['measured_parallelism']:.2f} measured phases at once), {r['gpus_used']} GPU(s), "
            f"lead-in {r['lead_in_s']} s, tail {r['tail_s']} s"
        )
    print(
        f"overhead per experiment: {result['overhead_per_experiment_s']} s "
        f"(measured phase per unit {result['measured_phase_per_unit_s']} s); wrote {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
