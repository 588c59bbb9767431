"""Energy measurement windows around workloads, from the device's cumulative energy counter:
tick-aligned edges, trusted windows, clock truth from inside the window, idle baselines of
back-to-back windows; no polling thread in the inference process (docs/device.md)."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import statistics
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

from llm_energy.device.base import REASON_GPU_IDLE, Device
from llm_energy.device.errors import DeviceError
from llm_energy.energy.window import Window, WindowReading, cap_held, throttle_delta

log = logging.getLogger(__name__)
T = TypeVar("T")

FALLBACK_UPDATE_PERIOD_S = 0.1  # H200 measured; used when the counter does not move while probing
# A window opening within this many update periods of the previous window's closing tick
# reuses that tick as its opening edge (the gap is record building, a few ms).
CHAIN_GAP_PERIODS = 0.2


def _safe(fn: Callable[[], T]) -> T | None:
    try:
        return fn()
    except (DeviceError, OSError):
        return None


class EnergyMeter:
    """Windows around workloads and idle windows, on one device's energy counter."""

    _idle_part_clamp_logged: bool = False

    def __init__(
        self,
        device: Device,
        *,
        min_window_periods: float,
        min_window_s: float,
        tick_align: bool,
        update_period_s: float | None = None,
    ) -> None:
        if min_window_periods < 1:
            raise ValueError(f"min_window_periods must be >= 1, got {min_window_periods!r}")
        if min_window_s < 0:
            raise ValueError(f"min_window_s must be >= 0, got {min_window_s!r}")
        self.device = device
        self.min_window_periods = float(min_window_periods)
        self.min_window_s = float(min_window_s)
        self.tick_align = bool(tick_align)
        self._update_period_s = update_period_s
        self._step_mhz: int | None = None
        # (counter J, device time s, perf_counter s) of the last aligned closing edge.
        self._last_close: tuple[float, float, float] | None = None

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
            msg = "energy counter of %s did not change twice within %.1f s; assuming a %.2f s update period"
            log.warning(msg, self.device.name(), max_s, FALLBACK_UPDATE_PERIOD_S)
        period = statistics.median(gaps) if gaps else FALLBACK_UPDATE_PERIOD_S
        self._update_period_s = period
        return period

    @property
    def update_period_s(self) -> float:
        if self._update_period_s is None:
            self.measure_update_period_s()
        assert self._update_period_s is not None
        return self._update_period_s

    @property
    def ticks(self) -> bool:
        """Whether the counter moves in steps (then edges can align and the duration floor
        applies); an estimate of power x time has period 0."""
        return self.update_period_s > 0

    @property
    def min_trusted_s(self) -> float:
        by_periods = self.min_window_periods * self.update_period_s
        return max(by_periods, self.min_window_s) if self.ticks else by_periods

    def wait_for_tick(self, max_wait_s: float | None = None) -> tuple[float, float, bool]:
        """Read the counter until it changes: (counter J, time s, whether it changed), at most one
        read (~3.5 ms on NVML) late; gives up after `max_wait_s` (3 periods) so it cannot hang."""
        dev = self.device
        if max_wait_s is None:
            max_wait_s = 3 * self.update_period_s + 0.05
        e_prev, t = dev.read_counter()
        deadline = time.perf_counter() + max_wait_s
        # Sleep a small share of the period between reads: NVML reads are slow anyway (~3.5 ms),
        # the simulated and RAPL counters are cheap and would otherwise spin a core.
        pause_s = min(self.update_period_s / 50, 0.002)
        while time.perf_counter() < deadline:
            e, t = dev.read_counter()
            if e != e_prev:
                return e, t, True
            if pause_s > 0:
                time.sleep(pause_s)
        return e_prev, t, False

    def _edge(self) -> tuple[float, float, bool]:
        if self.tick_align and self.ticks:
            return self.wait_for_tick()
        e, t = self.device.read_counter()
        return e, t, False

    def _opening_edge(self) -> tuple[float, float, bool]:
        """The previous window's closing tick when the new window follows right after it
        (back-to-back windows share an edge: one tick wait per window instead of two, and the
        short gap's energy lies inside the new window); else a fresh edge."""
        last, self._last_close = self._last_close, None
        if last is not None:
            e, t, wall_s = last
            if time.perf_counter() - wall_s <= CHAIN_GAP_PERIODS * self.update_period_s:
                return e, t, True
        return self._edge()

    @contextlib.contextmanager
    def _measure(self, cap_mhz: int | None, busy: bool) -> Iterator[Window]:
        dev = self.device
        min_trusted = self.min_trusted_s  # measure the period before, not inside, the window
        dev.synchronize()
        e0, t0, aligned0 = self._opening_edge()
        if busy:
            dev.window_begin()
        try:
            since_us = dev.sample_timestamp_us()
            start_clock = _safe(dev.sm_clock_mhz)
            start_reasons = _safe(dev.clock_event_reasons) or 0
            start_throttle = _safe(dev.throttle_counters)
            limit_w = _safe(dev.power_limit_w)
            handle = Window(t0)
            yield handle
            # Read clocks before the closing synchronize: the GPU is most likely still busy.
            end_clock = _safe(dev.sm_clock_mhz)
            end_reasons = _safe(dev.clock_event_reasons) or 0
            dev.synchronize()
            work_end_s = dev.now_s()
            end_throttle = _safe(dev.throttle_counters)
        finally:
            if busy:
                dev.window_end()
        e1, t1, aligned1 = self._edge()
        self._last_close = (e1, t1, time.perf_counter()) if aligned1 else None
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
        busy_s = max(work_end_s - t0, 0.0)
        samples = _safe(lambda: dev.sm_clock_samples_mhz(since_us))
        if samples:
            clocks, source = [float(c) for c in samples], "samples"
        else:
            edges = [(start_clock, start_reasons), (end_clock, end_reasons)]
            busy_edges = [c for c, r in edges if c is not None and not r & REASON_GPU_IDLE]
            clocks = [float(c) for c in busy_edges] or [float(c) for c, _ in edges if c is not None]
            source = "edges" if clocks else "none"
        throttle_source, power_s, thermal_s = throttle_delta(start_throttle, end_throttle)
        mean = statistics.fmean(clocks) if clocks else None
        lo = min(clocks) if clocks else None
        hi = max(clocks) if clocks else None
        temp = _safe(dev.temperature_c)
        handle.reading = reading = WindowReading(
            energy_j=energy,
            elapsed_s=elapsed,
            sm_clock_mean_mhz=mean,
            sm_clock_min_mhz=lo,
            mem_clock_mhz=_safe(dev.mem_clock_mhz),
            clock_event_reasons=(start_reasons & ~REASON_GPU_IDLE) | end_reasons,
            temperature_c=temp,
            cap_held=False,
            trusted=(not counter_reset) and elapsed >= min_trusted,
            counter_reset=counter_reset,
            energy_source=dev.energy_source,
            min_trusted_s=min_trusted,
            sm_clock_max_mhz=hi,
            clock_source=source,
            busy_s=busy_s,
            tail_s=max(t1 - work_end_s, 0.0),
            tick_aligned=aligned0 and aligned1,
            throttle_source=throttle_source,
            throttle_power_s=power_s,
            throttle_thermal_s=thermal_s,
            power_limit_w=limit_w,
        )
        if self._step_mhz is None:
            self._step_mhz = _safe(dev.sm_step_mhz) or 0
        fraction = reading.throttled_fraction
        held = cap_held(cap_mhz, mean, lo, hi, self._step_mhz, throttled_fraction=fraction)
        handle.reading = dataclasses.replace(reading, cap_held=held)

    @contextlib.contextmanager
    def window(self, cap_mhz: int | None = None) -> Iterator[Window]:
        """Measure the block; `handle.reading` is a WindowReading after the block."""
        with self._measure(cap_mhz, busy=True) as handle:
            yield handle

    def run_until_trusted(
        self, fn: Callable[[], T], cap_mhz: int | None = None, *, max_repeats: int
    ) -> tuple[WindowReading, int, T]:
        """Call `fn` repeatedly inside one window until it is trusted-long (or `max_repeats`):
        (reading, repeats, last result); per-call energy is reading.energy_j / repeats."""
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
            msg = "window of %.3f s after %d repeat(s) is shorter than the trusted %.3f s (or the counter reset)"
            log.warning(msg, w.reading.elapsed_s, repeats, target)
        return w.reading, repeats, result

    def measure_idle(self, seconds: float, cap_mhz: int | None = None) -> WindowReading:
        """One idle window (sleep) at the clocks currently in force."""
        self._warn_short_idle(seconds)
        return self._idle_window(seconds, cap_mhz)

    def measure_idle_power_w(self, seconds: float) -> float:
        """Idle power (W) at the current frequency from one window; NaN if the counter reset."""
        return self.measure_idle(seconds).avg_power_w

    def measure_idle_samples_w(self, seconds: float, samples: int) -> list[float]:
        """Idle power (W) of `samples` back-to-back windows sharing `seconds` (reset: NaN)."""
        self._warn_short_idle(seconds)
        part_s = self.idle_part_s(seconds, samples)
        return [self._idle_window(part_s).avg_power_w for _ in range(samples)]

    def idle_part_s(self, seconds: float, samples: int) -> float:
        """How long each of `samples` idle windows sleeps to fill `seconds`."""
        if samples < 1:
            raise ValueError(f"samples must be >= 1, got {samples!r}")
        part_s = seconds / samples
        if self.tick_align or not self.ticks or part_s >= self.update_period_s:
            return part_s
        if not self._idle_part_clamp_logged:
            self._idle_part_clamp_logged = True
            msg = (
                "idle sub-window of %.3f s (%.2f s / %d) is shorter than one counter update "
                "(%.3f s) without tick alignment: each lasts one update instead"
            )
            log.warning(msg, part_s, seconds, samples, self.update_period_s)
        return self.update_period_s

    def _warn_short_idle(self, seconds: float) -> None:
        if seconds < self.min_trusted_s:
            msg = "idle baseline of %.2f s is shorter than a trusted window (%.2f s)"
            log.warning(msg, seconds, self.min_trusted_s)

    def _idle_window(self, seconds: float, cap_mhz: int | None = None) -> WindowReading:
        with self._measure(cap_mhz, busy=False) as w:
            time.sleep(seconds)
        assert w.reading is not None
        return w.reading
