"""The `llm-energy` console script.

llm-energy compose [OVERRIDES...]   compose conf/ (Hydra) into params.yaml, as `dvc exp run` does
llm-energy compose --check          exit 1 when params.yaml differs from the composition of conf/
llm-energy gpu status [--json]      clocks, locks, power limit; every journal and GPU lock
llm-energy gpu restore              restore the GPU state recorded in every pending journal
llm-energy gpu clear --uuid U       reset U's clock locks to the driver default, delete its journal
llm-energy compare                  trade-off table across DVC experiments (read from dvc exp show)
llm-energy doctor [--json] [K=V...] can a capped study run here? (exit 0 yes, 1 no; reads only)
llm-energy grid [-e paper] [-S k=a,b] units of a study (a table; --json), --prepare, --queue,
                                    --slurm-units FILE (one per model x task, clocks inside)
llm-energy grid status [--json]     progress of every unit (done/total, ETA, GPU, lost workers)
llm-energy stage-server [--status|--stop]  preload the analysis stages' libraries (a daemon)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from llm_energy.cli.gpu import add_gpu_parser, cli_state_dir
from llm_energy.io.compose import compose_params
from llm_energy.paths import project_paths


def _cmd_compose(args: argparse.Namespace) -> int:
    from llm_energy.config.settings import ConfigError, load_config
    from llm_energy.io.files import read_yaml, write_yaml

    paths = project_paths(args.root)
    try:
        composed = compose_params(paths.conf_dir, args.overrides)
        load_config(composed)
    except ConfigError as exc:
        print(f"llm-energy compose: error: {exc}", file=sys.stderr)
        return 2
    if args.check:
        current = read_yaml(paths.params) if paths.params.exists() else None
        if current != composed:
            print(
                "params.yaml differs from the composition of conf/: run `llm-energy compose`",
                file=sys.stderr,
            )
            return 1
        print("params.yaml matches conf/")
        return 0
    target = Path(args.out) if args.out else paths.params
    write_yaml(target, composed)
    print(f"wrote {target}")
    return 0


def _cmd_doctor(args: argparse.Namespace) -> int:
    """One screen (or --json) of what this machine can measure and lock; never a setter."""
    from llm_energy.cli.doctor import build_report, format_screen, to_jsonable
    from llm_energy.cli.probe import gather
    from llm_energy.config.settings import apply_overrides, load_config
    from llm_energy.errors import one_line
    from llm_energy.io.files import read_yaml

    try:
        paths = project_paths(args.root)
        params = read_yaml(paths.params) if paths.params.exists() else None
        if not isinstance(params, dict):
            print(f"llm-energy doctor: error: no params mapping in {paths.params}", file=sys.stderr)
            return 2
        cfg = load_config(apply_overrides(params, args.overrides))
        state_dir = paths.gpu_state_dir(cfg.gpu.state_dir)
        facts, state = gather(
            cfg.gpu, state_dir, seed=cfg.meta.seed, country_iso_code=cfg.emissions.country_iso_code
        )
        report = build_report(cfg, facts, state)
    except Exception as exc:  # the doctor never shows a traceback
        print(f"llm-energy doctor: error: {one_line(str(exc))}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(to_jsonable(report), indent=2, default=str))
    else:
        print(format_screen(report))
    return int(report["exit_code"])


def _cmd_compare(args: argparse.Namespace) -> int:
    from llm_energy.analysis.experiments import experiments_from_dvc_json
    from llm_energy.report.compare import compare_experiments, comparison_figure
    from llm_energy.report.figure_style import figure_png_bytes
    from llm_energy.report.overlays import clock_overlay_figure
    from llm_energy.report.tables import to_markdown

    if args.json_file:
        data = json.loads(Path(args.json_file).read_text(encoding="utf-8"))
    else:
        show = ["dvc", "exp", "show", "--json", "--no-pager", *(["-A"] if args.all else [])]
        proc = subprocess.run(show, capture_output=True, text=True, cwd=args.root)
        if proc.returncode != 0:
            print(
                f"llm-energy compare: error: `dvc exp show --json` failed: {proc.stderr.strip()}",
                file=sys.stderr,
            )
            return 2
        data = json.loads(proc.stdout)
    experiments = experiments_from_dvc_json(data)
    if experiments.empty:
        print("llm-energy compare: no experiments with reports/metrics.json found", file=sys.stderr)
        return 1
    table = compare_experiments(experiments, latency_budget_pct=args.latency_budget_pct)
    out_dir = Path(args.root) / "reports" / "compare"
    out_dir.mkdir(parents=True, exist_ok=True)
    table.to_csv(out_dir / "experiments.csv", index=False)
    (out_dir / "experiments.md").write_text(to_markdown(table) + "\n", encoding="utf-8")
    dpi = 110  # a tool across experiments, so no one experiment's plots.dpi applies
    (out_dir / "tradeoff.png").write_bytes(figure_png_bytes(comparison_figure(table), dpi=dpi))
    for metric in ("energy", "latency"):
        fig = clock_overlay_figure(table, metric)
        (out_dir / f"{metric}_vs_clock.png").write_bytes(figure_png_bytes(fig, dpi=dpi))
    print(to_markdown(table))
    if not table.empty:
        # the groups are never pooled: say so, so two tables are not read as one
        groups = list(dict.fromkeys(table["group"]))
        print(f"\n{len(groups)} group(s), compared only within themselves:")
        for g in groups:
            print(f"  - {g}")
    print(
        f"\nwrote {out_dir}/experiments.csv, experiments.md, tradeoff.png, "
        "energy_vs_clock.png, latency_vs_clock.png"
    )
    return 0


def _cmd_stage_server(args: argparse.Namespace) -> int:
    from llm_energy.cli import stage_server

    if args.stop or args.status:
        facts = stage_server.control("stop" if args.stop else "status")
        if facts is None:
            print("no stage server serves this interpreter")
            return 1
    else:
        try:
            facts = stage_server.start(args.idle_exit_s)
        except (OSError, RuntimeError) as exc:
            print(f"llm-energy stage-server: error: {exc}", file=sys.stderr)
            return 1
    print(stage_server.describe(facts, "stopped" if args.stop else "running"))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llm-energy", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    root = os.environ.get("LLM_ENERGY_ROOT", ".")
    parser.add_argument("--root", default=root, help="repository root (default: .)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("compose", help="compose conf/ into params.yaml")
    p.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. gpu.freq=1200 model=gpt2")
    p.add_argument("--check", action="store_true", help="only check that params.yaml matches conf/")
    p.add_argument(
        "--out", help="write here instead of params.yaml (e.g. for a host without Hydra)"
    )
    p.set_defaults(func=_cmd_compose)

    add_gpu_parser(sub)

    p = sub.add_parser(
        "doctor",
        help="can a capped study run here? (exit 0 yes, 1 no)",
        description="Device, versions, energy source, counter period, supported clocks, whether "
        "clocks can be locked, other processes, journals and locks, and what each requested cap "
        "would do. Reads params.yaml (gpu section) under --root; never changes a clock.",
    )
    p.add_argument(
        "overrides", nargs="*", help="params overrides, e.g. gpu.freq=1200 gpu.backend=simulated"
    )
    p.add_argument("--json", action="store_true", help="print the same facts as JSON")
    p.set_defaults(func=_cmd_doctor)

    p = sub.add_parser("compare", help="trade-off table across DVC experiments")
    p.add_argument(
        "--json-file", help="read `dvc exp show --json` output from a file instead of running DVC"
    )
    p.add_argument("--all", action="store_true", help="include experiments of all commits (-A)")
    p.add_argument("--latency-budget-pct", type=float, default=5.0)
    p.set_defaults(func=_cmd_compare)

    p = sub.add_parser(
        "stage-server",
        help="run aggregate/stats/plots in forks of a process with their libraries imported",
        description="Starts (in the background) a server that has imported pandas, scipy and "
        "statsmodels; the analysis stages of every experiment run by this interpreter then skip "
        "those 1-2 s of imports. LLM_ENERGY_STAGE_SERVER=off makes a stage run itself anyway.",
    )
    p.add_argument("--status", action="store_true", help="is one running, and what it served")
    p.add_argument("--stop", action="store_true", help="stop the running one")
    p.add_argument("--idle-exit-s", type=float, default=3600.0, help="exit after this long idle")
    p.set_defaults(func=_cmd_stage_server)

    from llm_energy.cli.grid import add_grid_parser

    add_grid_parser(sub, state_dir_of=cli_state_dir)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except BrokenPipeError:  # `llm-energy grid | head`: the reader left; no traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
