"""Energy measurement windows around workloads, from the device's cumulative energy counter.

A window synchronises the device at both edges, reads the counter at both edges and takes
elapsed time from `device.now_s()` (perf_counter; the simulated device's model clock). The
counter only moves every update period (H200: ~0.1 s), so a window is trusted only when it
spans at least `min_window_periods` periods (anchors: ±4 % at 10 periods, unusable at 1);
`run_until_trusted` repeats a workload inside one window until it is long enough.

SM clock statistics come from the driver's own samples (nvmlDeviceGetSamples) when available,
else from edge reads: no polling thread runs in the inference process (it costs throughput,
see the anchors). Edge reads taken while the GPU reports "idle" are dropped when a busy read
exists, because an unlocked idle GPU sits at its idle clock, not the clock the work ran at.
"""

from __future__ import annotations

import contextlib
import logging
import math
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

from llm_energy.hw.base import REASON_GPU_IDLE, Device
from llm_energy.hw.errors import DeviceError
from llm_energy.units import mean_power_w

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_MIN_WINDOW_PERIODS = 10.0
FALLBACK_UPDATE_PERIOD_S = 0.1  # H200 measured; used when the counter does not move while probing


@dataclass(frozen=True)
class WindowReading:
    energy_j: float  # NaN when the counter was reset inside the window
    elapsed_s: float
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
    clock_source: str = "none"  # "samples" (driver-side), "edges" or "none"

    @property
    def avg_power_w(self) -> float:
        return mean_power_w(self.energy_j, self.elapsed_s)

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
) -> bool:
    """Did the clock stay at the cap? None cap (driver default) always holds. One clock step of
    tolerance either way; unknown clocks cannot confirm a cap."""
    if cap_mhz is None:
        return True
    if mean_mhz is None or min_mhz is None:
        return False
    tol = max(step_mhz, 1)
    top = max_mhz if max_mhz is not None else mean_mhz
    return min_mhz >= cap_mhz - tol and abs(mean_mhz - cap_mhz) <= tol and top <= cap_mhz + tol


def _safe(fn: Callable[[], T]) -> T | None:
    try:
        return fn()
    except (DeviceError, OSError):
        return None


class EnergyMeter:
    def __init__(
        self,
        device: Device,
        *,
        min_window_periods: float = DEFAULT_MIN_WINDOW_PERIODS,
        update_period_s: float | None = None,
    ) -> None:
        if min_window_periods < 1:
            raise ValueError(f"min_window_periods must be >= 1, got {min_window_periods!r}")
        self.device = device
        self.min_window_periods = float(min_window_periods)
        self._update_period_s = update_period_s
        self._step_mhz: int | None = None

    # ------------------------------------------------------------------ counter period
    def measure_update_period_s(self, max_s: float = 3.0, changes: int = 5) -> float:
        """Median gap between counter changes. Backends with a known period (RAPL 1 ms,
        codecarbon estimate 0: it is power x time, simulated: configured) return it directly."""
        nominal = self.device.nominal_update_period_s()
        if nominal is not None:
            self._update_period_s = nominal
            return nominal
        gaps: list[float] = []
        prev = self.device.energy_counter_j()
        last_change: float | None = None
        deadline = time.perf_counter() + max_s
        while len(gaps) < changes and time.perf_counter() < deadline:
            e = self.device.energy_counter_j()
            now = time.perf_counter()
            if e != prev:
                if last_change is not None:  # the first change has a random phase: no gap yet
                    gaps.append(now - last_change)
                last_change, prev = now, e
            time.sleep(0.001)
        if not gaps:
            log.warning(
                "energy counter of %s did not change twice within %.1f s; assuming a %.2f s update period",
                self.device.name(),
                max_s,
                FALLBACK_UPDATE_PERIOD_S,
            )
            period = FALLBACK_UPDATE_PERIOD_S
        else:
            period = statistics.median(gaps)
        self._update_period_s = period
        return period

    @property
    def update_period_s(self) -> float:
        if self._update_period_s is None:
            self.measure_update_period_s()
        assert self._update_period_s is not None
        return self._update_period_s

    @property
    def min_trusted_s(self) -> float:
        return self.min_window_periods * self.update_period_s

    def _sm_step(self) -> int:
        if self._step_mhz is None:
            self._step_mhz = _safe(self.device.sm_step_mhz) or 0
        return self._step_mhz

    # ------------------------------------------------------------------ windows
    @contextlib.contextmanager
    def _measure(self, cap_mhz: int | None, busy: bool) -> Iterator[Window]:
        dev = self.device
        min_trusted = self.min_trusted_s  # measure the period before, not inside, the window
        dev.synchronize()
        if busy:
            dev.window_begin()
        try:
            since_us = dev.sample_timestamp_us()
            start_clock = _safe(dev.sm_clock_mhz)
            start_reasons = _safe(dev.clock_event_reasons) or 0
            e0, t0 = dev.read_counter()
            handle = Window(t0)
            yield handle
            # Read clocks before the closing synchronize: the GPU is most likely still busy.
            end_clock = _safe(dev.sm_clock_mhz)
            end_reasons = _safe(dev.clock_event_reasons) or 0
            dev.synchronize()
            e1, t1 = dev.read_counter()
        finally:
            if busy:
                dev.window_end()
        energy = e1 - e0
        counter_reset = False
        if energy < 0:
            max_j = dev.energy_counter_max_j()
            if max_j:
                energy += max_j  # wrapped once
            else:
                counter_reset = True  # driver reload / reset: the delta means nothing
                energy = math.nan
                log.warning(
                    "energy counter of %s went backwards inside a window: reading marked untrusted",
                    dev.name(),
                )
        elapsed = t1 - t0
        samples = _safe(lambda: dev.sm_clock_samples_mhz(since_us))
        if samples:
            clocks, source = [float(c) for c in samples], "samples"
        else:
            edges = [(start_clock, start_reasons), (end_clock, end_reasons)]
            busy_edges = [c for c, r in edges if c is not None and not r & REASON_GPU_IDLE]
            clocks = [float(c) for c in busy_edges] or [float(c) for c, _ in edges if c is not None]
            source = "edges" if clocks else "none"
        mean = statistics.fmean(clocks) if clocks else None
        lo = min(clocks) if clocks else None
        hi = max(clocks) if clocks else None
        temp = _safe(dev.temperature_c)
        handle.reading = WindowReading(
            energy_j=energy,
            elapsed_s=elapsed,
            sm_clock_mean_mhz=mean,
            sm_clock_min_mhz=lo,
            mem_clock_mhz=_safe(dev.mem_clock_mhz),
            clock_event_reasons=(start_reasons & ~REASON_GPU_IDLE) | end_reasons,
            temperature_c=temp,
            cap_held=cap_held(cap_mhz, mean, lo, hi, self._sm_step()),
            trusted=(not counter_reset) and elapsed >= min_trusted,
            counter_reset=counter_reset,
            energy_source=dev.energy_source,
            min_trusted_s=min_trusted,
            sm_clock_max_mhz=hi,
            clock_source=source,
        )

    @contextlib.contextmanager
    def window(self, cap_mhz: int | None = None) -> Iterator[Window]:
        """Measure the block; `handle.reading` is a WindowReading after the block."""
        with self._measure(cap_mhz, busy=True) as handle:
            yield handle

    def run_until_trusted(
        self, fn: Callable[[], T], cap_mhz: int | None = None, max_repeats: int = 50
    ) -> tuple[WindowReading, int, T]:
        """Call `fn` repeatedly inside one window until the window is trusted-long (or
        `max_repeats`). Returns (reading, repeats, last result); per-call energy is
        reading.energy_j / repeats."""
        if max_repeats < 1:
            raise ValueError(f"max_repeats must be >= 1, got {max_repeats!r}")
        target = self.min_trusted_s
        repeats = 0
        with self.window(cap_mhz) as w:
            while True:
                result = fn()
                repeats += 1
                if repeats >= max_repeats:
                    break
                self.device.synchronize()  # queued GPU work must count towards the elapsed time
                if self.device.now_s() - w.t0_s >= target:
                    break
        assert w.reading is not None
        if not w.reading.trusted:
            log.warning(
                "window of %.3f s after %d repeat(s) is shorter than the trusted %.3f s (or the counter reset)",
                w.reading.elapsed_s,
                repeats,
                target,
            )
        return w.reading, repeats, result

    def measure_idle(self, seconds: float = 2.0, cap_mhz: int | None = None) -> WindowReading:
        """An idle window (sleep) at the clocks currently in force."""
        if seconds < self.min_trusted_s:
            log.warning(
                "idle baseline of %.2f s is shorter than a trusted window (%.2f s)",
                seconds,
                self.min_trusted_s,
            )
        with self._measure(cap_mhz, busy=False) as w:
            time.sleep(seconds)
        assert w.reading is not None
        return w.reading

    def measure_idle_power_w(self, seconds: float = 2.0) -> float:
        """Idle baseline power (W) at the current frequency; NaN if the counter reset."""
        r = self.measure_idle(seconds)
        return r.avg_power_w


__all__ = [
    "DEFAULT_MIN_WINDOW_PERIODS",
    "EnergyMeter",
    "Window",
    "WindowReading",
    "cap_held",
]
