"""Frequency caps with crash safety: `ClockSession` locks the clocks under the GPU's lock, journals
the original state first and always puts it back (docs/device.md); a `DeviceGroup` is one device."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import llm_energy.control.preflight as pf
from llm_energy.control.cap_record import OBSERVING, Caps
from llm_energy.control.clock_changes import JournaledClocks
from llm_energy.control.gpupick import Lease
from llm_energy.control.preflight import has_clock_privilege
from llm_energy.control.recovery import default_lock_dir, lease_and_recover, mark_session
from llm_energy.control.slurm import cap_missed_warning, clock_mechanism
from llm_energy.device.base import ClockState, Device
from llm_energy.device.errors import DeviceError, RestoreError

log = logging.getLogger(__name__)

Control = Literal["lock", "observe", "slurm"]
OtherProcessPolicy = Literal["warn", "refuse"]


def _caps_field(name: str) -> property:
    return property(lambda self: getattr(self.caps, name))


class ClockSession:
    """Context manager holding a frequency cap (None = driver default); see the module doc."""

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
        self.device, self.control, self.journal_dir = device, control, Path(journal_dir)
        self.lock_dir = Path(lock_dir) if lock_dir is not None else default_lock_dir(journal_dir)
        self.on_other_processes = on_other_processes
        self.install_signal_handlers = install_signal_handlers
        self.caps = Caps(sm_freq_mhz, mem_freq_mhz, power_limit_w)
        self.recovered_message: str | None = None
        # Every SM cap the run will ask for (sweeps): checked and snapped up front, so an
        # impossible sweep fails before the model is loaded rather than halfway through.
        self.planned_sm_freqs_mhz = [f for f in (planned_sm_freqs_mhz or []) if f is not None]
        self.warnings: list[str] = []  # every warning issued, for run.json
        self.clocks = JournaledClocks(
            device,
            self.journal_dir,
            self.caps,
            preflight=self._preflight,
            warn=self._warn,
            install_signal_handlers=install_signal_handlers,
        )
        self._preflighted = False
        self._entered = False
        self._lease: Lease | None = None
        self._slurm_cap_missed = False
        self._marked = False  # this session is the one registered for its GPU

    requested_sm_mhz = _caps_field("requested_sm_mhz")
    requested_mem_mhz = _caps_field("requested_mem_mhz")
    applied_sm_mhz = _caps_field("applied_sm_mhz")
    applied_mem_mhz = _caps_field("applied_mem_mhz")
    applied_power_limit_w = _caps_field("applied_power_limit_w")

    @property
    def original(self) -> ClockState | None:
        """The state before this session's first change (lock mode)."""
        return self.clocks.original

    @property
    def guard(self) -> Any:
        return self.clocks.guard

    @property
    def journal_path(self) -> Path:
        return self.clocks.journal_path

    @property
    def clock_mechanism(self) -> str:
        """How the cap reaches the GPU, as run.json records it."""
        return clock_mechanism(self.control, self.device.backend)

    def restore(self) -> list[str]:
        """Restore the original state now (idempotent); problems, or [] when verified."""
        return self.clocks.restore()

    def record(self) -> dict[str, Any]:
        """What the run records about the cap (run.json / per-request columns)."""
        caps, control = self.caps, self.control
        return {
            "control": control,
            "clock_mechanism": self.clock_mechanism,
            "freq_requested_mhz": caps.requested_sm_mhz,
            # slurm: decided per window from the in-window clocks (freq_label_mhz)
            "freq_applied_mhz": None if control == "slurm" else caps.applied_sm_mhz,
            "sm_clock_observed_mhz": caps.applied_sm_mhz if control in OBSERVING else None,
            "mem_freq_requested_mhz": caps.requested_mem_mhz,
            "mem_freq_applied_mhz": caps.applied_mem_mhz,
            "power_limit_requested_w": caps.requested_power_limit_w,
            "power_limit_applied_w": caps.applied_power_limit_w,
            "original_state": self.original.to_dict() if self.original else None,
            "recovered": self.recovered_message,
            "warnings": list(self.warnings),
        }

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
            self._warn(cap_missed_warning(self.requested_sm_mhz), RuntimeWarning)
        return None

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
            caps = self.caps
            if self.planned_sm_freqs_mhz:
                self.clocks.preflight_plan(self.planned_sm_freqs_mhz)
            if caps.requested_mem_mhz is not None:
                self.clocks.lock_clock("mem", caps.requested_mem_mhz)
            if caps.requested_sm_mhz is not None:
                self.clocks.lock_clock("sm", caps.requested_sm_mhz)
            if caps.requested_power_limit_w is not None:
                self.clocks.set_power_limit(caps.requested_power_limit_w)
            if caps.requested_sm_mhz is None:
                caps.applied_sm_mhz = pf.sm_lock_in_force(self.device)
        except BaseException:
            self._close(raise_errors=False)
            raise
        return self

    def _enter_observe(self) -> None:
        """observe / slurm: checks, then record the clocks in force (no setter is called)."""
        dev, control, caps = self.device, self.control, self.caps
        policy = self.on_other_processes
        pf.observe_preflight(
            dev, control, self.journal_dir, policy, caps.requested_sm_mhz, self._warn
        )
        caps.applied_sm_mhz = dev.sm_clock_mhz()
        caps.applied_mem_mhz = dev.mem_clock_mhz()
        caps.applied_power_limit_w = dev.power_limit_w()
        if caps.requested_sm_mhz is not None or caps.requested_mem_mhz is not None:
            msg = "control=%s: requested SM %s / memory %s MHz recorded, not applied by this run; clocks in force: SM %s, memory %s MHz"
            requested = (caps.requested_sm_mhz, caps.requested_mem_mhz)
            log.info(msg, control, *requested, caps.applied_sm_mhz, caps.applied_mem_mhz)

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._close(raise_errors=exc_type is None)

    def _check_change(self, asked: str) -> None:
        if not self._entered:
            raise RuntimeError(f"{asked}: needs an entered ClockSession (a with block)")
        if self.interrupted_by is not None:
            raise DeviceError(
                asked,
                f"the session was restored on signal {self.interrupted_by}",
                "Stop the run; start a new session.",
            )

    def set_sm_cap(self, freq_mhz: int | None) -> int | None:
        """Change the SM cap inside the session (sweeps). None = back to the original SM state
        (driver default unless something else had locked it). Returns the applied clock: the
        snapped cap, or for None the lock in force where readable (None = driver default)."""
        self._check_change(f"Cannot set the SM cap to {freq_mhz} MHz")
        if self.control == "slurm" and freq_mhz != self.requested_sm_mhz:
            raise DeviceError(
                f"Cannot change the SM cap to {freq_mhz} MHz under gpu.control=slurm",
                f"SLURM applied one cap ({self.requested_sm_mhz}) for the whole job step",
                "Run one experiment per cap (`llm-energy grid` expands a sweep into them).",
            )
        self.caps.requested_sm_mhz = freq_mhz
        if self.control in OBSERVING:
            self.caps.applied_sm_mhz = self.device.sm_clock_mhz()
        elif freq_mhz is not None:
            self.clocks.lock_clock("sm", freq_mhz)
        else:
            self.clocks.restore_original("sm")
            self.caps.applied_sm_mhz = pf.sm_lock_in_force(self.device)
        return self.applied_sm_mhz

    def set_mem_cap(self, freq_mhz: int | None) -> None:
        """Lock the memory clock (sweeps; None = as found), journaled like `set_sm_cap`."""
        self._set_knob("mem", freq_mhz, f"Cannot lock the memory clock to {freq_mhz} MHz")
        self.caps.requested_mem_mhz = freq_mhz
        if freq_mhz is None:
            self.caps.applied_mem_mhz = None
        else:
            self.clocks.lock_clock("mem", freq_mhz)

    def set_power_limit_w(self, power_w: float | None) -> None:
        """Set the power limit (sweeps; None = as found), journaled like `set_sm_cap`."""
        self._set_knob("power_limit", power_w, f"Cannot set the power limit to {power_w} W")
        self.caps.requested_power_limit_w = power_w
        if power_w is None:
            self.caps.applied_power_limit_w = None
        else:
            self.clocks.set_power_limit(power_w)

    def _set_knob(self, key: str, value: float | None, asked: str) -> None:
        self._check_change(asked)
        if self.control in OBSERVING and value is not None:
            raise DeviceError(
                asked,
                f"gpu.control={self.control} never changes the GPU",
                "Set gpu.control=lock, or leave this knob null.",
            )
        if value is None:
            self.clocks.restore_original(key)

    def _preflight(self, asked: str) -> None:
        """Checks before the first change of this session."""
        if self._preflighted:
            return
        # has_clock_privilege is looked up here at call time: tests patch it on this module.
        dev, handlers = self.device, self.install_signal_handlers
        pf.check_can_change(dev, asked, signal_handlers=handlers, privileged=has_clock_privilege)
        pf.warn_other_processes(dev, self.on_other_processes, "change the clocks of", self._warn)
        self._preflighted = True

    def _warn(self, msg: str, category: type[Warning]) -> None:
        log.warning(msg)
        warnings.warn(msg, category, stacklevel=4)
        self.warnings.append(msg)

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
