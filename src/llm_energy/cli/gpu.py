"""`llm-energy gpu`: the state of one GPU (status), and putting clocks back after a crash
(restore, clear). Reads and restores only: never a new cap."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from llm_energy.paths import gpu_journal_dir, gpu_lock_dir, project_paths


def add_gpu_parser(sub: Any) -> None:
    p = sub.add_parser(
        "gpu",
        help="GPU clock state, locks and crash recovery",
        description="status: clocks of one GPU, every journal and lock in the state directory. "
        "restore: restore every pending journal (or --uuid / --index). "
        "clear --uuid U: for a corrupt journal, reset U's clock locks to the driver default "
        "and delete the journal.",
    )
    p.add_argument("action", choices=["status", "restore", "clear"])
    p.add_argument("--backend", default="auto", choices=["auto", "nvml", "cpu", "simulated"])
    p.add_argument("--index", type=int, default=None, help="GPU index (status default: 0)")
    p.add_argument("--uuid", help="the GPU a journal names, whatever its backend")
    p.add_argument(
        "--state-dir", help="locks and journals (default: gpu.state_dir, $LLM_ENERGY_STATE_DIR)"
    )
    p.add_argument("--json", action="store_true", help="status: print the facts as JSON")
    p.set_defaults(func=cmd_gpu)


def _value(value: Any, unit: str = "") -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        value = f"{value:.1f}"
    if isinstance(value, list | tuple):
        value = ", ".join(str(v) for v in value)
    return f"{value}{unit}"


def format_status(status: Mapping[str, Any]) -> str:
    """`gpu status` for a reader: one fact per line; `--json` prints every field."""
    state = status.get("clock_state") or {}
    sm_lock = state.get("sm_locked_mhz")
    sm_range = status.get("supported_sm_clocks_range_mhz")
    reasons = status.get("clock_event_reason_names")
    journal = str(status.get("journal_state"))
    if status.get("journal_problem"):
        journal += f": {status['journal_problem']} ({status.get('journal_fix')})"
    if status.get("pending_journal"):
        owner = "its run is alive" if status.get("journal_owner_alive") else "its run is gone"
        journal += f"; {owner}: `llm-energy gpu restore` puts the clocks back"
    lock = "held by " + str(status.get("lock_holder")) if status.get("lock_held") else "free"
    rows = [
        ("GPU", f"{status.get('name')} ({status.get('backend')} {status.get('index')})"),
        ("uuid", _value(status.get("uuid"))),
        ("energy source", _value(status.get("energy_source"))),
        ("SM clock", _value(status.get("sm_clock_mhz"), " MHz")),
        ("SM lock", "driver default" if sm_lock is None else f"locked at {sm_lock} MHz"),
        ("memory clock", _value(status.get("mem_clock_mhz"), " MHz")),
        ("power", _value(status.get("power_w"), " W")),
        ("power limit", _value(status.get("power_limit_w"), " W")),
        ("temperature", _value(status.get("temperature_c"), " °C")),
        ("throttling", ", ".join(reasons) if reasons else "none"),
        ("SM clocks", f"{sm_range[0]}–{sm_range[1]} MHz" if sm_range else "n/a"),
        ("memory clocks", _value(status.get("supported_mem_clocks_mhz"), " MHz")),
        ("clock control", "possible" if status.get("can_control_clocks") else "not possible"),
        ("journal", journal),
        ("lock", lock),
        ("state dir", _value(status.get("state_dir"))),
        ("all journals", str(len(status.get("journals") or []))),
    ]
    return "\n".join(f"{k:<15}{v}" for k, v in rows)


def cli_state_dir(args: argparse.Namespace) -> Path:
    """--state-dir; else gpu.state_dir of params.yaml; else env / per-machine default (as infer)."""
    paths = project_paths(args.root)
    configured = args.state_dir
    if configured is None and paths.params.exists():
        from llm_energy.io.files import read_yaml

        try:
            configured = ((read_yaml(paths.params) or {}).get("gpu") or {}).get("state_dir")
        except Exception:  # a broken params.yaml must not stop a restore
            configured = None
    return paths.gpu_state_dir(configured if isinstance(configured, str) else None)


def gpu_restore(args: argparse.Namespace, state_dir: Path) -> tuple[list[str], list[str]]:
    """(done, failed) lines: the GPU given by --uuid or --index, else every journal in the
    state directory whatever its backend or simulated model."""
    from llm_energy.control.journal import list_journals, uuid_from_journal_path
    from llm_energy.control.open import DeviceSpec, open_device, open_device_by_uuid
    from llm_energy.control.recovery import restore_from_journal
    from llm_energy.device.errors import DeviceError

    journals, locks = gpu_journal_dir(state_dir), gpu_lock_dir(state_dir)
    if args.uuid is None and args.index is not None:
        with open_device(DeviceSpec.for_tool(args.backend, args.index, state_dir)) as device:
            return [restore_from_journal(device, journals, lock_dir=locks)], []
    uuids = (
        [args.uuid] if args.uuid else [uuid_from_journal_path(p) for p in list_journals(journals)]
    )
    if not uuids:
        return [f"No pending clock journal in {journals}; nothing to restore."], []
    done, failed = [], []
    for uuid in uuids:
        try:
            with open_device_by_uuid(uuid, state_dir=state_dir) as device:
                done.append(restore_from_journal(device, journals, lock_dir=locks))
        except DeviceError as exc:
            failed.append(str(exc))
    return done, failed


def cmd_gpu(args: argparse.Namespace) -> int:
    from llm_energy.control.open import DeviceSpec, open_device, open_device_by_uuid
    from llm_energy.control.recovery import clear_journal, gpu_status, state_report
    from llm_energy.device.errors import DeviceError

    failed: list[str] = []
    try:
        state_dir = cli_state_dir(args)
        journals, locks = gpu_journal_dir(state_dir), gpu_lock_dir(state_dir)
        if args.action == "status":
            index = 0 if args.index is None else args.index
            with open_device(DeviceSpec.for_tool(args.backend, index, state_dir)) as device:
                status = gpu_status(device, journals, lock_dir=locks)
            status |= {"state_dir": str(state_dir)} | state_report(journals, locks)
            print(json.dumps(status, indent=2, default=str) if args.json else format_status(status))
        elif args.action == "clear":
            if not args.uuid:
                raise DeviceError(
                    "Cannot clear a clock journal", "no GPU given", "Pass --uuid <GPU UUID>."
                )
            with open_device_by_uuid(args.uuid, state_dir=state_dir) as device:
                print(clear_journal(device, journals, lock_dir=locks))
        else:
            done, failed = gpu_restore(args, state_dir)
            for line in done:
                print(line)
    except DeviceError as exc:
        failed.append(str(exc))
    for line in failed:
        print(f"llm-energy gpu {args.action}: error: {line}", file=sys.stderr)
    return 2 if failed else 0
