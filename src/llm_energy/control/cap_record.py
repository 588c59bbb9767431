"""The observe half of a `ClockSession` (control/session.py) and what a session records about its cap.

`control="observe"` never calls a setter: it only records the clocks in force.
`control="slurm"` is observe with a cap that SLURM applied (`--gpu-freq`, control/slurm.py): the
requested cap is recorded, checked against SLURM's environment, and a window's clock label is
that cap only when the clocks seen inside the window held it (`freq_label_mhz`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from llm_energy.control import preflight as pf
from llm_energy.control.slurm import cap_missed_warning, clock_mechanism
from llm_energy.device.base import ClockState, Device

log = logging.getLogger("llm_energy.control.session")

OBSERVING = ("observe", "slurm")  # controls that never call a setter


class CapRecord:
    """Entering observe / slurm, window labels and the run's record of the cap; state is set up
    by `ClockSession.__init__`."""

    device: Device
    control: str
    journal_dir: Path
    on_other_processes: str
    requested_sm_mhz: int | None
    requested_mem_mhz: int | None
    requested_power_limit_w: float | None
    applied_sm_mhz: int | None
    applied_mem_mhz: int | None
    applied_power_limit_w: float | None
    original: ClockState | None
    recovered_message: str | None
    warnings: list[str]
    _slurm_cap_missed: bool

    def _warn(self, msg: str, category: type[Warning]) -> None:
        raise NotImplementedError  # the session's: log, warn and record for run.json

    @property
    def clock_mechanism(self) -> str:
        """How the cap reaches the GPU, as run.json records it."""
        return clock_mechanism(self.control, self.device.backend)

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

    def _enter_observe(self) -> None:
        pf.observe_preflight(
            self.device,
            self.control,
            self.journal_dir,
            self.on_other_processes,
            self.requested_sm_mhz,
            self._warn,
        )
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


__all__ = ["OBSERVING", "CapRecord"]
