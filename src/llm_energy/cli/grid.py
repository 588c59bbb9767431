"""`llm-energy grid`: expand a study into units (llm_energy.run.grid), validate every unit, print,
prepare, queue or list them for SLURM, and show every unit's progress (llm_energy.run.progress).

The boundary of those two pure modules: Hydra composition, `dvc` commands, progress files.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from llm_energy.io.compose import compose_params
from llm_energy.io.files import pid_alive
from llm_energy.paths import project_paths


def describe_composition(conf_dir: Path, overrides: Sequence[str]) -> Any:
    """What `llm_energy.run.grid.expand` needs from one Hydra composition (incl. the model option)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf, open_dict

    from llm_energy.run.grid import Composition

    with initialize_config_dir(config_dir=str(conf_dir.resolve()), version_base=None):
        cfg = compose(config_name="config", overrides=list(overrides), return_hydra_config=True)
    choices = OmegaConf.to_container(cfg.hydra.runtime.choices)
    with open_dict(cfg):
        del cfg["hydra"]  # its job interpolations resolve only inside a Hydra app
    params: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
    return Composition(
        experiment=str(params["meta"]["experiment"]),
        model=str(choices.get("model") or params["model"]["name"]),  # type: ignore[union-attr]
        tasks=tuple(params.get("task") or ()),
        freqs_mhz=tuple((params.get("sweep") or {}).get("freqs_mhz") or ()),
        control=str(params["gpu"]["control"]),
        grid_models=tuple(params["meta"].get("grid_models") or ()),
    )


def _grid_units(args: argparse.Namespace, conf_dir: Path) -> tuple[list[Any], list[Any]]:
    """Expand and validate every unit (compose + load_config); raise GridError on the first bad.
    Returns the units and their validated configs."""
    from llm_energy.config.settings import ConfigError, load_config
    from llm_energy.run.grid import GridError, expand, parse_sweeps

    base = [f"experiment={args.experiment}"] if args.experiment else []
    try:
        units = expand(base, parse_sweeps(args.set), lambda o: describe_composition(conf_dir, o))
    except GridError:
        raise
    except Exception as exc:  # Hydra: unknown group option or key
        raise GridError(_one_line_error(exc)) from None
    configs = []
    for unit in units:
        try:
            configs.append(load_config(compose_params(conf_dir, unit.overrides)))
        except ConfigError as exc:
            raise GridError(f"unit {unit.name}: {exc}") from None
        except Exception as exc:
            raise GridError(f"unit {unit.name}: {_one_line_error(exc)}") from None
    return units, configs


def size_line(units: Sequence[Any], configs: Sequence[Any]) -> str:
    """The study's size and an estimated GPU time, printed before anything runs."""
    from llm_energy.run.grid import unit_size

    sizes = [unit_size(cfg) for cfg in configs]
    models = len({u.model for u in units})
    tasks = len({u.task for u in units})
    hours = sum(s.gpu_s for s in sizes) / 3600
    return (
        f"{len(units)} unit(s) ({models} model(s) x {tasks} task dataset(s)), "
        f"{sum(s.points for s in sizes)} sweep points, {sum(s.requests for s in sizes):,} "
        "measured requests; "
        f"~{hours:.3g} GPU-hours of generate time (estimate: simulated H200 roofline at each "
        "cap; idle baselines, cooldowns, warm-up and model loading come on top)"
    )


def _one_line_error(exc: BaseException) -> str:
    from llm_energy.errors import one_line

    return one_line(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)


def _run_each(cmds: Sequence[Sequence[str]], root: Path, dry_run: bool) -> int:
    """Run commands in order (or print them); stop at the first failure with one line."""
    for cmd in cmds:
        print(("would run: " if dry_run else "$ ") + shlex.join(cmd), flush=True)
        if dry_run:
            continue
        code = subprocess.run(list(cmd), cwd=root).returncode
        if code != 0:
            print(f"llm-energy grid: error: `{shlex.join(cmd)}` exited {code}", file=sys.stderr)
            return 2
    return 0


def cmd_grid(args: argparse.Namespace) -> int:
    if args.action == "status":
        return _grid_status(args)
    from llm_energy.run.grid import GridError, prepare_overrides, queue_command, slurm_unit_line

    paths = project_paths(args.root)
    try:
        units, configs = _grid_units(args, paths.conf_dir)
        lines = [slurm_unit_line(u) for u in units] if args.slurm_units else []
        print(size_line(units, configs), file=sys.stderr, flush=True)  # stdout stays the units
    except GridError as exc:
        print(f"llm-energy grid: error: {exc}", file=sys.stderr)
        return 2
    if args.run and (problem := run_jobs_problem(args.jobs, configs)):
        print(f"llm-energy grid: error: {problem}", file=sys.stderr)
        return 2
    dvc = [sys.executable, "-m", "dvc"]
    if args.slurm_units:
        Path(args.slurm_units).write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        print(
            f"wrote {len(lines)} unit(s) to {args.slurm_units}: sbatch --array=0-{len(lines) - 1} ..."
        )
    if args.prepare:
        # Runs prepare + model once per model/task set in a temporary workspace: DVC's run-cache
        # (shared .dvc/cache/runs) then restores their outputs in every queued worker.
        temp = [*dvc, "exp", "run", "--temp", "-n"]
        runs = enumerate(prepare_overrides(units))
        cmds = [[*temp, f"grid-prepare-{i}", *_set_args(o), "prepare", "model"] for i, o in runs]
        cmds += [[*dvc, "exp", "remove", *(f"grid-prepare-{i}" for i in range(len(cmds)))]]
        if _run_each(cmds, paths.root, args.dry_run):
            return 2
    if args.queue:
        if _run_each([queue_command(u, dvc) for u in units], paths.root, args.dry_run):
            return 2
        if not args.dry_run:
            start_stage_server("now: dvc queue start -j <GPUs>")
        return 0
    if args.run:
        from llm_energy.cli.grid_run import run_units
        from llm_energy.run.grid import UNIT_TARGET

        return run_units(paths.root, units, args.jobs, UNIT_TARGET, args.dry_run,
                         before=start_stage_server)  # fmt: skip
    if args.json:
        print(json.dumps([u.to_dict() for u in units], indent=2))
    elif not (args.prepare or args.slurm_units):
        for unit in units:
            print(f"{unit.name}  {shlex.join(unit.overrides)}")
    return 0


def run_jobs_problem(jobs: int, configs: Sequence[Any]) -> str | None:
    """Why `--run -j jobs` cannot run these units, checked before anything runs."""
    if jobs < 1:
        return f"-j {jobs}: at least one unit must run at a time"
    pinned = sorted({str(c.gpu.index) for c in configs
                     if c.gpu.index != "auto" and c.gpu.backend != "cpu"})  # fmt: skip
    if jobs > 1 and pinned:
        return (f"--run -j {jobs} with gpu.index={pinned[0]}: the units would all want that GPU; "
                "add -S gpu.index=auto (each unit then takes a free one)")  # fmt: skip
    return None


def start_stage_server(then: str = "") -> None:
    """The units' analysis stages then skip their library imports (cli/stage_server.py)."""
    from llm_energy.cli import stage_server

    if os.environ.get(stage_server.SWITCH_ENV) != "off":
        try:
            print(stage_server.describe(stage_server.start()) + (f"; {then}" if then else ""))
        except (OSError, RuntimeError) as exc:  # only slower without it
            print(f"llm-energy grid: stage server not started: {exc}", file=sys.stderr)


def _set_args(overrides: Sequence[str]) -> list[str]:
    return [a for o in overrides for a in ("-S", o)]


def _grid_status(args: argparse.Namespace) -> int:
    import socket
    import time

    from llm_energy.paths import progress_dir
    from llm_energy.run.progress import format_status, status_rows

    directory = Path(args.progress_dir or progress_dir(args.state_dir_of(args)))
    records = []
    for path in sorted(directory.glob("*.json")) if directory.is_dir() else []:
        try:
            records.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError):  # a half-written file cannot exist (atomic rename); skip junk
            print(f"llm-energy grid status: skipped unreadable {path}", file=sys.stderr)
    rows = status_rows(
        records, now_s=time.time(), this_host=socket.gethostname(), pid_alive=pid_alive
    )
    if args.json:
        print(json.dumps({"progress_dir": str(directory), "units": rows}, indent=2))
    elif not rows:
        print(f"no unit has reported progress in {directory}")
    else:
        print(format_status(rows))
    return 0


def add_grid_parser(
    sub: Any, *, state_dir_of: Callable[[argparse.Namespace], Path]
) -> argparse.ArgumentParser:
    """The `grid` subcommand; `state_dir_of(args)` is where `grid status` finds progress."""
    p = sub.add_parser(
        "grid",
        help="units of a study (one per model x task, clocks inside); print, run, queue or status",
        description="Expand a study (--experiment, -S KEY=A,B sweeps) into units of work: one "
        "per model x task with the clock sweep inside (one per cap under gpu.control=slurm). "
        "Every unit is composed and validated before anything is queued or run. "
        "`grid status` shows the progress every unit's infer stage reports.",
    )
    p.add_argument("action", nargs="?", choices=["status"], help="status: progress of the units")
    p.add_argument("-e", "--experiment", help="conf/experiment option, e.g. paper")
    p.add_argument(
        "-S",
        "--set",
        action="append",
        default=[],
        metavar="KEY=A[,B...]",
        help="a value or a sweep, as for dvc exp run (e.g. -S model=gpt2,mistral_7b)",
    )
    p.add_argument("--json", action="store_true", help="print units (or status) as JSON")
    how = p.add_mutually_exclusive_group()
    how.add_argument("--queue", action="store_true", help="dvc exp run --queue -n NAME each unit")
    how.add_argument(
        "--run",
        action="store_true",
        help="run the units on this node, -j at a time, each in a clone of the commit "
        "(.dvc/tmp/grid-slots); results are experiments here (dvc exp show)",
    )
    p.add_argument("-j", "--jobs", type=int, default=1, help="--run: units at once (one per GPU)")
    p.add_argument(
        "--prepare",
        action="store_true",
        help="first run prepare+model once per model/task set, so workers hit the run-cache",
    )
    p.add_argument("--slurm-units", metavar="FILE", help="write the unit list of the SLURM array")
    p.add_argument("--dry-run", action="store_true", help="print the dvc commands, run none")
    p.add_argument(
        "--progress-dir",
        help="status: where units report (default: $LLM_ENERGY_PROGRESS_DIR, "
        "else <gpu.state_dir>/progress)",
    )
    p.add_argument("--state-dir", help="status: the GPU state directory (default: gpu.state_dir)")
    p.set_defaults(func=cmd_grid, state_dir_of=state_dir_of)
    return p
