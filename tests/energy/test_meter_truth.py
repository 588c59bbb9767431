"""Tick-aligned windows, the duration floor and in-window clock truth (GPU-truth issue).

The fake device here behaves like an H200 seen through NVML, only faster: its counter is
published in steps of `period_s`, its clocks read "at the cap" on the idle edges while the work
inside the window runs throttled, and its throttle-duration counters move only under load.
"""

from __future__ import annotations

import math
import statistics
import time
from pathlib import Path

import pytest

from fake_nvml import FakeNvml
from helpers import GPU, EnergyMeter, FakeGpu, SimulatedDevice, busy, patch_nvml
from llm_energy.device import nvml_reads
from llm_energy.device.base import ThrottleCounters
from llm_energy.device.nvml import NvmlDevice
from llm_energy.energy.window import MAX_THROTTLED_FRACTION, cap_held


class TickingGpu(FakeGpu):
    """Energy integrates real time at `busy_w` / `idle_w`; the counter publishes the integral
    at the last multiple of `period_s` (like NVML's ~100 ms updates)."""

    label = "ticking"

    def __init__(self, *, period_s: float = 0.02, busy_w: float = 300.0, idle_w: float = 300.0):
        super().__init__(0)
        self.period_s, self.busy_w, self.idle_w = period_s, busy_w, idle_w
        self.t0 = time.perf_counter()
        self.busy_since: float | None = None
        self.busy_spans: list[tuple[float, float]] = []
        self.cap_mhz = 1500
        self.samples_mhz: list[float] | None = None
        self.throttled_under_load = False
        self._throttle_s = 0.0

    def _busy_s_until(self, t: float) -> float:
        spans = [*self.busy_spans]
        if self.busy_since is not None:
            spans.append((self.busy_since, t))
        return sum(max(0.0, min(b, t) - a) for a, b in spans if a < t)

    def true_energy_j(self, t: float) -> float:
        busy = self._busy_s_until(t)
        return busy * self.busy_w + ((t - self.t0) - busy) * self.idle_w

    def energy_counter_j(self) -> float:
        now = time.perf_counter()
        tick = self.t0 + math.floor((now - self.t0) / self.period_s) * self.period_s
        return self.true_energy_j(tick)

    def nominal_update_period_s(self) -> float | None:
        return self.period_s

    def power_w(self) -> float:
        return self.busy_w if self.busy_since is not None else self.idle_w

    def window_begin(self) -> None:
        self.busy_since = time.perf_counter()

    def window_end(self) -> None:
        assert self.busy_since is not None
        now = time.perf_counter()
        if self.throttled_under_load:
            self._throttle_s += now - self.busy_since
        self.busy_spans.append((self.busy_since, now))
        self.busy_since = None

    # Edges are read while idle: the clock reads exactly the cap there.
    def sm_clock_mhz(self) -> int | None:
        return self.cap_mhz

    def sm_clock_samples_mhz(self, since_us: int) -> list[float] | None:
        return self.samples_mhz

    def throttle_counters(self) -> ThrottleCounters | None:
        live = 0.0
        if self.throttled_under_load and self.busy_since is not None:
            live = time.perf_counter() - self.busy_since
        return ThrottleCounters("fake", self._throttle_s + live, 0.0)


# ------------------------------------------------------------------ duration floor


def test_min_trusted_is_the_longer_of_duration_and_periods() -> None:
    dev = TickingGpu(period_s=0.1)
    assert EnergyMeter(dev).min_trusted_s == pytest.approx(2.0)  # 20 x 0.1 s = 2 s, floor 2 s
    assert EnergyMeter(dev, min_window_s=3.0).min_trusted_s == pytest.approx(3.0)
    assert EnergyMeter(dev, min_window_periods=40).min_trusted_s == pytest.approx(4.0)


def test_an_estimate_without_ticks_has_no_duration_floor() -> None:
    dev = TickingGpu(period_s=0.0)  # codecarbon-like: power x time, no granularity
    meter = EnergyMeter(dev)
    assert not meter.ticks and meter.min_trusted_s == 0.0


# ------------------------------------------------------------------ tick alignment


def test_wait_for_tick_returns_the_first_read_after_an_update() -> None:
    dev = TickingGpu(period_s=0.02)
    meter = EnergyMeter(dev)
    before = dev.energy_counter_j()
    e, _, changed = meter.wait_for_tick()
    assert changed and e != before
    # The read is within a small fraction of a period of the tick it saw.
    phase = (time.perf_counter() - dev.t0) % dev.period_s
    assert phase < dev.period_s


def test_wait_for_tick_gives_up_on_a_frozen_counter() -> None:
    class Frozen(TickingGpu):
        def energy_counter_j(self) -> float:
            return 42.0

    meter = EnergyMeter(Frozen(period_s=0.01))
    t0 = time.perf_counter()
    e, _, changed = meter.wait_for_tick(max_wait_s=0.05)
    assert not changed and e == 42.0 and time.perf_counter() - t0 < 0.5
    with meter.window() as w:
        busy(0.01)
    assert w.reading is not None and not w.reading.tick_aligned


def _window_powers(meter: EnergyMeter, n: int, work_s: float) -> list[float]:
    powers = []
    for _ in range(n):
        with meter.window() as w:
            busy(work_s)
        assert w.reading is not None
        powers.append(w.reading.energy_j / w.reading.elapsed_s)
    return powers


def test_tick_aligned_windows_remove_the_phase_error() -> None:
    # 300 W everywhere: every window's true average power is exactly 300 W.
    dev = TickingGpu(period_s=0.02, busy_w=300.0, idle_w=300.0)
    aligned = _window_powers(EnergyMeter(dev, min_window_s=0.0), 8, 0.05)
    random_phase = _window_powers(EnergyMeter(dev, min_window_s=0.0, tick_align=False), 8, 0.05)
    err_aligned = max(abs(p - 300.0) / 300.0 for p in aligned)
    err_random = max(abs(p - 300.0) / 300.0 for p in random_phase)
    assert err_aligned < 0.05, aligned  # read jitter only
    assert err_random > err_aligned  # up to a whole period (40 % of a 50 ms window)
    assert statistics.pstdev(aligned) < statistics.pstdev(random_phase)


def test_aligned_window_records_busy_time_and_the_idle_tail() -> None:
    dev = TickingGpu(period_s=0.02)
    with EnergyMeter(dev, min_window_s=0.0).window() as w:
        busy(0.03)
    r = w.reading
    assert r is not None and r.tick_aligned
    assert r.busy_s == pytest.approx(0.03, abs=0.01)
    assert 0.0 <= r.tail_s <= dev.period_s + 0.01
    assert r.elapsed_s == pytest.approx(r.busy_s + r.tail_s, abs=1e-3)


def test_run_until_trusted_reaches_the_duration_floor() -> None:
    dev = TickingGpu(period_s=0.01)
    meter = EnergyMeter(dev, min_window_s=0.15, min_window_periods=5)
    reading, repeats, _ = meter.run_until_trusted(
        lambda: busy(0.02), max_repeats=GPU["max_window_repeats"]
    )
    assert reading.trusted and reading.elapsed_s >= 0.15 and repeats >= 7


# ------------------------------------------------------------------ in-window clock truth


def test_throttled_work_breaks_the_cap_although_the_edges_read_the_cap() -> None:
    dev = TickingGpu(period_s=0.01)
    dev.throttled_under_load = True  # power-capped for all of its work
    with EnergyMeter(dev, min_window_s=0.0).window(1500) as w:
        busy(0.05)
    r = w.reading
    assert r is not None
    assert r.clock_source == "edges" and r.sm_clock_mean_mhz == 1500  # the edges look fine
    assert r.throttle_source == "fake" and r.throttle_power_s == pytest.approx(0.05, abs=0.01)
    assert r.throttled_fraction is not None and r.throttled_fraction > 0.9
    assert not r.cap_held


def test_unthrottled_window_at_the_cap_holds() -> None:
    dev = TickingGpu(period_s=0.01)
    with EnergyMeter(dev, min_window_s=0.0).window(1500) as w:
        busy(0.03)
    r = w.reading
    assert r is not None and r.cap_held and r.throttle_power_s == 0.0


def test_in_window_samples_under_load_override_the_edges() -> None:
    dev = TickingGpu(period_s=0.01)
    dev.samples_mhz = [1500.0, 1110.0, 1095.0]  # dropped under load, back at the edges
    with EnergyMeter(dev, min_window_s=0.0).window(1500) as w:
        busy(0.02)
    r = w.reading
    assert r is not None and r.clock_source == "samples"
    assert r.sm_clock_min_mhz == 1095.0 and not r.cap_held


def test_cap_held_rule_with_throttle_fraction() -> None:
    assert cap_held(1500, 1500, 1500, 1500, 15, throttled_fraction=0.0)
    assert cap_held(1500, 1500, 1500, 1500, 15, throttled_fraction=MAX_THROTTLED_FRACTION)
    assert not cap_held(1500, 1500, 1500, 1500, 15, throttled_fraction=0.2)
    assert cap_held(None, None, None, None, 15, throttled_fraction=1.0)  # no cap to hold


# ------------------------------------------------------------------ NVML throttle counters


@pytest.fixture
def fake_nvml(monkeypatch: pytest.MonkeyPatch) -> FakeNvml:
    return patch_nvml(monkeypatch, FakeNvml())


def test_nvml_throttle_counters_from_duration_fields(fake_nvml: FakeNvml) -> None:
    f = fake_nvml
    fake_ids = [getattr(f, n) for n in nvml_reads.THROTTLE_FIELDS]
    f.throttle_fields_ns = dict(
        zip(fake_ids, [2_000_000_000, 500_000_000, 0, 1_000_000], strict=True)
    )
    got = NvmlDevice(0).throttle_counters()
    assert got == ThrottleCounters("field_values", 2.5, 0.001)


def test_nvml_throttle_counters_fall_back_to_violation_status(fake_nvml: FakeNvml) -> None:
    f = fake_nvml
    f.violation_ns = {f.NVML_PERF_POLICY_POWER: 3_000_000_000, f.NVML_PERF_POLICY_THERMAL: 0}
    dev = NvmlDevice(0)
    assert dev.throttle_counters() == ThrottleCounters("violation_status", 3.0, 0.0)
    f.calls.clear()
    dev.throttle_counters()  # the working API is remembered: no second probe of the fields
    assert "nvmlDeviceGetFieldValues" not in f.names()


def test_nvml_without_throttle_counters_reads_none(fake_nvml: FakeNvml) -> None:
    dev = NvmlDevice(0)
    assert dev.throttle_counters() is None
    meter = EnergyMeter(dev, update_period_s=0.001, tick_align=False, min_window_s=0.0)
    with meter.window() as w:
        pass
    assert w.reading is not None and w.reading.throttle_source == "none"


# ------------------------------------------------------------------ simulated GPU


def test_simulated_counter_ticks_like_nvml(tmp_path: Path) -> None:
    dev = SimulatedDevice(
        0, state_dir=tmp_path, noise_rel=0.0, update_period_s=0.02, counter_ticks=True
    )
    seen = set()
    t_end = time.perf_counter() + 0.1
    while time.perf_counter() < t_end:
        seen.add(dev.energy_counter_j())
    # ~0.1 s of idle model time at 0.02 s per update: a handful of distinct values, not hundreds.
    assert 3 <= len(seen) <= 8


def test_simulated_power_cap_shows_in_the_window(tmp_path: Path) -> None:
    dev = SimulatedDevice(
        0,
        state_dir=tmp_path,
        noise_rel=0.0,
        update_period_s=0.01,
        utilization=1.0,
        counter_ticks=True,
    )
    dev.lock_sm_clocks(1980)
    dev.set_power_limit_w(300.0)  # a full-load H200 at 1980 MHz needs far more
    with EnergyMeter(dev, min_window_s=0.0).window(1980) as w:
        busy(0.05)
    r = w.reading
    assert r is not None and r.tick_aligned and r.throttle_source == "simulated"
    assert r.throttled_fraction is not None and r.throttled_fraction > 0.9
    assert not r.cap_held


# ------------------------------------------------------------------ back-to-back windows


def test_back_to_back_windows_share_their_edge() -> None:
    dev = TickingGpu(period_s=0.05)
    meter = EnergyMeter(dev, min_window_s=0.0)
    with meter.window() as first:
        busy(0.03)
    t_between = time.perf_counter()
    with meter.window() as second:
        busy(0.03)
    a, b = first.reading, second.reading
    assert a is not None and b is not None and a.tick_aligned and b.tick_aligned
    # The second window opened on the first one's closing tick: no wait, nothing lost between.
    assert second.t0_s == pytest.approx(first.t0_s + a.elapsed_s)
    assert time.perf_counter() - t_between < 0.03 + 0.05 + 0.07  # one closing wait, not two


def test_a_gap_after_a_window_means_a_fresh_opening_tick() -> None:
    dev = TickingGpu(period_s=0.02)
    meter = EnergyMeter(dev, min_window_s=0.0)
    with meter.window() as first:
        busy(0.01)
    time.sleep(0.05)  # an idle baseline, a cooldown: far more than the chain gap
    with meter.window() as second:
        busy(0.01)
    assert first.reading is not None and second.t0_s > first.t0_s + first.reading.elapsed_s + 0.04
