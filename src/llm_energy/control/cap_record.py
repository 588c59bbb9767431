"""What a `ClockSession` asked for and got, observe mode, and its record. `observe` and `slurm`
(a cap SLURM applied, control/slurm.py) never call a setter: they record the clocks in force."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llm_energy.control import preflight as pf
from llm_energy.control.slurm import clock_mechanism

if TYPE_CHECKING:
    from llm_energy.control.session import ClockSession

log = logging.getLogger("llm_energy.control.session")

OBSERVING = ("observe", "slurm")  # controls that never call a setter


@dataclass
class Caps:
    """What a session asked for and what is in force (None = driver default)."""

    requested_sm_mhz: int | None
    requested_mem_mhz: int | None
    requested_power_limit_w: float | None
    applied_sm_mhz: int | None = None
    applied_mem_mhz: int | None = None
    applied_power_limit_w: float | None = None

    def journal_fields(self) -> dict[str, dict[str, Any]]:
        return {
            when: {k: getattr(self, f"{when}_{k}") for k in ("sm_mhz", "mem_mhz", "power_limit_w")}
            for when in ("requested", "applied")
        }


def cap_record(session: ClockSession) -> dict[str, Any]:
    """What the run records about the cap (run.json / per-request columns)."""
    control, caps, original = session.control, session.caps, session.original
    return {
        "control": control,
        "clock_mechanism": clock_mechanism(control, session.device.backend),
        "freq_requested_mhz": caps.requested_sm_mhz,
        # slurm: decided per window from the in-window clocks (ClockSession.freq_label_mhz)
        "freq_applied_mhz": None if control == "slurm" else caps.applied_sm_mhz,
        "sm_clock_observed_mhz": caps.applied_sm_mhz if control in OBSERVING else None,
        "mem_freq_requested_mhz": caps.requested_mem_mhz,
        "mem_freq_applied_mhz": caps.applied_mem_mhz,
        "power_limit_requested_w": caps.requested_power_limit_w,
        "power_limit_applied_w": caps.applied_power_limit_w,
        "original_state": original.to_dict() if original else None,
        "recovered": session.recovered_message,
        "warnings": list(session.warnings),
    }


def enter_observe(session: ClockSession) -> None:
    """Enter observe / slurm: checks, then record the clocks in force (no setter is called)."""
    device, control, caps = session.device, session.control, session.caps
    pf.observe_preflight(
        device,
        control,
        session.journal_dir,
        session.on_other_processes,
        caps.requested_sm_mhz,
        session._warn,
    )
    caps.applied_sm_mhz = device.sm_clock_mhz()
    caps.applied_mem_mhz = device.mem_clock_mhz()
    caps.applied_power_limit_w = device.power_limit_w()
    if caps.requested_sm_mhz is not None or caps.requested_mem_mhz is not None:
        log.info(
            "control=%s: requested SM %s / memory %s MHz recorded, not applied by this run; clocks in force: SM %s, memory %s MHz",
            control,
            caps.requested_sm_mhz,
            caps.requested_mem_mhz,
            caps.applied_sm_mhz,
            caps.applied_mem_mhz,
        )
