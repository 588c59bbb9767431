"""Frequency caps with crash safety.

`ClockSession` locks the SM clock (min = max) and optionally the memory clock, and always puts
back the ORIGINAL state: on normal exit, on exceptions, on SIGINT/SIGTERM/SIGHUP/SIGQUIT (then
the run ends, see `hw/guard.py`) and at interpreter exit. It holds the GPU's lock
(`hw/gpulock.py`) for its whole life, so a second session on the same GPU, in any process, is
refused with one line naming the holder and never touches the holder's clocks. Before any change
it writes a journal (`hw/journal.py`) holding the original state and which settings it is about
to change (write-ahead), so a run killed with SIGKILL is repaired by the next session or by
`recover_pending` / `llm-energy gpu restore` (`hw/recovery.py`).

`control="observe"` never calls a setter: it only records the clocks in force.
`control="slurm"` is observe with a cap that SLURM applied (`--gpu-freq`, hw/slurm.py): the
requested cap is recorded, checked against SLURM's environment, and a window's clock label is
that cap only when the clocks seen inside the window held it (`freq_label_mhz`).

A `DeviceGroup` (hw/group.py) is one device here: its lock is every member's GPU lock, its
journal records every member's original state, and a restore puts back each member.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from llm_energy.hw import journal as jr
from llm_energy.hw import preflight as pf
from llm_energy.hw.base import ClockState, Device
from llm_energy.hw.clock_changes import JournaledClocks
from llm_energy.hw.errors import DeviceError, RestoreError, SessionConflictError
from llm_energy.hw.gpulock import GpuLease
from llm_energy.hw.gpupick import GroupLease, acquire_gpus
from llm_energy.hw.guard import RestoreGuard, can_install_handlers
from llm_energy.hw.journal import journal_path, read_journal
from llm_energy.hw.preflight import (
    CAP_SYS_ADMIN_BIT,
    ClockSnapWarning,
    OtherProcessesWarning,
    has_clock_privilege,
)
from llm_energy.hw.recovery import (
    default_lock_dir,
    gpu_status,
    mark_session,
    pending_journal_warning,
    recover_pending,
    refuse_if_in_a_pending_group,
    restore_from_journal,
    session_active,
)
from llm_energy.hw.slurm import MECHANISMS, slurm_freq_warning

log = logging.getLogger(__name__)

Control = Literal["lock", "observe", "slurm"]
OBSERVING = ("observe", "slurm")  # controls that never call a setter
OtherProcessPolicy = Literal["warn", "refuse"]


class ClockSession(JournaledClocks):
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
        if control not in MECHANISMS:
            raise ValueError(f"control must be one of {'|'.join(MECHANISMS)}, got {control!r}")
        if on_other_processes not in ("warn", "refuse"):
            raise ValueError(
                f"on_other_processes must be 'warn' or 'refuse', got {on_other_processes!r}"
            )
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
        uuid = self.device.uuid()
        if session_active(uuid):
            raise SessionConflictError(
                f"Cannot open a second clock session on GPU {uuid}",
                "this process already holds one",
                "Use set_sm_cap() on the open session instead.",
            )
        # The lock decides between concurrent sessions; re-entrant if this process (the
        # stage) already holds it. The loser leaves before touching clocks or journals.
        self._lease = acquire_gpus(
            self.lock_dir,
            [m.uuid() for m in self.device.member_devices()],
            asked=f"Cannot change the clocks of GPU {self.device.index}",
            wait_for_gpu_s=0.0,  # a run waits (gpu.wait_for_gpu_s) when it opens its device
        )
        try:
            # A journal left by a killed run is repaired before anything else.
            refuse_if_in_a_pending_group(self.device, self.journal_dir)
            self.recovered_message = recover_pending(
                self.device, self.journal_dir, lock_dir=self.lock_dir
            )
        except BaseException:
            self._lease.release()
            raise
        mark_session(uuid, True)
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
        if self._changed["sm"] and self.original is not None:
            with self._lock, self.guard.critical():
                problems = jr.restore_state(self.device, self.original, {"sm": True})
                if problems:
                    raise RestoreError(
                        f"Cannot return GPU {self.device.uuid()} to its original SM clock state",
                        "; ".join(problems),
                        "Run `llm-energy gpu restore`.",
                    )
                self._changed["sm"] = False
                self._write_journal()
        self.applied_sm_mhz = pf.sm_lock_in_force(self.device)
        return self.applied_sm_mhz

    @property
    def clock_mechanism(self) -> str:
        """How the cap reaches the GPU, as run.json records it."""
        if self.control == "lock" and self.device.backend == "simulated":
            return "locked clocks (simulated GPU)"
        return MECHANISMS[self.control]

    def freq_label_mhz(self, cap_held: bool | None) -> int | None:
        """The clock a window's records are labelled with (`freq_applied_mhz`). lock: the
        applied cap; observe: None (nothing was applied); slurm: the cap SLURM was asked for
        when the clocks seen inside the window held it, else None with a warning (once)."""
        if self.control == "lock":
            return self.applied_sm_mhz
        if self.control == "observe" or self.requested_sm_mhz is None:
            return None
        if cap_held:
            return self.requested_sm_mhz
        if not self._slurm_cap_missed:
            self._slurm_cap_missed = True
            self._warn(
                f"gpu.control=slurm: the clocks seen inside a window did not hold the requested "
                f"{self.requested_sm_mhz} MHz (was the job submitted with --gpu-freq="
                f"{self.requested_sm_mhz}?); such windows get freq_applied_mhz = null",
                RuntimeWarning,
            )
        return None

    def record(self) -> dict[str, Any]:
        """What the run records about the cap (run.json / per-request columns)."""
        return {
            "control": self.control,
            "clock_mechanism": self.clock_mechanism,
            "freq_requested_mhz": self.requested_sm_mhz,
            # slurm: decided per window from the in-window clocks (freq_label_mhz)
            "freq_applied_mhz": None if self.control == "slurm" else self.applied_sm_mhz,
            "sm_clock_observed_mhz": self.applied_sm_mhz if self.control in OBSERVING else None,
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
        msg = pending_journal_warning(self.device, self.journal_dir)
        if msg:  # observe never sets anything, not even a restore: say what to do instead
            self._warn(msg, RuntimeWarning)
        self._check_other_processes("observe")
        if self.control == "slurm":
            msg = slurm_freq_warning(self.requested_sm_mhz)
            if msg:
                self._warn(msg, RuntimeWarning)
        self.applied_sm_mhz = self.device.sm_clock_mhz()
        self.applied_mem_mhz = self.device.mem_clock_mhz()
        self.applied_power_limit_w = self.device.power_limit_w()
        if self.requested_sm_mhz is not None or self.requested_mem_mhz is not None:
            log.info(
                "control=%s: requested SM %s / memory %s MHz recorded, not applied by this run; clocks in force: SM %s, memory %s MHz",
                self.control,
                self.requested_sm_mhz,
                self.requested_mem_mhz,
                self.applied_sm_mhz,
                self.applied_mem_mhz,
            )

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
        """Checks before any change (once per session): control, privilege, signal handlers,
        other processes."""
        if self._preflighted:
            return
        dev = self.device
        if not dev.can_control_clocks():
            raise pf.no_control_error(dev, asked)
        if dev.requires_privilege and not has_clock_privilege():
            raise pf.privilege_error(dev, asked)
        if self.install_signal_handlers and not can_install_handlers():
            raise pf.main_thread_error(dev, asked)
        self._check_other_processes("change the clocks of")
        self._preflighted = True

    def _check_other_processes(self, action: str) -> None:
        msg = pf.other_processes_warning(self.device, self.on_other_processes, action)
        if msg:
            self._warn(msg, OtherProcessesWarning)

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
