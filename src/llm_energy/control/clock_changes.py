"""Write-ahead journaled clock changes of a `ClockSession`: each change is journaled before its
setter runs, so a run killed at any point is restored by the next session."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llm_energy.control import journal as jr
from llm_energy.control import preflight as pf
from llm_energy.control.cap_record import Caps
from llm_energy.control.guard import RestoreGuard
from llm_energy.control.journal import journal_path
from llm_energy.control.preflight import ClockSnapWarning
from llm_energy.device.base import ClockState, Device
from llm_energy.device.errors import DeviceError, RestoreError

log = logging.getLogger("llm_energy.control.session")


class JournaledClocks:
    """One device's journaled SM, memory and power-limit changes and restore (applied: `caps`)."""

    def __init__(
        self,
        device: Device,
        journal_dir: Path,
        caps: Caps,
        *,
        preflight: Callable[[str], None],
        warn: Callable[[str, type[Warning]], None],
        install_signal_handlers: bool,
    ) -> None:
        self.device, self.journal_dir, self.caps = device, journal_dir, caps
        self.preflight, self.warn = preflight, warn
        self.install_signal_handlers = install_signal_handlers
        self.guard = RestoreGuard(self.restore, f"GPU {device.uuid()}")
        self.original: ClockState | None = None  # snapshot before the first change
        self.changed = {"sm": False, "mem": False, "power_limit": False}
        self._snapped: dict[tuple[str, int | float, tuple[int, ...]], int] = {}
        self._journaled = False
        self._details_at_start: dict[str, Any] | None = None
        self._lock = threading.RLock()

    @property
    def journal_path(self) -> Path:
        return journal_path(self.journal_dir, self.device.uuid())

    def restore(self) -> list[str]:
        """Restore the original state now (idempotent); problems, or [] when verified."""
        with self._lock, self.guard.critical():
            if not self._journaled:
                return []
            assert self.original is not None
            problems = jr.restore_state(self.device, self.original, self.changed)
            if not problems:
                self.changed = dict.fromkeys(self.changed, False)
                try:
                    jr.delete_journal(self.journal_path)
                    self._journaled = False
                except DeviceError as err:
                    problems = [str(err)]
            uuid = self.device.uuid()
            if problems:
                msg = "GPU %s: restoring the original clocks failed: %s; journal kept at %s"
                log.error(msg, uuid, "; ".join(problems), self.journal_path)
                return problems
            sim = "simulated " if self.device.backend == "simulated" else ""
            log.info(
                "%sGPU %s restored to its original state (%s)", sim, uuid, self.original.describe()
            )
            return []

    def restore_original(self, key: str) -> None:
        """Put back one setting (`sm`, `mem`, `power_limit`) as found before the first change."""
        if not self.changed[key] or self.original is None:
            return
        with self._lock, self.guard.critical():
            problems = jr.restore_state(self.device, self.original, {key: True})
            if problems:
                raise RestoreError(
                    f"Cannot return GPU {self.device.uuid()} to its original {key} state",
                    "; ".join(problems),
                    "Run `llm-energy gpu restore`.",
                )
            self.changed[key] = False
            self._write_journal()

    def preflight_plan(self, planned_sm_mhz: list[int]) -> None:
        """Check and snap every planned SM cap (sweeps) before the first change."""
        self.preflight(f"Cannot lock the SM clock to {planned_sm_mhz[0]} MHz")
        mem = self.caps.requested_mem_mhz
        if mem is not None:
            mem = self._snap("memory", mem, self.device.supported_mem_clocks_mhz())
        supported = self.device.supported_sm_clocks_mhz(mem)
        for f in planned_sm_mhz:
            self._snap("SM", f, supported)

    def _snap(self, what: str, freq_mhz: int, supported: list[int]) -> int:
        key = (what, freq_mhz, tuple(supported))
        if key not in self._snapped:  # warn once per requested value
            applied, msg = pf.snap_clock(self.device, what, freq_mhz, supported)
            if msg:
                self.warn(msg, ClockSnapWarning)
            self._snapped[key] = applied
        return self._snapped[key]

    def _begin_changes(self, asked: str) -> None:
        """Preflight, snapshot, journal and handlers, once, before the first change."""
        if self._journaled:
            return
        self.preflight(asked)
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
            self.changed,
            **self.caps.journal_fields(),
            details=self._details_at_start,
        )
        jr.write_journal(self.journal_path, record)

    def _apply(self, key: str, setter: Any, value: Any) -> None:
        # Write-ahead: the journal says "changed" before the setter runs, so a SIGKILL between
        # the two still restores (restoring an unchanged setting is harmless). A signal in
        # between is handled once both are done, so its restore sees the journal as it is.
        with self._lock, self.guard.critical():
            was = self.changed[key]
            self.changed[key] = True
            self._write_journal()
            try:
                setter(value)
            except BaseException:
                self.changed[key] = was
                self._write_journal()
                raise

    def lock_clock(self, key: str, freq_mhz: int) -> None:
        """Lock the SM (`sm`) or memory (`mem`) clock at the supported clock nearest freq_mhz."""
        sm, dev = key == "sm", self.device
        what = "SM" if sm else "memory"
        self._begin_changes(f"Cannot lock the {what} clock to {freq_mhz} MHz")
        # Listed after the preflight: a device without clock control fails there, in one line.
        supported = (
            dev.supported_sm_clocks_mhz(self.caps.applied_mem_mhz)
            if sm
            else dev.supported_mem_clocks_mhz()
        )
        applied = self._snap(what, freq_mhz, supported)
        self._apply(key, dev.lock_sm_clocks if sm else dev.lock_mem_clocks, applied)
        setattr(self.caps, f"applied_{key}_mhz", applied)
        self._write_journal()
        pf.check_lock_readback(dev, key, applied)

    def set_power_limit(self, power_w: float) -> None:
        self._begin_changes(f"Cannot set the power limit to {power_w:g} W")
        self._apply("power_limit", self.device.set_power_limit_w, float(power_w))
        self.caps.applied_power_limit_w = self.device.power_limit_w()
        self._write_journal()
