"""CPU backend: RAPL on a fake sysfs tree (zones, wrap, reset, unreadable) and the codecarbon
fallback."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

import llm_energy.device.cpu as cpu_mod
from helpers import CpuDevice, EnergyMeter
from llm_energy.device.cpu import (
    RaplReader,
    RaplUnavailableError,
    codecarbon_power_w,
    discover_rapl_zones,
)
from llm_energy.device.errors import ClockControlUnavailableError


def zone(path: Path, name: str, energy_uj: int, max_uj: int | None = 262_143_328_850) -> Path:
    path.mkdir(parents=True)
    (path / "name").write_text(name + "\n")
    (path / "energy_uj").write_text(f"{energy_uj}\n")
    if max_uj is not None:
        (path / "max_energy_range_uj").write_text(f"{max_uj}\n")
    return path


@pytest.fixture
def rapl(tmp_path: Path) -> Path:
    root = tmp_path / "powercap"
    pkg0 = zone(root / "intel-rapl:0", "package-0", 1_000_000)
    zone(pkg0 / "intel-rapl:0:0", "core", 500_000)  # inside the package count: skipped
    zone(pkg0 / "intel-rapl:0:1", "dram", 2_000_000)  # not inside the package: counted
    zone(root / "intel-rapl:1", "package-1", 3_000_000)
    zone(root / "intel-rapl:2", "psys", 9_000_000)  # platform: would double count
    # sysfs also lists sub-zones at the top level as links: they must not be counted twice
    os.symlink(pkg0 / "intel-rapl:0:0", root / "intel-rapl:0:0")
    return root


def bump(path: Path, delta_uj: int, max_uj: int | None = None) -> None:
    e = path / "energy_uj"
    v = int(e.read_text()) + delta_uj
    e.write_text(f"{v % max_uj if max_uj else v}\n")


def test_discovers_packages_and_dram_only(rapl: Path) -> None:
    names = [z.name for z in discover_rapl_zones(rapl)]
    assert names == ["intel-rapl:0:package-0", "intel-rapl:0:1:dram", "intel-rapl:1:package-1"]


def test_reader_sums_zone_deltas_in_joules(rapl: Path) -> None:
    r = RaplReader(rapl)
    assert r.read_total_j() == 0.0
    bump(rapl / "intel-rapl:0", 1_500_000)
    bump(rapl / "intel-rapl:0" / "intel-rapl:0:1", 250_000)
    bump(rapl / "intel-rapl:1", 250_000)
    bump(rapl / "intel-rapl:2", 99_000_000)  # psys: ignored
    assert r.read_total_j() == pytest.approx(2.0)


def test_reader_unwraps_with_max_range(tmp_path: Path) -> None:
    root = tmp_path / "pc"
    z = zone(root / "intel-rapl:0", "package-0", 999_000, max_uj=1_000_000)
    r = RaplReader(root)
    bump(z, 3_000, max_uj=1_000_000)  # 999000 -> 2000: wrapped
    assert int((z / "energy_uj").read_text()) == 2_000
    assert r.read_total_j() == pytest.approx(0.003)
    assert r.wraps == 1 and r.resets == 0


def test_reader_without_range_counts_a_reset(tmp_path: Path) -> None:
    root = tmp_path / "pc"
    z = zone(root / "intel-rapl:0", "package-0", 5_000_000, max_uj=None)
    r = RaplReader(root)
    (z / "energy_uj").write_text("1000\n")
    assert r.read_total_j() == pytest.approx(0.001) and r.resets == 1


def test_missing_or_unreadable_rapl(
    tmp_path: Path, rapl: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(RaplUnavailableError, match="does not exist"):
        discover_rapl_zones(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RaplUnavailableError, match="no intel-rapl"):
        discover_rapl_zones(tmp_path / "empty")
    real = cpu_mod._read_int

    def denied(path: Path) -> int:
        if path.name == "energy_uj":
            raise PermissionError(13, "Permission denied")
        return real(path)

    monkeypatch.setattr(cpu_mod, "_read_int", denied)  # tests run as root: chmod would not stop us
    with pytest.raises(RaplUnavailableError, match="not readable"):
        discover_rapl_zones(rapl)


def test_cpu_device_on_rapl(rapl: Path) -> None:
    dev = CpuDevice(0, rapl_root=rapl)
    assert dev.energy_source == "rapl" and dev.nominal_update_period_s() == 0.001
    bump(rapl / "intel-rapl:0", 4_000_000)
    assert dev.energy_counter_j() == pytest.approx(4.0)
    prov = dev.provenance()
    assert prov["energy_source"] == "rapl" and prov["cpu_model"] and len(prov["rapl_zones"]) == 3
    assert dev.uuid().startswith("CPU-") and dev.uuid() == CpuDevice(0, rapl_root=rapl).uuid()
    assert (
        not dev.can_control_clocks()
        and dev.sm_clock_mhz() is None
        and dev.supported_sm_clocks_mhz() == []
    )
    with pytest.raises(ClockControlUnavailableError, match="cpu backend"):
        dev.lock_sm_clocks(1200)


def test_cpu_device_falls_back_to_estimate(tmp_path: Path) -> None:
    calls: list[int] = []

    def estimator() -> float:
        calls.append(1)
        return 40.0

    dev = CpuDevice(0, rapl_root=tmp_path / "absent", power_estimator=estimator)
    assert dev.energy_source == "codecarbon-estimate" and dev.nominal_update_period_s() == 0.0
    assert calls == []  # measured lazily, not at open
    e0 = dev.energy_counter_j()
    time.sleep(0.05)
    e1 = dev.energy_counter_j()
    assert calls == [1] and dev.power_w() == 40.0
    assert (e1 - e0) == pytest.approx(40.0 * 0.05, rel=0.5)
    meter = EnergyMeter(dev)
    assert meter.measure_update_period_s() == 0.0
    with meter.window() as w:
        time.sleep(0.02)
    r = w.reading
    assert r is not None and r.energy_source == "codecarbon-estimate" and r.trusted
    assert r.avg_power_w == pytest.approx(40.0, rel=1e-6)
    assert dev.provenance()["rapl_unavailable_reason"]


def test_codecarbon_estimate_is_positive() -> None:
    # Real codecarbon, offline, nothing written to disk (~2 s).
    assert codecarbon_power_w("AUT", sample_s=0.1) > 0
