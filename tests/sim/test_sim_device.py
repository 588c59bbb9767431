"""Simulated backend end to end, including crash safety across real processes."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import (
    CHILD_SETTINGS,
    GPU,
    ClockSession,
    EnergyMeter,
    SimulatedDevice,
    busy,
    open_device,
    read_journal,
    sim,
)
from llm_energy.control.recovery import gpu_status, recover_pending
from llm_energy.device.base import ClockState
from llm_energy.energy.timeline import PowerTimeline
from llm_energy.sim import model as simmodel

H200 = simmodel.get_gpu_model("h200")


# ------------------------------------------------------------------------ device behaviour


def test_identity_and_defaults(tmp_path: Path) -> None:
    dev = open_device("simulated", 0, state_dir=tmp_path, sim={"gpu": "a100"})
    assert dev.energy_source == "simulated" and dev.backend == "simulated"
    assert dev.uuid() == simmodel.fake_uuid("a100", 0) and "A100" in dev.name()
    assert dev.supported_sm_clocks_mhz()[0] == 1410 and dev.sm_step_mhz() == 15
    assert dev.supported_mem_clocks_mhz() == [1215]
    assert dev.can_control_clocks() and not dev.requires_privilege
    assert dev.clock_state() == ClockState(None, None, 400.0)
    prov = dev.provenance()
    assert (
        prov["simulated_gpu"] == "a100"
        and prov["model"]["alpha"] == 0.6
        and prov["power_limit_w"] == 400.0
    )


def test_idle_and_busy_clocks(tmp_path: Path) -> None:
    dev = sim(tmp_path)
    assert dev.sm_clock_mhz() == 345 and dev.clock_event_reasons() == 0x1  # unlocked idle
    dev.window_begin()
    assert dev.sm_clock_mhz() == 1980 and dev.clock_event_reasons() == 0  # boost under load
    dev.window_end()
    dev.lock_sm_clocks(1200)
    assert dev.sm_clock_mhz() == 1200  # a lock holds even at idle
    assert dev.clock_event_reasons() == 0x1 | 0x2
    assert dev.power_w() == pytest.approx(simmodel.idle_power_w(H200, 1200))
    assert dev.temperature_c() == pytest.approx(simmodel.temperature_c(H200, dev.power_w()))


def test_model_clock_and_energy_follow_physics(tmp_path: Path) -> None:
    dev = sim(tmp_path, alpha=0.6, utilization=0.15)
    dev.lock_sm_clocks(990)
    e0, t0 = dev.read_counter()
    real0 = time.perf_counter()
    dev.window_begin()
    busy(0.1)
    dev.window_end()
    real = time.perf_counter() - real0
    e1, t1 = dev.read_counter()
    scale = simmodel.latency_scale(H200, 990, 0.6)  # 1.6
    assert t1 - t0 == pytest.approx(real * scale, rel=0.05)
    assert (e1 - e0) / (t1 - t0) == pytest.approx(simmodel.power_w(H200, 990, 0.15), rel=0.02)


def test_power_limit_caps_the_effective_clock(tmp_path: Path) -> None:
    dev = sim(tmp_path, utilization=1.0)
    dev.set_power_limit_w(300)
    dev.window_begin()
    f = dev.sm_clock_mhz()
    assert f is not None and f < 1980 and dev.power_w() <= 300
    assert dev.clock_event_reasons() & 0x4  # SW power cap
    dev.window_end()
    with pytest.raises(Exception, match="allows 200-700 W"):
        dev.set_power_limit_w(800)


def test_lock_range_is_checked(tmp_path: Path) -> None:
    dev = sim(tmp_path)
    with pytest.raises(Exception, match="supports 345-1980 MHz"):
        dev.lock_sm_clocks(3000)
    with pytest.raises(Exception, match="memory clock"):
        dev.lock_mem_clocks(1000)


def test_seeded_noise_is_deterministic(tmp_path: Path) -> None:
    def draws(seed: int) -> list[tuple[float, float]]:
        d = SimulatedDevice(0, state_dir=tmp_path / f"s{seed}", seed=seed, noise_rel=0.05)
        out = []
        for _ in range(4):
            d.window_begin()
            out.append((d._power_noise, d._time_noise))
            d.window_end()
        return out

    assert draws(1) == draws(1)
    assert draws(1) != draws(2)
    assert len(set(draws(1))) == 4  # variance between windows


def test_invalid_parameters(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="alpha"):
        SimulatedDevice(0, state_dir=tmp_path, alpha=1.5)
    with pytest.raises(ValueError, match="unknown simulated GPU"):
        open_device("simulated", 0, state_dir=tmp_path, sim={"gpu": "v100"})
    with pytest.raises(ValueError, match="backend"):
        open_device("rocm", 0, state_dir=tmp_path)


def test_sweep_end_to_end_power_falls_latency_rises(tmp_path: Path) -> None:
    dev = sim(tmp_path, update_period_s=0.005)
    meter = EnergyMeter(dev)
    results = {}
    with ClockSession(dev, "lock", journal_dir=tmp_path / "j") as s:
        for f in (1980, 1200, 600):
            applied = s.set_sm_cap(f)
            reading, repeats, _ = meter.run_until_trusted(
                lambda: busy(0.01), applied, max_repeats=GPU["max_window_repeats"]
            )
            assert reading.trusted and reading.cap_held and reading.sm_clock_mean_mhz == f
            results[f] = (reading.avg_power_w, reading.elapsed_s / repeats)
    assert results[1980][0] > results[1200][0] > results[600][0]
    assert results[1980][1] < results[1200][1] < results[600][1]
    assert dev.clock_state().sm_locked_mhz is None


def test_power_timeline_runs_in_another_process(tmp_path: Path) -> None:
    dev = sim(tmp_path)
    dev.lock_sm_clocks(1200)
    out = tmp_path / "timeline.csv"
    with pytest.raises(ValueError, match=r">= 0\.1"):
        PowerTimeline.for_device(dev, out, period_s=0.01)
    with PowerTimeline.for_device(dev, out, period_s=0.1) as tl:
        pid = tl._proc.pid if tl._proc else None
        assert pid is not None and pid != os.getpid()
        dev.window_begin()  # the child sees the busy marker
        time.sleep(0.45)
        dev.window_end()
    rows = list(csv.DictReader(out.open()))
    assert len(rows) >= 3 and list(rows[0]) == ["t_s", "power_w", "sm_clock_mhz"]
    powers = {round(float(r["power_w"]), 1) for r in rows}
    assert round(simmodel.power_w(H200, 1200, 0.15), 1) in powers
    assert all(r["sm_clock_mhz"] == "1200" for r in rows)


# ------------------------------------------------------------------------ crash safety across processes

CHILD = (
    CHILD_SETTINGS
    + r"""
import sys, time
from pathlib import Path
from llm_energy.control.open import open_device
from llm_energy.control.session import ClockSession
from llm_energy.energy.meter import EnergyMeter

state, journal, marker, mode = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]
dev = open_device(DeviceSpec.from_dict(DEVICE).but(
    backend="simulated", index=0, state_dir=state, sim={"noise_rel": 0.0, "update_period_s": 0.01}))
if mode == "atexit":
    s = ClockSession(dev, "lock", 900, 3201, journal_dir=journal, **SESSION)
    s.__enter__()
    marker.write_text("locked")
    sys.exit(0)  # no __exit__: only the atexit hook can restore
meter = EnergyMeter(dev, **METER)
with ClockSession(dev, "lock", 900, 3201, journal_dir=journal, **SESSION) as s:
    with meter.window(s.applied_sm_mhz):
        marker.write_text("locked")
        time.sleep(60)
"""
)

ORIGINAL = ClockState(1500, 2201, 700.0)  # deliberately not the driver default


def _start_child(
    tmp_path: Path, mode: str = "window"
) -> tuple[subprocess.Popen[str], SimulatedDevice, Path]:
    state, journal, marker = tmp_path / "state", tmp_path / "journal", tmp_path / "locked.marker"
    dev = sim(state)
    dev.lock_sm_clocks(ORIGINAL.sm_locked_mhz or 0)
    dev.lock_mem_clocks(ORIGINAL.mem_locked_mhz or 0)
    assert dev.clock_state() == ORIGINAL
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(state), str(journal), str(marker), mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while not marker.exists():
        if proc.poll() is not None:
            break
        assert time.monotonic() < deadline, "child never locked"
        time.sleep(0.01)
    return proc, dev, journal


def test_sigkill_mid_window_leaves_journal_then_next_session_restores_original(
    tmp_path: Path,
) -> None:
    proc, dev, journal = _start_child(tmp_path)
    assert dev.clock_state() == ClockState(900, 3201, 700.0)  # the cap is in force
    proc.kill()
    proc.communicate(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    # Killed without a chance to clean up: the cap is still set and the journal pending.
    assert dev.clock_state() == ClockState(900, 3201, 700.0)
    pending = read_journal(dev, journal)
    assert pending is not None and pending["pid"] == proc.pid
    assert ClockState.from_dict(pending["original"]) == ORIGINAL
    assert pending["changed"] == {"sm": True, "mem": True, "power_limit": False}
    assert gpu_status(dev, journal)["journal_owner_alive"] is False
    assert dev.power_w() == pytest.approx(
        simmodel.idle_power_w(H200, 900)
    )  # dead pid's busy marker ignored
    # The next session repairs first, then works from the true original.
    with ClockSession(dev, "lock", 1200, journal_dir=journal) as s:
        assert s.recovered_message is not None and "1500 MHz" in s.recovered_message
        assert s.original == ORIGINAL
        assert dev.clock_state().sm_locked_mhz == 1200
    assert dev.clock_state() == ORIGINAL
    assert read_journal(dev, journal) is None


def test_sigkill_then_recover_pending(tmp_path: Path) -> None:
    proc, dev, journal = _start_child(tmp_path)
    proc.kill()
    proc.communicate(timeout=10)
    assert recover_pending(dev, journal) is not None
    assert dev.clock_state() == ORIGINAL and read_journal(dev, journal) is None


def test_sigterm_handler_restores_and_exits_with_signal(tmp_path: Path) -> None:
    proc, dev, journal = _start_child(tmp_path)
    assert dev.clock_state().sm_locked_mhz == 900
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=20)
    # 128 + SIGTERM, as a shell reports a SIGTERM death, after unwinding every `with` block
    # (records written so far are kept); see control/guard.py.
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "restoring the original GPU clocks" in err
    assert dev.clock_state() == ORIGINAL
    assert read_journal(dev, journal) is None


def test_sigint_in_child_restores(tmp_path: Path) -> None:
    proc, dev, journal = _start_child(tmp_path)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode != 0 and "KeyboardInterrupt" in err
    assert dev.clock_state() == ORIGINAL and read_journal(dev, journal) is None


def test_atexit_restores_when_session_is_not_closed(tmp_path: Path) -> None:
    proc, dev, journal = _start_child(tmp_path, mode="atexit")
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert dev.clock_state() == ORIGINAL and read_journal(dev, journal) is None


def test_device_spec_is_one_value_that_round_trips_for_another_process(tmp_path: Path) -> None:
    import json

    from llm_energy.control.open import DeviceSpec

    spec = DeviceSpec.for_tool("simulated", 1, tmp_path).but(
        exclusive=True, indices=[1, 0], sim={"gpu": "a100", "count": 2}
    )
    again = DeviceSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec and again.indices == (1, 0) and again.sim.gpu == "a100"
    assert again.sim.alpha == 0.0 and again.state_dir == tmp_path  # untouched fields kept
    with pytest.raises(ValueError, match="unknown device backend 'rocm'"):
        spec.but(backend="rocm")
