"""Model clock and energy counter of the simulated GPU: exact power-of-two quanta with `exact`,
NVML-like update ticks with `ticks` (docs/device.md, "The workload clock")."""

from __future__ import annotations

import math
from dataclasses import dataclass

TIME_QUANTUM_S = 2.0**-30
ENERGY_QUANTUM_J = 2.0**-24


def _quantize(value: float, quantum: float) -> float:
    return round(value / quantum) * quantum


@dataclass(frozen=True)
class WorkloadTiming:
    """What the simulated GPU did with one reported generate call (window noise included)."""

    time_s: float
    ttft_s: float  # the prefill: time to the first token
    energy_j: float
    sm_mhz: int  # the clock it ran at, after any power cap
    power_capped: bool
    accounted: bool  # inside a window: on the model clock and counter
    prefill_energy_j: float = 0.0  # the part of energy_j spent in the prefill (the rest decodes)


class ModelClock:
    def __init__(self, update_period_s: float, *, ticks: bool) -> None:
        # Rounded up: k periods are never shorter than k configured periods (trusted windows).
        self.period_s = math.ceil(max(update_period_s, 0.0) / TIME_QUANTUM_S) * TIME_QUANTUM_S
        self.ticks = bool(ticks) and self.period_s > 0
        self.exact = False
        self.now_s = 0.0
        self.energy_j = 0.0
        self.published_j = 0.0
        self.throttle_s = 0.0  # busy time spent under the power cap

    def make_exact(self) -> None:
        """Snap to whole quanta; from now on every step is whole quanta too."""
        if not self.exact:
            self.now_s = _quantize(self.now_s, TIME_QUANTUM_S)
            self.throttle_s = _quantize(self.throttle_s, TIME_QUANTUM_S)
            self.energy_j = _quantize(self.energy_j, ENERGY_QUANTUM_J)
            self.published_j = _quantize(self.published_j, ENERGY_QUANTUM_J)
            self.exact = True

    def _energy(self, power_w: float, seconds: float) -> float:
        e = power_w * seconds
        return _quantize(e, ENERGY_QUANTUM_J) if self.exact else e

    def _ticks_passed(self, t_s: float) -> int:
        if self.exact:  # integer arithmetic on exact quanta: no float division at a boundary
            return round(t_s / TIME_QUANTUM_S) // round(self.period_s / TIME_QUANTUM_S)
        return math.floor(t_s / self.period_s)

    def add_s(self, seconds: float, power_w: float, *, throttled: bool = False) -> None:
        """Run `seconds` of model time at constant power."""
        if self.exact:
            seconds = _quantize(seconds, TIME_QUANTUM_S)
        if seconds <= 0:
            return
        t_old, e_old = self.now_s, self.energy_j
        self.now_s += seconds
        # Exact: a whole period always adds the same quanta, so an idle window's mean power
        # is exactly P_idle.
        self.energy_j += self._energy(power_w, seconds)
        if throttled:
            self.throttle_s += seconds
        if not self.ticks:
            self.published_j = self.energy_j
            return
        passed = self._ticks_passed(self.now_s)
        if passed > self._ticks_passed(t_old):
            # Power is constant over this step: the energy at the last boundary passed.
            self.published_j = e_old + self._energy(power_w, passed * self.period_s - t_old)

    def next_tick(self, power_w: float) -> bool:
        """Run idle up to the next counter update; False when the counter does not tick."""
        if not self.ticks:
            return False
        self.add_s((self._ticks_passed(self.now_s) + 1) * self.period_s - self.now_s, power_w)
        return True
