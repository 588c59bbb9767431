"""EnergyMeter: windows, trust, repeats, counter reset/wrap, clock statistics, idle baseline."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest

from fake_nvml import FakeNvml, Sample
from helpers import EnergyMeter, FakeGpu, SimulatedDevice, busy, patch_nvml
from llm_energy.device.base import Device
from llm_energy.device.nvml import NvmlDevice
from llm_energy.energy.window import cap_held
from llm_energy.sim import model as simmodel

H200 = simmodel.get_gpu_model("h200")


class ScriptedDevice(FakeGpu):
    """Counter values come from a script, one per read; clocks and reasons are fixed."""

    label = "scripted"

    def __init__(
        self, counter: list[float], *, max_j: float | None = None, period_s: float | None = 0.01
    ) -> None:
        super().__init__(0)
        self.counter = list(counter)
        self.max_j = max_j
        self.period_s = period_s
        self.clock = 1200
        self.reasons = 0
        self.samples: list[float] | None = None
        self.synced = 0
        self.busy_calls: list[str] = []

    def energy_counter_j(self) -> float:
        return self.counter.pop(0)

    def energy_counter_max_j(self) -> float | None:
        return self.max_j

    def nominal_update_period_s(self) -> float | None:
        return self.period_s

    def power_w(self) -> float:
        return 100.0

    def synchronize(self) -> None:
        self.synced += 1

    def window_begin(self) -> None:
        self.busy_calls.append("begin")

    def window_end(self) -> None:
        self.busy_calls.append("end")

    def sm_clock_mhz(self) -> int | None:
        return self.clock

    def clock_event_reasons(self) -> int:
        return self.reasons

    def sm_clock_samples_mhz(self, since_us: int) -> list[float] | None:
        return self.samples


def plain(dev: Device, **kw: object) -> EnergyMeter:
    """The edge-read meter of these tests: no tick waits, the old 10-period rule."""
    kw.setdefault("tick_align", False)
    kw.setdefault("min_window_s", 0.0)
    kw.setdefault("min_window_periods", 10)
    return EnergyMeter(dev, **kw)  # type: ignore[arg-type]


def sim(tmp_path: Path, **kw: object) -> SimulatedDevice:
    kw.setdefault("noise_rel", 0.0)
    kw.setdefault("update_period_s", 0.01)
    return SimulatedDevice(0, state_dir=tmp_path, **kw)  # type: ignore[arg-type]


# ------------------------------------------------------------------------ simulated windows


def test_window_on_simulated_busy_loop(tmp_path: Path) -> None:
    dev = sim(tmp_path)
    dev.lock_sm_clocks(1200)
    meter = plain(dev)
    real0 = time.perf_counter()
    with meter.window(1200) as w:
        busy(0.15)
    real = time.perf_counter() - real0
    r = w.reading
    assert r is not None and r.trusted and not r.counter_reset and r.cap_held
    assert r.energy_source == "simulated" and r.min_trusted_s == pytest.approx(0.1)
    assert r.sm_clock_mean_mhz == 1200 and r.sm_clock_min_mhz == 1200 and r.mem_clock_mhz == 3201
    assert r.elapsed_s == pytest.approx(real * simmodel.latency_scale(H200, 1200, 0.6), rel=0.05)
    # The closing edge is read after window_end: a few µs of idle tail dilute the power.
    assert r.avg_power_w == pytest.approx(simmodel.power_w(H200, 1200, 0.15), rel=1e-3)
    assert r.clock_event_reasons == 0x2 and r.clock_source == "edges"
    assert r.temperature_c is not None and r.temperature_c > 25
    assert set(r.to_dict()) >= {
        "energy_j",
        "elapsed_s",
        "cap_held",
        "trusted",
        "counter_reset",
        "min_trusted_s",
    }


def test_short_window_untrusted_and_run_until_trusted_repeats(tmp_path: Path) -> None:
    dev = sim(tmp_path, update_period_s=0.02)  # trusted from 0.2 s of model time
    meter = plain(dev)
    with meter.window() as w:
        busy(0.005)
    assert w.reading is not None and not w.reading.trusted
    calls: list[int] = []

    def work() -> str:
        calls.append(1)
        busy(0.01)
        return "tokens"

    reading, repeats, last = meter.run_until_trusted(work, max_repeats=1000)
    assert reading.trusted and last == "tokens" and repeats == len(calls) > 5
    assert reading.elapsed_s >= reading.min_trusted_s


def test_run_until_trusted_stops_at_max_repeats(tmp_path: Path) -> None:
    meter = plain(sim(tmp_path, update_period_s=1.0))
    reading, repeats, _ = meter.run_until_trusted(lambda: busy(0.001), max_repeats=3)
    assert repeats == 3 and not reading.trusted
    with pytest.raises(ValueError):
        meter.run_until_trusted(lambda: None, max_repeats=0)


def test_idle_power_is_model_idle_at_locked_clock(tmp_path: Path) -> None:
    dev = sim(tmp_path)
    meter = plain(dev)
    assert meter.measure_idle_power_w(0.02) == pytest.approx(126.6, rel=1e-9)  # unlocked: 345 MHz
    dev.lock_sm_clocks(1500)
    assert meter.measure_idle_power_w(0.02) == pytest.approx(
        simmodel.idle_power_w(H200, 1500), rel=1e-9
    )
    idle = meter.measure_idle(0.02)
    assert idle.clock_event_reasons & 0x1 and idle.sm_clock_mean_mhz == 1500


def test_exception_in_window_ends_busy_state(tmp_path: Path) -> None:
    dev = sim(tmp_path)
    with pytest.raises(RuntimeError), plain(dev).window():
        raise RuntimeError("boom")
    assert not dev._busy and dev.sm_clock_mhz() == 345


def test_power_capped_window_does_not_hold_the_cap(tmp_path: Path) -> None:
    dev = sim(tmp_path, utilization=1.0)
    dev.lock_sm_clocks(1980)
    dev.set_power_limit_w(300)
    with plain(dev).window(1980) as w:
        busy(0.01)
    assert w.reading is not None and not w.reading.cap_held and w.reading.clock_event_reasons & 0x4


# ------------------------------------------------------------------------ counter anomalies


def test_counter_reset_is_flagged_untrusted() -> None:
    dev = ScriptedDevice([5000.0, 10.0])
    with plain(dev).window() as w:
        time.sleep(0.12)
    r = w.reading
    assert r is not None and r.counter_reset and not r.trusted and math.isnan(r.energy_j)


def test_counter_wrap_with_known_range() -> None:
    dev = ScriptedDevice([990.0, 15.0], max_j=1000.0)
    with plain(dev).window() as w:
        time.sleep(0.11)
    r = w.reading
    assert r is not None and not r.counter_reset and r.trusted and r.energy_j == pytest.approx(25.0)


def test_window_synchronizes_and_marks_busy_at_both_edges() -> None:
    dev = ScriptedDevice([0.0, 1.0])
    with plain(dev).window():
        assert dev.synced == 1 and dev.busy_calls == ["begin"]
    assert dev.synced == 2 and dev.busy_calls == ["begin", "end"]


# ------------------------------------------------------------------------ clock statistics / cap


def test_driver_samples_preferred_over_edges() -> None:
    dev = ScriptedDevice([0.0, 1.0])
    dev.samples = [1200.0, 1185.0, 1200.0, 1215.0]
    with plain(dev).window(1200) as w:
        pass
    r = w.reading
    assert r is not None and r.clock_source == "samples"
    assert (
        r.sm_clock_mean_mhz == pytest.approx(1200.0) and r.sm_clock_min_mhz == 1185.0 and r.cap_held
    )


def test_idle_edge_reads_are_dropped_when_a_busy_read_exists() -> None:
    class Edges(ScriptedDevice):
        def __init__(self) -> None:
            super().__init__([0.0, 1.0])
            self.reads = [(345, 0x1), (1980, 0x0)]  # start: idle after sync; end: busy

        def sm_clock_mhz(self) -> int | None:
            self.clock, self.reasons = self.reads.pop(0)
            return self.clock

    dev = Edges()
    with plain(dev).window(None) as w:
        pass
    r = w.reading
    assert r is not None and r.sm_clock_mean_mhz == 1980 and r.sm_clock_min_mhz == 1980
    assert r.clock_event_reasons == 0  # the start edge's idle bit is masked


@pytest.mark.parametrize(
    ("cap", "mean", "lo", "hi", "held"),
    [
        (None, None, None, None, True),
        (1200, 1200.0, 1200.0, 1200.0, True),
        (1200, 1195.0, 1185.0, 1215.0, True),  # within one 15 MHz step
        (1200, 1150.0, 1100.0, 1200.0, False),  # throttled below the cap
        (1200, 1400.0, 1200.0, 1980.0, False),  # not capped at all
        (1200, None, None, None, False),  # no clock information
    ],
)
def test_cap_held_rule(
    cap: int | None, mean: float | None, lo: float | None, hi: float | None, held: bool
) -> None:
    assert cap_held(cap, mean, lo, hi, 15) is held


# ------------------------------------------------------------------------ update period


def test_measure_update_period_of_a_stepping_counter() -> None:
    class Stepping(ScriptedDevice):
        def energy_counter_j(self) -> float:
            return float(int(time.perf_counter() / 0.02))  # changes every 20 ms

    meter = EnergyMeter(Stepping([], period_s=None))
    assert meter.measure_update_period_s(max_s=2.0, changes=4) == pytest.approx(0.02, abs=0.008)
    # Defaults: at least 20 update periods and at least 2 s.
    assert meter.min_trusted_s == pytest.approx(max(20 * meter.update_period_s, 2.0))


def test_frozen_counter_falls_back_to_default_period() -> None:
    class Frozen(ScriptedDevice):
        def energy_counter_j(self) -> float:
            return 1.0

    assert EnergyMeter(Frozen([], period_s=None)).measure_update_period_s(max_s=0.05) == 0.1


def test_nominal_period_is_returned_without_polling(tmp_path: Path) -> None:
    assert EnergyMeter(sim(tmp_path, update_period_s=0.1)).measure_update_period_s() == 0.1
    with pytest.raises(ValueError):
        EnergyMeter(sim(tmp_path), min_window_periods=0.5)


# ------------------------------------------------------------------------ through the NVML backend


def test_window_through_fake_nvml(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = patch_nvml(monkeypatch, FakeNvml())
    dev = NvmlDevice(0)
    meter = plain(dev, update_period_s=0.001)
    fake.sm_clock = 1200
    fake.reasons = 0
    fake.samples = [Sample(2**62, 1200), Sample(2**62 + 1, 1185)]  # "after" the window start
    fake.energy_mj = 1_000_000
    fake.energy_step_mj = 61_000  # +61 J between the two edge reads
    with meter.window(1200) as w:
        time.sleep(0.02)
    r = w.reading
    assert r is not None and r.energy_j == pytest.approx(61.0) and r.energy_source == "nvml"
    assert r.clock_source == "samples" and r.sm_clock_min_mhz == 1185 and r.cap_held and r.trusted
    assert ("nvmlDeviceGetSamples" in fake.names()) and fake.setter_calls() == []
