"""Frequency caps with crash safety.

`ClockSession` locks the SM clock (min = max) and optionally the memory clock, and always puts
back the ORIGINAL state: on normal exit, on exceptions, on SIGINT/SIGTERM (handlers restore,
then chain to the previous handler or re-deliver the signal) and at interpreter exit. Before any
change it writes a journal (JSON, one file per GPU UUID, atomically replaced) holding the
original state and which settings it is about to change (write-ahead), so a run killed with
SIGKILL is repaired by the next session or by `recover_pending` / `restore_from_journal`.

`control="observe"` never calls a setter: it only records the clocks in force.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime as dt
import logging
import os
import re
import signal
import socket
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any, Literal

from llm_energy.freq import snap_to_supported
from llm_energy.hw.base import (
    ClockState,
    Device,
    atomic_write_json,
    describe_clock_event_reasons,
    pid_alive,
    read_json,
)
from llm_energy.hw.errors import (
    DeviceError,
    NotSupportedError,
    OtherProcessesError,
    PermissionDeniedError,
    RestoreError,
    SessionConflictError,
)

log = logging.getLogger(__name__)

Control = Literal["lock", "observe"]
OtherProcessPolicy = Literal["warn", "refuse"]
JOURNAL_VERSION = 1
CAP_SYS_ADMIN_BIT = 21
_SIGNALS = (signal.SIGINT, signal.SIGTERM)

# Sessions alive in this process, by GPU UUID: a second session on the same GPU would
# snapshot the first one's lock as "original" and restore the wrong state.
_ACTIVE: dict[str, ClockSession] = {}


class ClockSnapWarning(UserWarning):
    """A requested clock was not supported and was snapped to the nearest supported one."""


class OtherProcessesWarning(UserWarning):
    """Other processes use the GPU: their load perturbs energy readings."""


# ---------------------------------------------------------------------------- helpers


def has_clock_privilege(status_path: Path = Path("/proc/self/status")) -> bool:
    """Root, or CAP_SYS_ADMIN in the effective capability set (what NVML setters need)."""
    if os.geteuid() == 0:
        return True
    try:
        for line in status_path.read_text().splitlines():
            if line.startswith("CapEff:"):
                return bool((int(line.split()[1], 16) >> CAP_SYS_ADMIN_BIT) & 1)
    except (OSError, ValueError, IndexError):
        pass
    return False


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def _now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def journal_path(journal_dir: str | Path, uuid: str) -> Path:
    return Path(journal_dir) / f"clock-journal-{re.sub(r'[^A-Za-z0-9._-]', '_', uuid)}.json"


def read_journal(device: Device, journal_dir: str | Path) -> dict[str, Any] | None:
    """The pending journal for this device, or None."""
    path = journal_path(journal_dir, device.uuid())
    try:
        data = read_json(path)
    except (ValueError, OSError) as err:
        raise DeviceError(
            f"Cannot read the clock journal {path}",
            f"it is corrupt ({err})",
            "Check the GPU clocks with nvidia-smi (reset with nvidia-smi -rgc/-rmc if needed), then delete the file.",
        ) from err
    if data is not None and data.get("uuid") not in (None, device.uuid()):
        raise DeviceError(
            f"Cannot use the clock journal {path}", "it belongs to another GPU", "Delete it."
        )
    return data


def _journal_owner_alive(journal: dict[str, Any]) -> bool:
    pid = int(journal.get("pid", -1))
    if pid <= 0 or pid == os.getpid():
        return False
    if journal.get("boot_id") and journal.get("boot_id") != _boot_id():
        return False  # written before a reboot: its process is gone whatever the pid says
    return pid_alive(pid)


def _restore_state(device: Device, original: ClockState, changed: dict[str, bool]) -> list[str]:
    """Put back each setting this project changed; return problems (empty = restored, verified)."""
    problems: list[str] = []
    if changed.get("sm"):
        try:
            if original.sm_locked_mhz is None:
                device.reset_sm_clocks()
            else:
                device.lock_sm_clocks(original.sm_locked_mhz)
        except DeviceError as err:
            problems.append(str(err))
    if changed.get("mem"):
        try:
            if original.mem_locked_mhz is None:
                device.reset_mem_clocks()
            else:
                device.lock_mem_clocks(original.mem_locked_mhz)
        except DeviceError as err:
            problems.append(str(err))
    if changed.get("power_limit") and original.power_limit_w is not None:
        try:
            device.set_power_limit_w(original.power_limit_w)
        except DeviceError as err:
            problems.append(str(err))
    if not problems:
        problems = _verify_state(device, original, changed)
    return problems


def _verify_state(device: Device, expected: ClockState, changed: dict[str, bool]) -> list[str]:
    """Read back what can be read back. NVML cannot read locks: there only the power limit is
    verified (the setter calls themselves succeeded or raised)."""
    try:
        now = device.clock_state()
    except DeviceError as err:
        return [f"cannot read the clock state back: {err}"]
    problems = []
    if now.locks_known and expected.locks_known:
        if changed.get("sm") and now.sm_locked_mhz != expected.sm_locked_mhz:
            problems.append(f"SM lock reads {now.sm_locked_mhz}, expected {expected.sm_locked_mhz}")
        if changed.get("mem") and now.mem_locked_mhz != expected.mem_locked_mhz:
            problems.append(
                f"memory lock reads {now.mem_locked_mhz}, expected {expected.mem_locked_mhz}"
            )
    if (
        changed.get("power_limit")
        and expected.power_limit_w is not None
        and now.power_limit_w is not None
        and abs(now.power_limit_w - expected.power_limit_w) > 0.5
    ):
        problems.append(
            f"power limit reads {now.power_limit_w:g} W, expected {expected.power_limit_w:g} W"
        )
    return problems


def _describe_journal(journal: dict[str, Any]) -> str:
    original = ClockState.from_dict(journal.get("original", {}))
    return f"{original.describe()} (journal left by pid {journal.get('pid')} at {journal.get('updated_at')})"


def recover_pending(device: Device, journal_dir: str | Path) -> str | None:
    """Restore the original state recorded by a killed run, then delete its journal.

    Returns a message when something was restored, None when no journal was pending. Raises
    SessionConflictError if the journal's process is still alive (its own exit restores), and
    RestoreError (journal kept) if the restore fails or does not verify.
    """
    journal = read_journal(device, journal_dir)
    if journal is None:
        return None
    path = journal_path(journal_dir, device.uuid())
    uuid = device.uuid()
    if uuid in _ACTIVE:
        raise SessionConflictError(
            f"Cannot recover the clock journal of GPU {uuid}",
            "a clock session in this process is still active on it",
            "Leave that session first (its exit restores the clocks).",
        )
    if _journal_owner_alive(journal):
        raise SessionConflictError(
            f"Cannot take over the clocks of GPU {uuid}",
            f"process {journal.get('pid')} still holds a clock session on it (journal {path})",
            "Wait for it to finish or stop it; its exit restores the clocks.",
        )
    original = ClockState.from_dict(journal.get("original", {}))
    changed = {k: bool(v) for k, v in journal.get("changed", {}).items()}
    problems = _restore_state(device, original, changed)
    if problems:
        raise RestoreError(
            f"Cannot restore GPU {uuid} from the clock journal {path}",
            "; ".join(problems),
            "Fix the cause and run `llm-energy gpu restore` again (the journal is kept), or reset with nvidia-smi -rgc / -rmc.",
        )
    path.unlink(missing_ok=True)
    msg = f"Restored {device.name()} ({uuid}) to its original state: {_describe_journal(journal)}."
    log.warning(msg)
    return msg


def restore_from_journal(device: Device, journal_dir: str | Path) -> str:
    """CLI helper: restore from a pending journal and say what happened, in one line."""
    msg = recover_pending(device, journal_dir)
    if msg is None:
        return f"No pending clock journal for {device.name()} ({device.uuid()}) in {journal_dir}; nothing to restore."
    return msg


def gpu_status(device: Device, journal_dir: str | Path) -> dict[str, Any]:
    """Current clocks, locks, power limit and any pending journal; never changes anything."""

    def _safe(fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except (DeviceError, OSError, ValueError):
            return None

    reasons = _safe(device.clock_event_reasons)
    state = _safe(device.clock_state)
    journal = _safe(read_journal, device, journal_dir)
    sm = _safe(device.supported_sm_clocks_mhz) or []
    return {
        "backend": device.backend,
        "index": device.index,
        "name": _safe(device.name),
        "uuid": _safe(device.uuid),
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
        "journal_path": str(journal_path(journal_dir, device.uuid())),
        "pending_journal": journal,
        "journal_owner_alive": _journal_owner_alive(journal) if journal else None,
        "session_active_in_this_process": device.uuid() in _ACTIVE,
    }


# ---------------------------------------------------------------------------- the session


class ClockSession:
    """Context manager holding a frequency cap; see the module docstring.

    Attributes after `__enter__`: requested_sm_mhz / applied_sm_mhz, requested_mem_mhz /
    applied_mem_mhz (None = driver default), original (ClockState snapshot, lock mode),
    recovered_message (what a pending journal restore did, if anything).
    """

    def __init__(
        self,
        device: Device,
        control: Control | str = "lock",
        sm_freq_mhz: int | None = None,
        mem_freq_mhz: int | None = None,
        *,
        journal_dir: str | Path,
        on_other_processes: OtherProcessPolicy | str = "warn",
        power_limit_w: float | None = None,
        planned_sm_freqs_mhz: Sequence[int | None] | None = None,
        install_signal_handlers: bool = True,
    ) -> None:
        if control not in ("lock", "observe"):
            raise ValueError(f"control must be 'lock' or 'observe', got {control!r}")
        if on_other_processes not in ("warn", "refuse"):
            raise ValueError(
                f"on_other_processes must be 'warn' or 'refuse', got {on_other_processes!r}"
            )
        self.device = device
        self.control = control
        self.journal_dir = Path(journal_dir)
        self.on_other_processes = on_other_processes
        self.install_signal_handlers = install_signal_handlers
        self.requested_sm_mhz = sm_freq_mhz
        self.requested_mem_mhz = mem_freq_mhz
        self.requested_power_limit_w = power_limit_w
        self.applied_sm_mhz: int | None = None
        self.applied_mem_mhz: int | None = None
        self.applied_power_limit_w: float | None = None
        self.original: ClockState | None = None
        self.recovered_message: str | None = None
        self.interrupted_by: int | None = None
        # Every SM cap the run will ask for (sweeps): checked and snapped up front, so an
        # impossible sweep fails before the model is loaded rather than halfway through.
        self.planned_sm_freqs_mhz = [f for f in (planned_sm_freqs_mhz or []) if f is not None]
        self.warnings: list[str] = []  # every warning issued, for run.json
        self._changed = {"sm": False, "mem": False, "power_limit": False}
        self._preflighted = False
        self._snapped: dict[tuple[str, int | float, tuple[int, ...]], int] = {}
        self._journaled = False
        self._entered = False
        self._prev_handlers: dict[int, Any] = {}
        self._atexit_registered = False
        self._details_at_start: dict[str, Any] | None = None
        self._lock = threading.RLock()

    # -------------------------------------------------------------- public
    @property
    def journal_path(self) -> Path:
        return journal_path(self.journal_dir, self.device.uuid())

    @property
    def holds_changes(self) -> bool:
        return any(self._changed.values())

    def __enter__(self) -> ClockSession:
        uuid = self.device.uuid()
        if self.control == "observe":
            self._enter_observe()
            self._entered = True
            return self
        if uuid in _ACTIVE:
            raise SessionConflictError(
                f"Cannot open a second clock session on GPU {uuid}",
                "this process already holds one",
                "Use set_sm_cap() on the open session instead.",
            )
        # A journal left by a killed run is repaired before anything else.
        self.recovered_message = recover_pending(self.device, self.journal_dir)
        _ACTIVE[uuid] = self
        self._entered = True
        try:
            if self.planned_sm_freqs_mhz:
                self._preflight_plan()
            if self.requested_mem_mhz is not None:
                self._set_mem(self.requested_mem_mhz)
            if self.requested_sm_mhz is not None:
                self._set_sm(self.requested_sm_mhz)
            if self.requested_power_limit_w is not None:
                self._set_power_limit(self.requested_power_limit_w)
            if self.requested_sm_mhz is None:
                self.applied_sm_mhz = self._sm_lock_in_force()
        except BaseException:
            self._close(raise_errors=False)
            raise
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._close(raise_errors=exc_type is None)

    def set_sm_cap(self, freq_mhz: int | None) -> int | None:
        """Change the SM cap inside the session (sweeps). None = back to the original SM state
        (driver default unless something else had locked it). Returns the applied clock: the
        snapped cap, or for None the lock in force where readable (None = driver default)."""
        if not self._entered:
            raise RuntimeError(
                "set_sm_cap() needs an entered ClockSession (use it in a with block)"
            )
        if self.interrupted_by is not None:
            raise DeviceError(
                f"Cannot set the SM cap to {freq_mhz} MHz",
                f"the session was restored on signal {self.interrupted_by}",
                "Stop the run; start a new session.",
            )
        if self.control == "observe":
            self.requested_sm_mhz = freq_mhz
            self.applied_sm_mhz = self.device.sm_clock_mhz()
            return self.applied_sm_mhz
        self.requested_sm_mhz = freq_mhz
        if freq_mhz is None:
            if self._changed["sm"] and self.original is not None:
                problems = _restore_state(self.device, self.original, {"sm": True})
                if problems:
                    raise RestoreError(
                        f"Cannot return GPU {self.device.uuid()} to its original SM clock state",
                        "; ".join(problems),
                        "Run `llm-energy gpu restore`.",
                    )
                self._changed["sm"] = False
                self._write_journal()
            self.applied_sm_mhz = self._sm_lock_in_force()
            return self.applied_sm_mhz
        self._set_sm(freq_mhz)
        return self.applied_sm_mhz

    def _sm_lock_in_force(self) -> int | None:
        """With no cap of ours: a lock someone else set, where readable; else None (default)."""
        try:
            state = self.device.clock_state()
        except DeviceError:
            return None
        return state.sm_locked_mhz if state.locks_known else None

    def restore(self) -> list[str]:
        """Restore the original state now (idempotent); problems, or [] when verified."""
        with self._lock:
            if not self._journaled:
                return []
            assert self.original is not None
            problems = _restore_state(self.device, self.original, self._changed)
            if problems:
                log.error(
                    "GPU %s: restoring the original clocks failed: %s; journal kept at %s",
                    self.device.uuid(),
                    "; ".join(problems),
                    self.journal_path,
                )
                return problems
            self._changed = dict.fromkeys(self._changed, False)
            self.journal_path.unlink(missing_ok=True)
            self._journaled = False
            log.info(
                "GPU %s restored to its original state (%s)",
                self.device.uuid(),
                self.original.describe(),
            )
            return []

    def record(self) -> dict[str, Any]:
        """What the run records about the cap (run.json / per-request columns)."""
        return {
            "control": self.control,
            "freq_requested_mhz": self.requested_sm_mhz,
            "freq_applied_mhz": self.applied_sm_mhz,
            "mem_freq_requested_mhz": self.requested_mem_mhz,
            "mem_freq_applied_mhz": self.applied_mem_mhz,
            "power_limit_requested_w": self.requested_power_limit_w,
            "power_limit_applied_w": self.applied_power_limit_w,
            "original_state": self.original.to_dict() if self.original else None,
            "recovered": self.recovered_message,
            "warnings": list(self.warnings),
        }

    # -------------------------------------------------------------- observe
    def _enter_observe(self) -> None:
        try:
            journal = read_journal(self.device, self.journal_dir)
        except DeviceError as err:
            log.warning("%s", err)
            journal = None
        if journal is not None:
            # Observe never sets anything, not even a restore: say what to do instead.
            msg = (
                f"GPU {self.device.uuid()} has a pending clock journal ({self.journal_path}): its clocks may "
                "still be locked by a killed run; run `llm-energy gpu restore` to put them back."
            )
            self._warn(msg, RuntimeWarning)
        self._check_other_processes("observe")
        self.applied_sm_mhz = self.device.sm_clock_mhz()
        self.applied_mem_mhz = self.device.mem_clock_mhz()
        self.applied_power_limit_w = self.device.power_limit_w()
        if self.requested_sm_mhz is not None or self.requested_mem_mhz is not None:
            log.info(
                "control=observe: requested SM %s / memory %s MHz recorded, not applied; clocks in force: SM %s, memory %s MHz",
                self.requested_sm_mhz,
                self.requested_mem_mhz,
                self.applied_sm_mhz,
                self.applied_mem_mhz,
            )

    def _warn(self, msg: str, category: type[Warning]) -> None:
        log.warning(msg)
        warnings.warn(msg, category, stacklevel=4)
        self.warnings.append(msg)

    # -------------------------------------------------------------- lock
    def _preflight_plan(self) -> None:
        self._preflight(f"Cannot lock the SM clock to {self.planned_sm_freqs_mhz[0]} MHz")
        mem = None
        if self.requested_mem_mhz is not None:
            mem = self._snap(
                "memory", self.requested_mem_mhz, self.device.supported_mem_clocks_mhz()
            )
        supported = self.device.supported_sm_clocks_mhz(mem)
        for f in self.planned_sm_freqs_mhz:
            self._snap("SM", f, supported)

    def _preflight(self, asked: str) -> None:
        """Checks before any change (once per session): control, privilege, other processes."""
        if self._preflighted:
            return
        dev = self.device
        if not dev.can_control_clocks():
            raise dev._no_control(asked)
        if dev.requires_privilege and not has_clock_privilege():
            raise PermissionDeniedError(
                f"{asked} on GPU {dev.index} ({dev.name()})",
                "this process is neither root nor has CAP_SYS_ADMIN, which NVML requires to lock clocks",
                "Run the stage with sudo or grant CAP_SYS_ADMIN, or set gpu.control=observe.",
            )
        self._check_other_processes("change the clocks of")
        self._preflighted = True

    def _check_other_processes(self, action: str) -> None:
        try:
            procs = self.device.other_processes()
        except DeviceError as err:
            log.warning("cannot list processes on GPU %s: %s", self.device.index, err)
            return
        if not procs:
            return
        desc = ", ".join(f"{p.pid}" + (f" ({p.name})" if p.name else "") for p in procs[:5])
        if self.on_other_processes == "refuse":
            raise OtherProcessesError(
                f"Refusing to {action} GPU {self.device.index} ({self.device.name()})",
                f"{len(procs)} other process(es) use it: {desc}",
                "Stop them, or set gpu.on_other_processes=warn to measure anyway.",
            )
        msg = f"{len(procs)} other process(es) use GPU {self.device.index} ({desc}); energy readings include their load"
        self._warn(msg, OtherProcessesWarning)

    def _snap(self, what: str, freq_mhz: int, supported: list[int]) -> int:
        if not supported:
            raise NotSupportedError(
                f"Cannot lock the {what} clock of GPU {self.device.index} to {freq_mhz} MHz",
                "the device reports no supported clocks",
                "Use gpu.control=observe or gpu.freq=null on this GPU.",
            )
        key = (what, freq_mhz, tuple(supported))
        if key not in self._snapped:  # warn once per requested value
            applied, snapped = snap_to_supported(freq_mhz, supported)
            if snapped:
                msg = f"{what} clock {freq_mhz} MHz is not supported by {self.device.name()}; using the nearest supported {applied} MHz"
                self._warn(msg, ClockSnapWarning)
            self._snapped[key] = applied
        return self._snapped[key]

    def _begin_changes(self, asked: str) -> None:
        """Preflight, snapshot and journal, once, before the first change of the session."""
        if self._journaled:
            return
        self._preflight(asked)
        self.original = self.device.clock_state()
        details = getattr(self.device, "clock_details", None)
        if callable(details):
            with contextlib.suppress(DeviceError, OSError):
                self._details_at_start = details()
        self._write_journal()
        self._journaled = True
        self._install_handlers()

    def _write_journal(self) -> None:
        assert self.original is not None
        dev = self.device
        data = {
            "version": JOURNAL_VERSION,
            "uuid": dev.uuid(),
            "name": dev.name(),
            "backend": dev.backend,
            "index": dev.index,
            "pid": os.getpid(),
            "boot_id": _boot_id(),
            "host": socket.gethostname(),
            "updated_at": _now_iso(),
            "original": self.original.to_dict(),
            "changed": dict(self._changed),
            "requested": {
                "sm_mhz": self.requested_sm_mhz,
                "mem_mhz": self.requested_mem_mhz,
                "power_limit_w": self.requested_power_limit_w,
            },
            "applied": {
                "sm_mhz": self.applied_sm_mhz,
                "mem_mhz": self.applied_mem_mhz,
                "power_limit_w": self.applied_power_limit_w,
            },
            "clock_details_at_start": self._details_at_start,  # NVML diagnostics, not used to restore
        }
        atomic_write_json(self.journal_path, data)

    def _apply(self, key: str, setter: Any, value: Any) -> None:
        # Write-ahead: the journal says "changed" before the setter runs, so a SIGKILL between
        # the two still restores (restoring an unchanged setting is harmless).
        was = self._changed[key]
        self._changed[key] = True
        self._write_journal()
        try:
            setter(value)
        except BaseException:
            self._changed[key] = was
            self._write_journal()
            raise

    def _set_sm(self, freq_mhz: int) -> None:
        asked = f"Cannot lock the SM clock to {freq_mhz} MHz"
        self._begin_changes(asked)
        applied = self._snap(
            "SM", freq_mhz, self.device.supported_sm_clocks_mhz(self.applied_mem_mhz)
        )
        self._apply("sm", self.device.lock_sm_clocks, applied)
        self.applied_sm_mhz = applied
        self._write_journal()
        self._verify_lock("sm", applied)

    def _set_mem(self, freq_mhz: int) -> None:
        self._begin_changes(f"Cannot lock the memory clock to {freq_mhz} MHz")
        applied = self._snap("memory", freq_mhz, self.device.supported_mem_clocks_mhz())
        self._apply("mem", self.device.lock_mem_clocks, applied)
        self.applied_mem_mhz = applied
        self._write_journal()
        self._verify_lock("mem", applied)

    def _set_power_limit(self, power_w: float) -> None:
        self._begin_changes(f"Cannot set the power limit to {power_w:g} W")
        self._apply("power_limit", self.device.set_power_limit_w, float(power_w))
        self.applied_power_limit_w = self.device.power_limit_w()
        self._write_journal()

    def _verify_lock(self, key: str, applied: int) -> None:
        state = self.device.clock_state()
        if state.locks_known:
            got = state.sm_locked_mhz if key == "sm" else state.mem_locked_mhz
            if got != applied:
                raise DeviceError(
                    f"Cannot lock the {key} clock to {applied} MHz",
                    f"read-back shows {got}",
                    "Check the driver; the original state is restored.",
                )
            return
        if key != "sm":
            return
        # NVML cannot read locks: a min=max lock holds the clock even at idle, so the current
        # clock should not exceed it. Lower is legitimate (power/thermal limits): warn only.
        observed = self.device.sm_clock_mhz()
        tol = max(self.device.sm_step_mhz(), 1)
        if observed is not None and observed > applied + tol:
            log.warning(
                "GPU %s: SM clock reads %s MHz right after locking to %s MHz",
                self.device.index,
                observed,
                applied,
            )

    # -------------------------------------------------------------- teardown
    def _close(self, raise_errors: bool) -> None:
        try:
            problems = self.restore()
        finally:
            self._uninstall_handlers()
            if _ACTIVE.get(self.device.uuid()) is self:
                del _ACTIVE[self.device.uuid()]
            self._entered = False
        if problems and raise_errors:
            raise RestoreError(
                f"Cannot restore GPU {self.device.uuid()} to its original clocks",
                "; ".join(problems),
                f"Run `llm-energy gpu restore` (journal kept at {self.journal_path}) or nvidia-smi -rgc / -rmc.",
            )

    def _install_handlers(self) -> None:
        if not self._atexit_registered:
            atexit.register(self._atexit)
            self._atexit_registered = True
        if (
            not self.install_signal_handlers
            or threading.current_thread() is not threading.main_thread()
        ):
            return  # signal.signal only works in the main thread
        for sig in _SIGNALS:
            if sig not in self._prev_handlers:
                self._prev_handlers[sig] = signal.signal(sig, self._on_signal)

    def _uninstall_handlers(self) -> None:
        if self._atexit_registered:
            atexit.unregister(self._atexit)
            self._atexit_registered = False
        for sig, prev in list(self._prev_handlers.items()):
            with contextlib.suppress(ValueError, TypeError):
                if signal.getsignal(sig) == self._on_signal:
                    signal.signal(sig, prev if prev is not None else signal.SIG_DFL)
            del self._prev_handlers[sig]

    def _atexit(self) -> None:
        problems = self.restore()
        if problems:
            log.error("at exit: GPU clocks not restored: %s", "; ".join(problems))

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.interrupted_by = signum
        log.warning(
            "signal %s: restoring the original GPU clocks before exiting",
            signal.Signals(signum).name,
        )
        try:
            self.restore()
        finally:
            prev = self._prev_handlers.get(signum, signal.SIG_DFL)
            self._uninstall_handlers()
        if callable(prev):
            prev(signum, frame)  # e.g. Python's default SIGINT handler raises KeyboardInterrupt
        elif prev == signal.SIG_IGN:
            return
        else:
            # Default action: re-deliver so the exit status says "killed by signal N".
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)


__all__ = [
    "CAP_SYS_ADMIN_BIT",
    "ClockSession",
    "ClockSnapWarning",
    "Control",
    "OtherProcessPolicy",
    "OtherProcessesWarning",
    "gpu_status",
    "has_clock_privilege",
    "journal_path",
    "read_journal",
    "recover_pending",
    "restore_from_journal",
]
