"""The `llm-energy` console script.

llm-energy compose [OVERRIDES...]   compose conf/ (Hydra) into params.yaml, as `dvc exp run` does
llm-energy compose --check          exit 1 when params.yaml differs from the composition of conf/
llm-energy gpu status               clocks, locks, power limit and any pending crash journal
llm-energy gpu restore              restore the GPU state recorded in a pending journal
llm-energy compare                  trade-off table across DVC experiments (dvc exp show --json)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from llm_energy.paths import project_paths


def compose_params(conf_dir: Path, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Compose conf/config.yaml with Hydra, exactly like DVC's `hydra.enabled` composition."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(conf_dir.resolve()), version_base=None):
        cfg = compose(config_name="config", overrides=list(overrides))
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def _cmd_compose(args: argparse.Namespace) -> int:
    from llm_energy.config import ConfigError, load_config
    from llm_energy.io.files import read_yaml, write_yaml

    paths = project_paths(args.root)
    composed = compose_params(paths.conf_dir, args.overrides)
    try:
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


def _open_for_cli(args: argparse.Namespace) -> Any:
    from llm_energy.hw import open_device

    paths = project_paths(args.root)
    return open_device(
        args.backend, args.index, state_dir=paths.state_dir
    ), paths.state_dir / "journal"


def _cmd_gpu(args: argparse.Namespace) -> int:
    from llm_energy.hw import DeviceError, gpu_status, restore_from_journal

    try:
        device, journal_dir = _open_for_cli(args)
        with device:
            if args.action == "status":
                print(json.dumps(gpu_status(device, journal_dir), indent=2, default=str))
            else:
                print(restore_from_journal(device, journal_dir))
    except DeviceError as exc:
        print(f"llm-energy gpu {args.action}: error: {exc}", file=sys.stderr)
        return 2
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from llm_energy.analysis.compare import comparison_table, experiments_from_dvc_json

    if args.json_file:
        data = json.loads(Path(args.json_file).read_text(encoding="utf-8"))
    else:
        proc = subprocess.run(
            ["dvc", "exp", "show", "--json", "--no-pager", *(["-A"] if args.all else [])],
            capture_output=True,
            text=True,
            cwd=args.root,
        )
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
    from llm_energy.tables import to_markdown

    table = comparison_table(experiments, latency_budget_pct=args.latency_budget_pct)
    out_dir = Path(args.root) / "reports" / "compare"
    out_dir.mkdir(parents=True, exist_ok=True)
    table.to_csv(out_dir / "experiments.csv", index=False)
    (out_dir / "experiments.md").write_text(to_markdown(table) + "\n", encoding="utf-8")
    _compare_figure(table, out_dir / "tradeoff.png")
    print(to_markdown(table))
    print(f"\nwrote {out_dir}/experiments.csv, experiments.md, tradeoff.png")
    return 0


def _compare_figure(table: Any, path: Path) -> None:
    from llm_energy.analysis.compare import comparison_figure
    from llm_energy.analysis.figures import figure_png_bytes

    path.write_bytes(figure_png_bytes(comparison_figure(table)))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llm-energy", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--root",
        default=os.environ.get("LLM_ENERGY_ROOT", "."),
        help="repository root (default: .)",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("compose", help="compose conf/ into params.yaml")
    p.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. gpu.freq=1200 model=gpt2")
    p.add_argument("--check", action="store_true", help="only check that params.yaml matches conf/")
    p.add_argument(
        "--out", help="write here instead of params.yaml (e.g. for a host without Hydra)"
    )
    p.set_defaults(func=_cmd_compose)

    p = sub.add_parser("gpu", help="GPU clock state and crash recovery")
    p.add_argument("action", choices=["status", "restore"])
    p.add_argument("--backend", default="auto", choices=["auto", "nvml", "cpu", "simulated"])
    p.add_argument("--index", type=int, default=0)
    p.set_defaults(func=_cmd_gpu)

    p = sub.add_parser("compare", help="trade-off table across DVC experiments")
    p.add_argument(
        "--json-file", help="read `dvc exp show --json` output from a file instead of running DVC"
    )
    p.add_argument("--all", action="store_true", help="include experiments of all commits (-A)")
    p.add_argument("--latency-budget-pct", type=float, default=5.0)
    p.set_defaults(func=_cmd_compare)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
