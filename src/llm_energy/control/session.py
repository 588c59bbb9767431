"""Frequency caps with crash safety.

`ClockSession` locks the SM clock (min = max) and optionally the memory clock, and always puts
back the ORIGINAL state: on normal exit, on exceptions, on SIGINT/SIGTERM/SIGHUP/SIGQUIT (then
the run ends, see `control/guard.py`) and at interpreter exit. It holds the GPU's lock
(`control/gpulock.py`) for its whole life, so a second session on the same GPU, in any process, is
refused with one line naming the holder and never touches the holder's clocks. Before any change
it writes a journal (`control/journal.py`) holding the original state and which settings it is about
to change (write-ahead), so a run killed with SIGKILL is repaired by the next session or by
`recover_pending` / `llm-energy gpu restore` (`control/recovery.py`).

`control="observe"` / `"slurm"` never call a setter: they only record the clocks in force
(control/cap_record.py, which also holds what a session records about its cap). The journaled
changes and their restore are control/clock_changes.py; the checks before them control/preflight.py.

A `DeviceGroup` (device/group.py) is one device here: its lock is every member's GPU lock, its
journal records every member's original state, and a restore puts back each member.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import llm_energy.control.preflight as pf
from llm_energy.control.cap_record import OBSERVING, CapRecord
from llm_energy.control.clock_changes import JournaledClocks
from llm_energy.control.gpulock import GpuLease
from llm_energy.control.gpupick import GroupLease
from llm_energy.control.guard import RestoreGuard
from llm_energy.control.journal import journal_path, read_journal
from llm_energy.control.preflight import (
    CAP_SYS_ADMIN_BIT,
    ClockSnapWarning,
    OtherProcessesWarning,
    has_clock_privilege,
)
from llm_energy.control.recovery import (
    default_lock_dir,
    gpu_status,
    lease_and_recover,
    mark_session,
    recover_pending,
    restore_from_journal,
)
from llm_energy.device.base import ClockState, Device
from llm_energy.device.errors import DeviceError, RestoreError

Control = Literal["lock", "observe", "slurm"]
OtherProcessPolicy = Literal["warn", "refuse"]


class ClockSession(JournaledClocks, CapRecord):
    """Context manager holding a frequency cap; see the module docstring.

    Attributes after `__enter__`: requested_sm_mhz / applied_sm_mhz, requested_mem_mhz /
    applied_mem_mhz (None = driver default), original (ClockState snapshot, lock mode),
    recovered_message (what a pending journal restore did, if anything).
    """

    def __init__(
        self,
        device: Device,
        control: Control | str,
        sm_freq_mhz: int | None = None,
        mem_freq_mhz: int | None = None,
        *,
        journal_dir: str | Path,
        lock_dir: str | Path | None = None,
        on_other_processes: OtherProcessPolicy | str,
        power_limit_w: float | None = None,
        planned_sm_freqs_mhz: Sequence[int | None] | None = None,
        install_signal_handlers: bool = True,
    ) -> None:
        pf.check_session_args(control, on_other_processes)
        self.device = device
        self.control = control
        self.journal_dir = Path(journal_dir)
        self.lock_dir = Path(lock_dir) if lock_dir is not None else default_lock_dir(journal_dir)
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
        # Every SM cap the run will ask for (sweeps): checked and snapped up front, so an
        # impossible sweep fails before the model is loaded rather than halfway through.
        self.planned_sm_freqs_mhz = [f for f in (planned_sm_freqs_mhz or []) if f is not None]
        self.warnings: list[str] = []  # every warning issued, for run.json
        self.guard = RestoreGuard(self.restore, f"GPU {device.uuid()}")
        self._changed = {"sm": False, "mem": False, "power_limit": False}
        self._preflighted = False
        self._snapped: dict[tuple[str, int | float, tuple[int, ...]], int] = {}
        self._journaled = False
        self._entered = False
        self._lease: GpuLease | GroupLease | None = None
        self._slurm_cap_missed = False
        self._marked = False  # this session is the one registered for its GPU
        self._details_at_start: dict[str, Any] | None = None
        self._lock = threading.RLock()

    # -------------------------------------------------------------- public
    @property
    def interrupted_by(self) -> int | None:
        """The signal that restored the clocks and is ending the run, if any."""
        return self.guard.interrupted_by

    def __enter__(self) -> ClockSession:
        if self.control in OBSERVING:
            self._enter_observe()
            self._entered = True
            return self
        # The lock decides between concurrent sessions; the loser leaves before touching
        # clocks or journals. A journal left by a killed run is repaired before anything else.
        self._lease, self.recovered_message = lease_and_recover(
            self.device, self.journal_dir, self.lock_dir
        )
        mark_session(self.device.uuid(), True)
        self._marked = True
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
                self.applied_sm_mhz = pf.sm_lock_in_force(self.device)
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
        if self.control == "slurm" and freq_mhz != self.requested_sm_mhz:
            raise DeviceError(
                f"Cannot change the SM cap to {freq_mhz} MHz under gpu.control=slurm",
                f"SLURM applied one cap ({self.requested_sm_mhz}) for the whole job step",
                "Run one experiment per cap (`llm-energy grid` expands a sweep into them).",
            )
        self.requested_sm_mhz = freq_mhz
        if self.control in OBSERVING:
            self.applied_sm_mhz = self.device.sm_clock_mhz()
            return self.applied_sm_mhz
        if freq_mhz is not None:
            self._set_sm(freq_mhz)
            return self.applied_sm_mhz
        self._restore_original_sm()
        self.applied_sm_mhz = pf.sm_lock_in_force(self.device)
        return self.applied_sm_mhz

    # -------------------------------------------------------------- lock
    def _preflight(self, asked: str) -> None:
        """Checks before any change (once per session): control, privilege, signal handlers,
        other processes."""
        if self._preflighted:
            return
        # has_clock_privilege is looked up here at call time: tests patch it on this module.
        pf.check_can_change(
            self.device,
            asked,
            signal_handlers=self.install_signal_handlers,
            privileged=has_clock_privilege,
        )
        pf.warn_other_processes(
            self.device, self.on_other_processes, "change the clocks of", self._warn
        )
        self._preflighted = True

    # -------------------------------------------------------------- teardown
    def _close(self, raise_errors: bool) -> None:
        problems: list[str] = ["restore did not complete"]
        try:
            problems = self.restore()
        finally:
            self.guard.uninstall()
            if self._marked:
                mark_session(self.device.uuid(), False)
                self._marked = False
            self._entered = False
            # A GPU whose restore failed stays locked by this process until it exits, so
            # another run neither caps it meanwhile nor mistakes the journal for an orphan.
            if self._lease is not None and not problems:
                self._lease.release()
                self._lease = None
        if problems and raise_errors:
            raise RestoreError(
                f"Cannot restore GPU {self.device.uuid()} to its original clocks",
                "; ".join(problems),
                f"Run `llm-energy gpu restore` (journal kept at {self.journal_path}) or nvidia-smi -rgc / -rmc.",
            )


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
