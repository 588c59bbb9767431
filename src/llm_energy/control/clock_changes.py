"""The lock half of a `ClockSession` (control/session.py): write-ahead journaled clock changes.

Every change is recorded in the journal as "changed" before its setter runs, so a run killed at
any point is restored by the next session; `restore` puts back the original state and deletes
the journal once the restore is verified. The session supplies the preflight checks.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import warnings
from pathlib import Path
from typing import Any

from llm_energy.control import journal as jr
from llm_energy.control import preflight as pf
from llm_energy.control.guard import RestoreGuard
from llm_energy.control.journal import journal_path
from llm_energy.control.preflight import ClockSnapWarning
from llm_energy.device.base import ClockState, Device
from llm_energy.device.errors import DeviceError, RestoreError

log = logging.getLogger("llm_energy.control.session")


class JournaledClocks:
    """Journaled SM / memory / power-limit changes and their restore; state is set up by
    `ClockSession.__init__`."""

    device: Device
    journal_dir: Path
    requested_sm_mhz: int | None
    requested_mem_mhz: int | None
    requested_power_limit_w: float | None
    planned_sm_freqs_mhz: list[int]
    applied_sm_mhz: int | None
    applied_mem_mhz: int | None
    applied_power_limit_w: float | None
    original: ClockState | None
    warnings: list[str]
    guard: RestoreGuard
    install_signal_handlers: bool
    _changed: dict[str, bool]
    _snapped: dict[tuple[str, int | float, tuple[int, ...]], int]
    _journaled: bool
    _details_at_start: dict[str, Any] | None
    _lock: threading.RLock

    @property
    def journal_path(self) -> Path:
        return journal_path(self.journal_dir, self.device.uuid())

    def restore(self) -> list[str]:
        """Restore the original state now (idempotent); problems, or [] when verified."""
        with self._lock, self.guard.critical():
            if not self._journaled:
                return []
            assert self.original is not None
            problems = jr.restore_state(self.device, self.original, self._changed)
            if not problems:
                self._changed = dict.fromkeys(self._changed, False)
                try:
                    jr.delete_journal(self.journal_path)
                    self._journaled = False
                except DeviceError as err:
                    problems = [str(err)]
            if problems:
                log.error(
                    "GPU %s: restoring the original clocks failed: %s; journal kept at %s",
                    self.device.uuid(),
                    "; ".join(problems),
                    self.journal_path,
                )
                return problems
            log.info(
                "%sGPU %s restored to its original state (%s)",
                "simulated " if self.device.backend == "simulated" else "",
                self.device.uuid(),
                self.original.describe(),
            )
            return []

    def _restore_original_sm(self) -> None:
        """Put back the SM state found before the first change (`set_sm_cap(None)`)."""
        if not self._changed["sm"] or self.original is None:
            return
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

    def _preflight_plan(self) -> None:
        """Check and snap every planned SM cap (sweeps) before the first change."""
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
        raise NotImplementedError  # the session's checks before any change

    def _warn(self, msg: str, category: type[Warning]) -> None:
        log.warning(msg)
        warnings.warn(msg, category, stacklevel=4)
        self.warnings.append(msg)

    def _snap(self, what: str, freq_mhz: int, supported: list[int]) -> int:
        key = (what, freq_mhz, tuple(supported))
        if key not in self._snapped:  # warn once per requested value
            applied, msg = pf.snap_clock(self.device, what, freq_mhz, supported)
            if msg:
                self._warn(msg, ClockSnapWarning)
            self._snapped[key] = applied
        return self._snapped[key]

    def _begin_changes(self, asked: str) -> None:
        """Preflight, snapshot, journal and handlers, once, before the first change."""
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
        self.guard.install(signals=self.install_signal_handlers)

    def _write_journal(self) -> None:
        assert self.original is not None
        record = jr.journal_record(
            self.device,
            self.original,
            self._changed,
            requested={
                "sm_mhz": self.requested_sm_mhz,
                "mem_mhz": self.requested_mem_mhz,
                "power_limit_w": self.requested_power_limit_w,
            },
            applied={
                "sm_mhz": self.applied_sm_mhz,
                "mem_mhz": self.applied_mem_mhz,
                "power_limit_w": self.applied_power_limit_w,
            },
            details=self._details_at_start,
        )
        jr.write_journal(self.journal_path, record)

    def _apply(self, key: str, setter: Any, value: Any) -> None:
        # Write-ahead: the journal says "changed" before the setter runs, so a SIGKILL between
        # the two still restores (restoring an unchanged setting is harmless). A signal in
        # between is handled once both are done, so its restore sees the journal as it is.
        with self._lock, self.guard.critical():
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
        self._lock_clock("sm", freq_mhz)

    def _set_mem(self, freq_mhz: int) -> None:
        self._lock_clock("mem", freq_mhz)

    def _lock_clock(self, key: str, freq_mhz: int) -> None:
        """Lock the SM (`sm`) or memory (`mem`) clock at the supported clock nearest freq_mhz."""
        sm, dev = key == "sm", self.device
        what = "SM" if sm else "memory"
        self._begin_changes(f"Cannot lock the {what} clock to {freq_mhz} MHz")
        # Listed after the preflight: a device without clock control fails there, in one line.
        supported = (
            dev.supported_sm_clocks_mhz(self.applied_mem_mhz)
            if sm
            else dev.supported_mem_clocks_mhz()
        )
        applied = self._snap(what, freq_mhz, supported)
        self._apply(key, dev.lock_sm_clocks if sm else dev.lock_mem_clocks, applied)
        if sm:
            self.applied_sm_mhz = applied
        else:
            self.applied_mem_mhz = applied
        self._write_journal()
        pf.check_lock_readback(dev, key, applied)

    def _set_power_limit(self, power_w: float) -> None:
        self._begin_changes(f"Cannot set the power limit to {power_w:g} W")
        self._apply("power_limit", self.device.set_power_limit_w, float(power_w))
        self.applied_power_limit_w = self.device.power_limit_w()
        self._write_journal()
