"""CPU an experiment spends outside its measurement: DVC, start-up, and the analysis stages.

A fresh copy of the repo (the tiny `ci` experiment, 4-cap sweep on the simulated GPU) runs the
whole pipeline once and commits it (prepare and model are then cached, as `llm-energy grid
--prepare` leaves them). Then units run the ways a study runs them, each with the unit's full
overrides (with Hydra on, DVC recomposes params.yaml from conf/ and the `-S` list alone) and
its target (a unit stops at its statistics; its report renders on demand):

- queued: as a queue worker runs it, `dvc exp run --temp -n NAME -S ... stats` (a temporary
  copy), once with LLM_ENERGY_STAGE_SERVER=off (the reference: DVC and every stage on its own)
  and once with the stage server up;
- `grid --run`: in a slot (cli/grid_run.py: a clone of the commit), reset, `dvc exp run` (a fork
  of a process that imported DVC once: cli/dvc_fast.py; that import is reported once, not per
  unit), the experiment pushed back; the first unit in a fresh slot (which also checks out
  prepare's and model's outputs) and a later one, the stage server up as `--run` starts it;
- SLURM: as an array task runs it (scripts/slurm/grid-array.sbatch): a fresh clone,
  `python -m llm_energy.cli.dvc_fast exp run`; the first task on a node starts the stage server
  (its preload counted in), later tasks on the node find it running.

A unit's CPU is that of its commands and every process they waited for
(`getrusage(RUSAGE_CHILDREN)`) plus the CPU of the forks that ran DVC and, when served, the
stages (read from their server's /proc stat: its reaped children); minus the CPU the infer
stage spent from its first measured batch on (`measured_cpu_s` in its progress file), that is
the CPU outside the measurement. Each kind runs `--reps` times, the kinds interleaved (this
host's speed drifts), and the median is reported. Each stage is then run once more on its own to
say where that CPU goes (plots: the on-demand report).

    python benchmarks/startup.py            # ~7 min on 2 cores (3 reps); run it alone
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))

from bench_common import fresh_workspace  # noqa: E402
from llm_energy.cli import stage_server  # noqa: E402
from llm_energy.cli.dvc_fast import PreloadedDVC  # noqa: E402
from llm_energy.cli.grid_run import SLOTS_DIR, baseline_of, make_slot, unit_commands  # noqa: E402
from llm_energy.cli.stage_server import SWITCH_ENV  # noqa: E402
from llm_energy.io.files import write_json  # noqa: E402
from llm_energy.run.grid import UNIT_TARGET  # noqa: E402
from llm_energy.run.provenance import git_commit  # noqa: E402

STAGES = ("validate", "infer", "aggregate", "stats")  # what a queued unit runs
SETTINGS = [
    "gpu=simulated",
    "gpu.cooldown_s=0.5",
    "gpu.max_window_repeats=300",
    "sweep.freqs_mhz=[1005,1305,1605,1905]",
]
GOAL_CPU_S = 6.0
DVC = [sys.executable, "-m", "llm_energy.cli.dvc_fast"]  # as grid --run and SLURM tasks run it


def _children_cpu_s() -> float:
    use = resource.getrusage(resource.RUSAGE_CHILDREN)
    return use.ru_utime + use.ru_stime


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """(CPU seconds of the command and its waited-for children, wall seconds)."""
    cpu0, t0 = _children_cpu_s(), time.monotonic()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return _children_cpu_s() - cpu0, time.monotonic() - t0


def _forked(
    preloaded: PreloadedDVC, args: list[str], cwd: Path, env: dict[str, str]
) -> tuple[float, float, int]:
    """(CPU seconds, wall seconds, the forkserver's pid) of `dvc ARGS` as a fork of the
    preloaded DVC."""
    t0, log = time.monotonic(), Path(env["LLM_ENERGY_STATE_DIR"]) / "startup-unit.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    fork = preloaded.start(args, cwd, log, env)
    server = int(_stat(fork.pid)[1])  # its parent
    cpu0 = _server_cpu_s(server) - _server_cpu_s(fork.pid)  # the fork's CPU so far is its own
    if fork.wait() != 0:
        raise SystemExit(f"dvc {' '.join(args)} failed:\n{log.read_text()[-3000:]}")
    return _server_cpu_s(server) - cpu0, time.monotonic() - t0, server


def _stat(pid: int) -> list[str]:
    """/proc/PID/stat's fields after the command name (state, ppid, ...)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _own_cpu_s(pid: int) -> float:
    return sum(int(x) for x in _stat(pid)[11:13]) / os.sysconf("SC_CLK_TCK")  # utime, stime


def _server_cpu_s(pid: int) -> float:
    """The stage server's CPU with every fork it reaped (utime, stime, cutime, cstime)."""
    return sum(int(x) for x in _stat(pid)[11:15]) / os.sysconf("SC_CLK_TCK")


def _unit(
    cmds: list[list[str]],
    cwd: Path,
    env: dict[str, str],
    name: str,
    server_pid: int | None,
    with_preload: bool = False,
    preloaded: PreloadedDVC | None = None,
) -> dict[str, float]:
    """One unit's commands (DVC's as forks of `preloaded` when given): their CPU (plus the
    server's for the stages it served, and its preload too when `with_preload`) and the CPU of
    its measured phase."""
    server0 = _server_cpu_s(server_pid) if server_pid and not with_preload else 0.0
    cpu_s = wall_s = 0.0
    for cmd in cmds:
        if preloaded and cmd[: len(DVC)] == DVC:
            cpu, wall, _ = _forked(preloaded, cmd[len(DVC) :], cwd, env)
        else:
            cpu, wall = _run(cmd, cwd, env)
        cpu_s, wall_s = cpu_s + cpu, wall_s + wall
    served_s = 0.0
    if server_pid:
        time.sleep(1.5)  # the server reaps its forks within a second
        served_s = _server_cpu_s(server_pid) - server0
    state = Path(env["LLM_ENERGY_STATE_DIR"])
    measured_s = float(
        json.loads((state / "progress" / f"{name}.json").read_text())["measured_cpu_s"]
    )
    total_s = cpu_s + served_s
    return {"experiment_cpu_s": round(total_s, 2), "served_cpu_s": round(served_s, 2),
            "experiment_wall_s": round(wall_s, 2), "measured_cpu_s": round(measured_s, 2),
            "outside_measurement_cpu_s": round(total_s - measured_s, 2)}  # fmt: skip


def _unit_of(name: str) -> Any:
    """A unit of its own seed (no run-cache hit on another unit's measurement)."""
    overrides = ("experiment=ci", *SETTINGS, f"meta.seed={name.rsplit('-', 1)[1]}")
    return SimpleNamespace(name=name, overrides=overrides)


def _queued(ws: Path, env: dict[str, str], name: str, server_pid: int | None) -> dict[str, float]:
    """As a queue worker runs it: in a temporary copy of the workspace."""
    sets = [a for o in _unit_of(name).overrides for a in ("-S", o)]
    cmd = [sys.executable, "-m", "dvc", "exp", "run", "--temp", "-n", name, *sets, UNIT_TARGET]
    return _unit([cmd], ws, env, name, server_pid)


def _in_slot(
    ws: Path,
    env: dict[str, str],
    name: str,
    server_pid: int | None,
    slot: str,
    with_preload: bool = False,
    preloaded: PreloadedDVC | None = None,
) -> dict[str, float]:
    """As `llm-energy grid --run` runs it (cli/grid_run.py): reset the slot, `dvc exp run`,
    push the experiment back."""
    cmds = unit_commands(_unit_of(name), baseline_of(ws), DVC, UNIT_TARGET)
    slot_dir = ws / SLOTS_DIR / f"slot-{slot}"
    return _unit(cmds, slot_dir, env, name, server_pid, with_preload, preloaded)


def measure(work: Path, reps: int) -> dict[str, Any]:
    ws, state = work / "ws", work / "state"
    env = fresh_workspace(ws, state)
    cli = [sys.executable, "-m", "llm_energy.cli.main"]
    _run([*cli, "compose", "experiment=ci", *SETTINGS], ws, env)
    subprocess.run(["git", "commit", "-qam", "ci on the simulated GPU"], cwd=ws, check=True)
    _run([sys.executable, "-m", "dvc", "repro", "-q"], ws, env)  # prepare, model cached from here
    subprocess.run(["git", "add", "-A"], cwd=ws, check=True)  # the slots run commits
    subprocess.run(["git", "commit", "-qm", "its outputs"], cwd=ws, check=True)
    alone_env, cache = env | {SWITCH_ENV: "off"}, str(ws / ".dvc" / "cache")
    runs: dict[str, list[dict[str, float]]] = {}
    names = iter(range(1, 1000))

    def unit(kind: str, run: Any, env: dict[str, str], *args: Any, **kwargs: Any) -> None:
        name = f"startup-unit-{next(names)}"
        runs.setdefault(kind, []).append(run(ws, env, name, *args, **kwargs))

    def fresh_slot(label: str) -> str:
        make_slot(ws, ws / SLOTS_DIR / f"slot-{label}", cache)
        return label

    preloaded, preload_cpu_s = PreloadedDVC(), 0.0
    try:
        for rep in range(reps):
            print(f"rep {rep + 1}/{reps} ...", flush=True)
            if rep:
                _run([*cli, "stage-server", "--stop"], ws, env)
            _run([*cli, "stage-server", "--idle-exit-s", "600"], ws, env)  # as an array task
            server = stage_server_facts(env)
            unit("SLURM, first task on a node", _in_slot, env, server["pid"],
                 fresh_slot(f"s{rep}"), with_preload=True)  # fmt: skip
            unit("SLURM, later task on the node", _in_slot, env, server["pid"],
                 fresh_slot(f"t{rep}"))  # fmt: skip
            if not rep:  # the forkserver starts once per `grid --run`
                preload_cpu_s = _own_cpu_s(_forked(preloaded, ["version"], ws, env)[2])
            slot = fresh_slot(f"r{rep}")
            for kind in ("first in its slot", "later in its slot"):
                unit(f"grid --run, {kind}", _in_slot, env, server["pid"], slot,
                     preloaded=preloaded)  # fmt: skip
            unit("queued, served", _queued, env, server["pid"])
            unit("queued, alone", _queued, alone_env, None)
        served_stage_cpu_s = {}
        for s in ("aggregate", "stats", "plots"):
            cpu0 = _server_cpu_s(server["pid"])
            client_s = _run([sys.executable, f"stages/{s}.py"], ws, env)[0]
            time.sleep(1.5)
            served_stage_cpu_s[s] = round(client_s + _server_cpu_s(server["pid"]) - cpu0, 2)
    finally:
        _run([*cli, "stage-server", "--stop"], ws, env)
    # last: these rewrite the workspace's outputs, which the slots' commit must not differ from
    stage_cpu_s = {
        s: round(_run([sys.executable, f"stages/{s}.py"], ws, alone_env)[0], 2) for s in STAGES
    }
    plots_cpu_s = round(_run([sys.executable, "stages/plots.py"], ws, alone_env)[0], 2)
    units = {kind: {key: round(statistics.median(r[key] for r in rs), 2) for key in rs[0]}
             for kind, rs in runs.items()}  # fmt: skip
    return {
        "units": units,  # the median of each figure over the reps
        "outside_measurement_cpu_s_each_rep": {
            kind: [r["outside_measurement_cpu_s"] for r in rs] for kind, rs in runs.items()
        },
        "reps": reps,
        "goal_cpu_s": GOAL_CPU_S,
        "goal_met": {k: u["outside_measurement_cpu_s"] <= GOAL_CPU_S for k, u in units.items()},
        "stage_server_preload_cpu_s": round(server["preload_cpu_s"], 2),  # once per server
        "dvc_preload_cpu_s": round(preload_cpu_s, 2),  # once per `grid --run`: its forkserver
        # each stage alone (infer's includes its measured phase); the rest is DVC's own
        "stage_cpu_s": stage_cpu_s,
        "dvc_and_rest_cpu_s": round(
            units["queued, alone"]["experiment_cpu_s"] - sum(stage_cpu_s.values()), 2
        ),
        "served_stage_cpu_s": served_stage_cpu_s,
        "plots_on_demand_cpu_s": plots_cpu_s,  # not in the unit: `dvc repro plots` when wanted
    }


def stage_server_facts(env: dict[str, str]) -> dict[str, Any]:
    """The running server's pid and preload CPU (its latest start in the log)."""
    start = [e for e in stage_server.read_log(env["LLM_ENERGY_STATE_DIR"]) if "preloaded" in e]
    return {"pid": start[-1]["pid"], "preload_cpu_s": start[-1]["cpu_s"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=3, help="units of each kind (median shown)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="llm-energy-startup-") as tmp:
        result = measure(Path(tmp), args.reps)
    result |= {"commit": git_commit(ROOT), "cpus": os.cpu_count(), "settings": SETTINGS}
    out = ROOT / "benchmarks" / "results" / "startup.json"
    write_json(out, result)
    print(f"CPU of one unit outside its measurement, median of {args.reps} "
          f"(goal <= {GOAL_CPU_S} s):")  # fmt: skip
    for kind, unit in result["units"].items():
        met = "met" if result["goal_met"][kind] else "NOT met"
        each = ", ".join(f"{x:.2f}" for x in result["outside_measurement_cpu_s_each_rep"][kind])
        print(
            f"  {kind:32s} {unit['outside_measurement_cpu_s']:5.2f} s ({met}; each: {each}; total "
            f"{unit['experiment_cpu_s']} s, {unit['served_cpu_s']} s of it served, "
            f"{unit['measured_cpu_s']} s measuring)"
        )
    stages = ", ".join(f"{k} {v} s" for k, v in result["stage_cpu_s"].items())
    served = ", ".join(f"{k} {v} s" for k, v in result["served_stage_cpu_s"].items())
    print(f"stages alone: {stages}; DVC and the rest: {result['dvc_and_rest_cpu_s']} s")
    print(
        f"served: {served} (the server's preload, once: {result['stage_server_preload_cpu_s']} s)"
    )
    print(
        f"the report on demand (plots alone, not in the unit): {result['plots_on_demand_cpu_s']} s"
    )
    print(f"DVC's forkserver, once per grid --run: {result['dvc_preload_cpu_s']} s")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
