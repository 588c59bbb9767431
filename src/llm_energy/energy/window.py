"""What one energy window gives (`WindowReading`), its handle, and the clock-truth rules
`EnergyMeter` (energy/meter.py) applies to it: did the cap hold, how long was the GPU throttled."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from llm_energy.device.base import REASON_SW_POWER_CAP, ThrottleCounters
from llm_energy.units import mean_power_w

# A cap "held" when power/thermal throttling took at most this share of the window's busy time.
MAX_THROTTLED_FRACTION = 0.05


@dataclass(frozen=True)
class WindowReading:
    energy_j: float  # NaN when the counter was reset inside the window
    elapsed_s: float  # edge to edge (tick to tick when aligned)
    sm_clock_mean_mhz: float | None
    sm_clock_min_mhz: float | None
    mem_clock_mhz: int | None
    clock_event_reasons: int  # OR over the window's reads (GPU-idle bit of the start edge masked)
    temperature_c: float | None
    cap_held: bool
    trusted: bool
    counter_reset: bool
    energy_source: str
    min_trusted_s: float
    sm_clock_max_mhz: float | None = None
    clock_source: str = "none"  # "samples" (driver-side, in-window), "edges" or "none"
    busy_s: float | None = None  # start edge to the end of the work (excludes the closing wait)
    tail_s: float = 0.0  # idle time inside the window while the closing edge waited for a tick
    tick_aligned: bool = False  # both edges read right after a counter update
    throttle_source: str = "none"  # the NVML API of the throttle counters, or "none"
    throttle_power_s: float | None = None  # in-window time clocks were held down by power
    throttle_thermal_s: float | None = None  # ... by temperature
    power_limit_w: float | None = None  # in force at the window's start

    @property
    def avg_power_w(self) -> float:
        return mean_power_w(self.energy_j, self.elapsed_s)

    @property
    def throttled_fraction(self) -> float | None:
        if self.throttle_power_s is None or self.throttle_thermal_s is None:
            return None
        busy = self.busy_s if self.busy_s else self.elapsed_s
        return (self.throttle_power_s + self.throttle_thermal_s) / busy if busy > 0 else None

    @property
    def power_limit_held(self) -> bool | None:
        """Ran within the power limit without pressing on it: mean power at or under it, power
        capping (throttle counters where known, else the sw_power_cap reason) at most
        MAX_THROTTLED_FRACTION of the busy time. None: no limit known, or no energy."""
        limit_w, power_w = self.power_limit_w, self.avg_power_w
        if limit_w is None or not math.isfinite(power_w):
            return None
        busy_s = self.busy_s or self.elapsed_s
        if self.throttle_power_s is not None and busy_s > 0:
            throttled = self.throttle_power_s / busy_s > MAX_THROTTLED_FRACTION
        else:
            throttled = bool(self.clock_event_reasons & REASON_SW_POWER_CAP)
        return power_w <= limit_w and not throttled

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Window:
    """Handle yielded by `EnergyMeter.window`; `reading` is set when the block exits normally."""

    def __init__(self, t0_s: float) -> None:
        self.t0_s = t0_s
        self.reading: WindowReading | None = None


def cap_held(
    cap_mhz: int | None,
    mean_mhz: float | None,
    min_mhz: float | None,
    max_mhz: float | None,
    step_mhz: int,
    throttled_fraction: float | None = None,
) -> bool:
    """Did the clock stay at the cap (one step of tolerance) for the window's work? Throttling
    beyond MAX_THROTTLED_FRACTION of the busy time breaks it, whatever the sparse samples say."""
    if cap_mhz is None:
        return True
    if throttled_fraction is not None and throttled_fraction > MAX_THROTTLED_FRACTION:
        return False
    if mean_mhz is None or min_mhz is None:
        return False
    tol = max(step_mhz, 1)
    top = max_mhz if max_mhz is not None else mean_mhz
    return min_mhz >= cap_mhz - tol and abs(mean_mhz - cap_mhz) <= tol and top <= cap_mhz + tol


def throttle_delta(
    start: ThrottleCounters | None, end: ThrottleCounters | None
) -> tuple[str, float | None, float | None]:
    """(source, power s, thermal s) of throttling between two counter reads; none when unknown."""
    if start is None or end is None or start.source != end.source:
        return "none", None, None
    # A counter that went backwards (driver reload) says nothing about this window.
    power, thermal = end.power_s - start.power_s, end.thermal_s - start.thermal_s
    if power < 0 or thermal < 0:
        return "none", None, None
    return end.source, power, thermal
