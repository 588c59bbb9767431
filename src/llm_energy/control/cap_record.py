"""What a `ClockSession` asked for and got, the record of what its cap did. `observe` and `slurm`
(a cap SLURM applied, control/slurm.py) never call a setter: they record the clocks in force."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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
