"""Clock journals: the write-ahead record of a GPU's original state, one file per GPU UUID (mode
0o644), read conservatively by `parse_journal` (docs/device.md, "Journal and restore")."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llm_energy.config.schema import is_int
from llm_energy.control.gpulock import ensure_shared_dir, safe_name
from llm_energy.device.base import ClockState, Device
from llm_energy.device.errors import DeviceError, os_errors_as
from llm_energy.device.group import split_group_uuid
from llm_energy.device.identity import ProcessIdentity, command_line, now_iso, opt_str
from llm_energy.io.files import atomic_write_text

JOURNAL_VERSION = 2
JOURNAL_FILE_MODE = 0o644
JOURNAL_DIR_MODE = 0o777  # no sticky bit: whoever restores a GPU may delete its journal
SETTINGS = ("sm", "mem", "power_limit")
_PREFIX, _SUFFIX = "clock-journal-", ".json"
_STATE_TODO = "Set gpu.state_dir (or $LLM_ENERGY_STATE_DIR) to a writable per-machine directory."


def journal_path(journal_dir: str | Path, uuid: str) -> Path:
    return Path(journal_dir) / f"{_PREFIX}{safe_name(uuid)}{_SUFFIX}"


def uuid_from_journal_path(path: Path) -> str:
    return path.name[len(_PREFIX) : -len(_SUFFIX)]


def list_journals(journal_dir: str | Path) -> list[Path]:
    try:
        return sorted(Path(journal_dir).glob(f"{_PREFIX}*{_SUFFIX}"))
    except OSError:
        return []


def group_journals_with(journal_dir: str | Path, uuid: str) -> list[Path]:
    """Journals of device groups (device/group.py) that include this GPU."""
    return [
        p
        for p in list_journals(journal_dir)
        if len(parts := split_group_uuid(uuid_from_journal_path(p))) > 1 and uuid in parts
    ]


def clear_command(uuid: str) -> str:
    return f"llm-energy gpu clear --uuid {uuid}"


@dataclass(frozen=True)
class Journal:
    uuid: str
    owner: ProcessIdentity | None  # None: the file does not say who wrote it
    updated_at: str | None
    original: ClockState
    changed: dict[str, bool]
    damage: list[str] = field(default_factory=list)  # fields read conservatively, and how

    def describe(self) -> str:
        who = f"pid {self.owner.pid}" if self.owner else "an unknown process"
        return f"{self.original.describe()} (journal left by {who} at {self.updated_at})"


def _opt_positive_int(d: dict[str, Any], key: str, damage: list[str], what: str) -> int | None:
    v = d.get(key)
    if v is None:
        return None
    if is_int(v) and v > 0:
        return int(v)
    damage.append(f"{key}={v!r} is not a clock: {what}")
    return None


def _original(raw: Any, damage: list[str]) -> ClockState:
    if not isinstance(raw, dict):
        damage.append("no readable original state: locks are reset to the driver default")
        raw = {}
    sm = _opt_positive_int(raw, "sm_locked_mhz", damage, "SM reset to the driver default")
    mem = _opt_positive_int(raw, "mem_locked_mhz", damage, "memory reset to the driver default")
    pl = raw.get("power_limit_w")
    if pl is not None and not (isinstance(pl, int | float) and not isinstance(pl, bool) and pl > 0):
        damage.append(f"power_limit_w={pl!r} is unreadable: the power limit is left as it is")
        pl = None
    known = raw.get("locks_known", True)
    members = _members(raw["members"], damage) if "members" in raw else None
    return ClockState(sm, mem, None if pl is None else float(pl), bool(known), members)


def _members(raw: Any, damage: list[str]) -> tuple[tuple[str, ClockState], ...] | None:
    """A device group's per-GPU originals; None (every member gets the group-level state,
    i.e. locks reset to the driver default) when unreadable."""
    fallback = "members unreadable: every GPU of the group is reset to the driver default"
    if not isinstance(raw, list) or not raw:
        damage.append(fallback)
        return None
    out = []
    for m in raw:
        if not isinstance(m, dict) or not isinstance(m.get("uuid"), str) or "members" in m:
            damage.append(fallback)
            return None
        sub: list[str] = []
        state = _original(m, sub)
        damage.extend(f"{m['uuid']}: {d}" for d in sub)
        out.append((m["uuid"], state))
    return tuple(out)


def _changed(raw: Any, damage: list[str]) -> dict[str, bool]:
    if not isinstance(raw, dict):
        damage.append("no readable `changed`: every setting is restored")
        return dict.fromkeys(SETTINGS, True)
    out = {}
    for key in SETTINGS:
        v = raw.get(key, True)
        if not isinstance(v, bool):
            damage.append(f"changed.{key}={v!r} is not true/false: restored")
            v = True
        out[key] = v
    return out


def _owner(d: dict[str, Any], damage: list[str]) -> ProcessIdentity | None:
    pid = d.get("pid")
    if not (is_int(pid) and pid > 0):
        damage.append(f"pid={pid!r} does not name a process: the GPU lock decides")
        return None
    return ProcessIdentity.from_record(d, "proc_start_ticks")


def parse_journal(data: Any, uuid: str) -> Journal:
    """A Journal from the decoded file; DeviceError (corrupt) when it is not a journal at all."""
    if not isinstance(data, dict):
        raise corrupt_error(uuid, None, f"it holds {type(data).__name__}, not a JSON object")
    written_for = data.get("uuid")
    if written_for is not None and written_for != uuid:
        raise corrupt_error(uuid, None, f"it was written for GPU {written_for!r}")
    damage: list[str] = []
    return Journal(
        uuid=uuid,
        owner=_owner(data, damage),
        updated_at=opt_str(data.get("updated_at")),
        original=_original(data.get("original"), damage),
        changed=_changed(data.get("changed"), damage),
        damage=damage,
    )


def corrupt_error(uuid: str, path: Path | None, why: str) -> DeviceError:
    where = f" {path}" if path is not None else ""
    return DeviceError(
        f"Cannot use the clock journal{where} of GPU {uuid}",
        f"it is corrupt ({why}), so the original clocks are unknown",
        f"Run `{clear_command(uuid)}` (resets the GPU's clock locks to the driver default and "
        "removes the journal), then start again.",
    )


def read_journal_data(path: Path, uuid: str) -> dict[str, Any] | None:
    """The decoded journal object, None when there is none; DeviceError when corrupt."""
    with os_errors_as(
        f"Cannot read the clock journal {path} of GPU {uuid}",
        "Run `llm-energy gpu status` as the user (or with sudo) that ran the capped run.",
    ):
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
    try:
        data = json.loads(text)
    except ValueError as err:
        why = "empty file" if not text.strip() else f"not JSON: {err}"
        raise corrupt_error(uuid, path, why) from err
    parse_journal(data, uuid)  # raises when it is not a journal at all
    return data


def load_journal(journal_dir: str | Path, uuid: str) -> Journal | None:
    data = read_journal_data(journal_path(journal_dir, uuid), uuid)
    return None if data is None else parse_journal(data, uuid)


def journal_record(
    device: Device,
    original: ClockState,
    changed: dict[str, bool],
    requested: dict[str, Any],
    applied: dict[str, Any],
    details: dict[str, Any] | None,
) -> dict[str, Any]:
    me = ProcessIdentity.current()
    return {
        "version": JOURNAL_VERSION,
        "uuid": device.uuid(),
        "name": device.name(),
        "backend": device.backend,
        "index": device.index,
        # Owner: pid + process start (field 22 of /proc/<pid>/stat) + boot id + host.
        "pid": me.pid,
        "proc_start_ticks": me.start_ticks,
        "boot_id": me.boot_id,
        "host": me.host,
        "command": command_line(),
        "updated_at": now_iso(),
        "original": original.to_dict(),
        "changed": dict(changed),
        "requested": requested,
        "applied": applied,
        "clock_details_at_start": details,  # NVML diagnostics, not used to restore
    }


def write_journal(path: Path, record: dict[str, Any]) -> None:
    """Atomic, fsynced and readable by every user; one-line DeviceError when impossible."""
    ensure_shared_dir(path.parent.parent)
    ensure_shared_dir(path.parent, JOURNAL_DIR_MODE)
    text = json.dumps(record, indent=2, sort_keys=True) + "\n"
    with os_errors_as(f"Cannot write the clock journal {path}", _STATE_TODO):
        atomic_write_text(path, text, fsync=True, mode=JOURNAL_FILE_MODE)


def delete_journal(path: Path) -> None:
    with os_errors_as(
        f"Cannot delete the clock journal {path}",
        "Delete it as its owner (or with sudo); the GPU itself is restored.",
    ):
        path.unlink(missing_ok=True)


def restore_state(device: Device, original: ClockState, changed: dict[str, bool]) -> list[str]:
    """Put back each setting marked changed; return problems (empty = restored, verified).
    A group restores every member to its own original, carrying on past a member that fails."""
    if original.members:
        return _for_members(device, original, changed, restore_state)
    problems: list[str] = []
    steps = []
    for key, mhz, lock, reset in (
        ("sm", original.sm_locked_mhz, device.lock_sm_clocks, device.reset_sm_clocks),
        ("mem", original.mem_locked_mhz, device.lock_mem_clocks, device.reset_mem_clocks),
    ):
        if changed.get(key):
            steps.append((reset, ()) if mhz is None else (lock, (mhz,)))
    if changed.get("power_limit") and original.power_limit_w is not None:
        steps.append((device.set_power_limit_w, (original.power_limit_w,)))
    for fn, args in steps:
        try:
            fn(*args)
        except (DeviceError, OSError) as err:  # OSError: the simulated state file
            problems.append(str(err))
    return problems or verify_state(device, original, changed)


def verify_state(device: Device, expected: ClockState, changed: dict[str, bool]) -> list[str]:
    """Read back what can be read back. NVML cannot read locks: there only the power limit is
    verified (the setter calls themselves succeeded or raised)."""
    if expected.members:
        return _for_members(device, expected, changed, verify_state)
    try:
        now = device.clock_state()
    except (DeviceError, OSError, ValueError) as err:
        return [f"cannot read the clock state back: {err}"]
    problems = []
    if now.locks_known and expected.locks_known:
        if changed.get("sm") and now.sm_locked_mhz != expected.sm_locked_mhz:
            problems.append(f"SM lock reads {now.sm_locked_mhz}, expected {expected.sm_locked_mhz}")
        if changed.get("mem") and now.mem_locked_mhz != expected.mem_locked_mhz:
            problems.append(
                f"memory lock reads {now.mem_locked_mhz}, expected {expected.mem_locked_mhz}"
            )
    now_w, want_w = now.power_limit_w, expected.power_limit_w
    if changed.get("power_limit") and None not in (now_w, want_w) and abs(now_w - want_w) > 0.5:
        problems.append(f"power limit reads {now_w:g} W, expected {want_w:g} W")
    return problems


def _for_members(
    device: Device,
    state: ClockState,
    changed: dict[str, bool],
    step: Callable[[Device, ClockState, dict[str, bool]], list[str]],
) -> list[str]:
    by_uuid = {m.uuid(): m for m in device.member_devices()}
    problems: list[str] = []
    for uuid, member_state in state.members or ():
        member = by_uuid.get(uuid)
        if member is None:
            problems.append(f"GPU {uuid} is not among the GPUs opened ({', '.join(by_uuid)})")
            continue
        problems.extend(f"GPU {uuid}: {p}" for p in step(member, member_state, changed))
    return problems
