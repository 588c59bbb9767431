"""Repairing what a killed run left behind, and saying what the state directory holds
(docs/device.md, "Journal and restore": a journal whose GPU lock we obtain is a gone run's)."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any

from llm_energy.control import journal as jr
from llm_energy.control.gpulock import describe_holder, holds_gpu, lock_held, lock_path, read_holder
from llm_energy.control.gpupick import Lease, acquire_gpus
from llm_energy.device.base import Device, describe_clock_event_reasons
from llm_energy.device.errors import DeviceError, RestoreError, SessionConflictError
from llm_energy.device.identity import process_start_s

_ACTIVE: set[str] = set()  # GPU UUIDs with an open clock session in this process


def mark_session(uuid: str, active: bool) -> None:
    (_ACTIVE.add if active else _ACTIVE.discard)(uuid)


def session_active(uuid: str) -> bool:
    return uuid in _ACTIVE


def default_lock_dir(journal_dir: str | Path) -> Path:
    """Locks live next to the journals: <state_dir>/locks beside <state_dir>/journal."""
    return Path(journal_dir).parent / "locks"


def owner_running(journal: jr.Journal) -> bool:
    """Whether the process that wrote the journal still runs (and is not this one)."""
    owner = journal.owner
    if owner is None or owner.pid == os.getpid() or not owner.is_running():
        return False
    if owner.start_ticks is None and journal.updated_at:
        # Journal without a start time: a process that started after the journal was last
        # written cannot have written it (its pid was reused).
        started = process_start_s(owner.pid)
        try:
            written = dt.datetime.fromisoformat(journal.updated_at).timestamp()
        except ValueError:
            return True
        return started is None or started <= written + 1.0
    return True


def _refuse_if_in_use(uuid: str, asked: str) -> None:
    if session_active(uuid):
        raise SessionConflictError(
            asked,
            "a clock session in this process is still active on it",
            "Leave that session first (its exit restores the clocks).",
        )


def refuse_if_in_a_pending_group(device: Device, journal_dir: str | Path) -> None:
    """A GPU that a killed multi-GPU run left capped is put back by restoring that whole run
    (`llm-energy gpu restore`), not by a single-GPU session on it."""
    uuid = device.uuid()
    groups = [] if len(device.member_devices()) > 1 else jr.group_journals_with(journal_dir, uuid)
    if groups:
        raise SessionConflictError(
            f"Cannot change the clocks of GPU {uuid}",
            f"a killed multi-GPU run left it capped (journal {groups[0]})",
            "Run `llm-energy gpu restore` to put back every GPU of that run, then start again.",
        )


def recover_pending(
    device: Device, journal_dir: str | Path, *, lock_dir: str | Path | None = None
) -> str | None:
    """Restore the original state recorded by a killed run, then delete its journal; a message,
    or None when no journal was pending. RestoreError (journal kept) when the restore fails."""
    uuid = device.uuid()
    members = device.member_devices()
    done: list[str] = []
    if len(members) > 1:  # a member's own journal, left by a killed single-GPU run
        for member in members:
            msg = recover_pending(member, journal_dir, lock_dir=lock_dir)
            if msg:
                done.append(msg)
    if jr.load_journal(journal_dir, uuid) is None:
        return " ".join(done) or None
    asked = f"Cannot restore GPU {uuid} from its clock journal"
    _refuse_if_in_use(uuid, asked)
    locks = Path(lock_dir) if lock_dir is not None else default_lock_dir(journal_dir)
    # A GPU whose lock is held belongs to a live run: refuse at once rather than wait.
    with acquire_gpus(locks, [m.uuid() for m in members], asked=asked, wait_for_gpu_s=0.0):
        journal = jr.load_journal(journal_dir, uuid)  # its owner may have restored meanwhile
        if journal is None:
            return " ".join(done) or None
        path = jr.journal_path(journal_dir, uuid)
        if owner_running(journal):
            assert journal.owner is not None
            raise SessionConflictError(
                f"Cannot take over the clocks of GPU {uuid}",
                f"process {journal.owner.pid} still holds a clock session on it (journal {path})",
                "Wait for it to finish or stop it; its exit restores the clocks.",
            )
        problems = jr.restore_state(device, journal.original, journal.changed)
        if problems:
            raise RestoreError(
                f"Cannot restore GPU {uuid} from the clock journal {path}",
                "; ".join(problems),
                "Fix the cause and run `llm-energy gpu restore` again (with sudo where clocks "
                "need root; the journal is kept), or reset with nvidia-smi -rgc / -rmc.",
            )
        jr.delete_journal(path)
    msg = f"Restored {device.name()} ({uuid}) to its original state: {journal.describe()}."
    if journal.damage:
        msg += f" The journal was damaged and read conservatively: {'; '.join(journal.damage)}."
    return " ".join([*done, msg])


def lease_and_recover(
    device: Device, journal_dir: str | Path, lock_dir: Path
) -> tuple[Lease, str | None]:
    """Before a clock session touches clocks: take every member's GPU lock, then repair a journal
    a killed run left. (lease, what the repair did); no lease kept on failure."""
    uuid = device.uuid()
    if session_active(uuid):
        raise SessionConflictError(
            f"Cannot open a second clock session on GPU {uuid}",
            "this process already holds one",
            "Use set_sm_cap() on the open session instead.",
        )
    lease = acquire_gpus(
        lock_dir,
        [m.uuid() for m in device.member_devices()],
        asked=f"Cannot change the clocks of GPU {device.index}",
        wait_for_gpu_s=0.0,  # a run waits (gpu.wait_for_gpu_s) when it opens its device
    )
    try:
        refuse_if_in_a_pending_group(device, journal_dir)
        return lease, recover_pending(device, journal_dir, lock_dir=lock_dir)
    except BaseException:
        lease.release()
        raise


def restore_from_journal(
    device: Device, journal_dir: str | Path, *, lock_dir: str | Path | None = None
) -> str:
    """CLI helper: restore from a pending journal and say what happened, in one line."""
    msg = recover_pending(device, journal_dir, lock_dir=lock_dir)
    if msg is None:
        return f"No pending clock journal for {device.name()} ({device.uuid()}) in {journal_dir}; nothing to restore."
    return msg


def clear_journal(
    device: Device, journal_dir: str | Path, *, lock_dir: str | Path | None = None
) -> str:
    """For a journal nothing can be restored from: reset the clock locks to the driver default
    (the power limit is left as it is) and delete the journal."""
    uuid = device.uuid()
    asked = f"Cannot clear the clock journal of GPU {uuid}"
    _refuse_if_in_use(uuid, asked)
    locks = Path(lock_dir) if lock_dir is not None else default_lock_dir(journal_dir)
    uuids = [m.uuid() for m in device.member_devices()]
    with acquire_gpus(locks, uuids, asked=asked, wait_for_gpu_s=0.0):  # held: refuse at once
        problems = []
        for reset in (device.reset_sm_clocks, device.reset_mem_clocks):
            try:
                reset()
            except (DeviceError, OSError) as err:
                problems.append(str(err))
        if problems:
            raise RestoreError(
                f"Cannot reset the clock locks of GPU {uuid}",
                "; ".join(problems),
                "Run it again with sudo where clocks need root, or use nvidia-smi -rgc / -rmc.",
            )
        path = jr.journal_path(journal_dir, uuid)
        existed = path.exists()
        jr.delete_journal(path)
    pl = device.power_limit_w()
    return (
        f"Reset the SM and memory clock locks of {device.name()} ({uuid}) to the driver default"
        + (f" and removed {path}" if existed else "")
        + (f"; power limit left at {pl:g} W." if pl is not None else ".")
    )


def pending_journal_warning(device: Device, journal_dir: str | Path) -> str | None:
    """What to tell a run that will not restore (observe mode) about a pending journal."""
    uuid = device.uuid()
    groups = [] if len(device.member_devices()) > 1 else jr.group_journals_with(journal_dir, uuid)
    if groups:
        which = f"is part of a pending multi-GPU clock journal ({groups[0]})"
    else:
        try:
            if jr.load_journal(journal_dir, uuid) is None:
                return None
        except DeviceError as err:
            return str(err)
        which = f"has a pending clock journal ({jr.journal_path(journal_dir, uuid)})"
    return (
        f"GPU {uuid} {which}: its clocks may still be locked by a killed run; run "
        "`llm-energy gpu restore` to put them back."
    )


def journal_report(path: Path) -> dict[str, Any]:
    """One journal file as `gpu status` shows it; never raises."""
    uuid = jr.uuid_from_journal_path(path)
    entry: dict[str, Any] = {"uuid": uuid, "path": str(path)}
    try:
        data = jr.read_journal_data(path, uuid)
    except DeviceError as err:
        corrupt = "corrupt" in err.why
        return entry | {
            "state": "corrupt" if corrupt else "unreadable",
            "problem": str(err),
            "fix": jr.clear_command(uuid) if corrupt else "sudo llm-energy gpu status",
        }
    if data is None:
        return entry | {"state": "gone"}
    journal = jr.parse_journal(data, uuid)
    running = owner_running(journal)
    return entry | {
        "state": "damaged" if journal.damage else "pending",
        "problem": "; ".join(journal.damage) or None,
        "owner_pid": journal.owner.pid if journal.owner else None,
        "owner_running": running,
        "original": journal.original.to_dict(),
        "changed": journal.changed,
        "updated_at": journal.updated_at,
        "fix": None if running else "llm-energy gpu restore",
    }


def lock_report(lock_dir: Path) -> list[dict[str, Any]]:
    out = []
    for path in sorted(Path(lock_dir).glob("gpu-*.lock")) if Path(lock_dir).is_dir() else []:
        held, holder = lock_held(path), read_holder(path)
        entry = {
            "uuid": path.name[len("gpu-") : -len(".lock")],
            "path": str(path),
            "held": held,
            "holder": describe_holder(path, wait_s=0) if held else None,
            "last_holder_pid": holder.identity.pid if holder else None,
        }
        out.append(entry)
    return out


def state_report(journal_dir: str | Path, lock_dir: str | Path | None = None) -> dict[str, Any]:
    """Every journal and lock in the state directory, whatever GPU or backend they are for."""
    locks = Path(lock_dir) if lock_dir is not None else default_lock_dir(journal_dir)
    return {
        "journal_dir": str(journal_dir),
        "lock_dir": str(locks),
        "journals": [journal_report(p) for p in jr.list_journals(journal_dir)],
        "locks": lock_report(locks),
    }


def gpu_status(
    device: Device, journal_dir: str | Path, *, lock_dir: str | Path | None = None
) -> dict[str, Any]:
    """Current clocks, locks, power limit, any pending journal and the GPU lock; read-only."""

    def _safe(fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except (DeviceError, OSError, ValueError):
            return None

    locks = Path(lock_dir) if lock_dir is not None else default_lock_dir(journal_dir)
    uuid = _safe(device.uuid)
    reasons = _safe(device.clock_event_reasons)
    state = _safe(device.clock_state)
    sm = _safe(device.supported_sm_clocks_mhz) or []
    jpath = jr.journal_path(journal_dir, uuid or "?")
    report = journal_report(jpath) if jpath.exists() else {"state": "none"}
    journal = _safe(jr.read_journal_data, jpath, uuid or "?")
    lpath = lock_path(locks, uuid or "?")
    held = lock_held(lpath)
    return {
        "backend": device.backend,
        "index": device.index,
        "name": _safe(device.name),
        "uuid": uuid,
        "energy_source": device.energy_source,
        "can_control_clocks": device.can_control_clocks(),
        "sm_clock_mhz": _safe(device.sm_clock_mhz),
        "mem_clock_mhz": _safe(device.mem_clock_mhz),
        "power_w": _safe(device.power_w),
        "power_limit_w": _safe(device.power_limit_w),
        "temperature_c": _safe(device.temperature_c),
        "clock_event_reasons": reasons,
        "clock_event_reason_names": describe_clock_event_reasons(reasons)
        if reasons is not None
        else None,
        "clock_state": state.to_dict() if state is not None else None,
        "clock_details": _safe(getattr(device, "clock_details", dict)),
        "supported_sm_clocks_range_mhz": [min(sm), max(sm)] if sm else None,
        "supported_mem_clocks_mhz": _safe(device.supported_mem_clocks_mhz),
        "journal_path": str(jpath),
        "pending_journal": journal,
        "journal_state": report["state"],
        "journal_problem": report.get("problem"),
        "journal_fix": report.get("fix"),
        "journal_owner_alive": report.get("owner_running") if journal else None,
        "lock_path": str(lpath),
        "lock_held": held,
        "lock_holder": describe_holder(lpath, wait_s=0) if held else None,
        "lock_held_by_this_process": bool(uuid) and holds_gpu(locks, uuid),
        "session_active_in_this_process": bool(uuid) and session_active(uuid),
    }
