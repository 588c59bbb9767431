"""EmissionsMeter: CO2-eq arithmetic and codecarbon's tracker always stopped (a fake tracker)."""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass
from typing import Any, ClassVar

import pytest

from llm_energy.energy.emissions import EmissionsMeter
from llm_energy.units import J_PER_KWH


@dataclass
class _Data:
    cpu_energy: float  # kWh, as codecarbon reports
    ram_energy: float
    energy_consumed: float
    emissions: float  # kg CO2-eq


class _FakeTracker:
    instances: ClassVar[list[_FakeTracker]] = []
    data: ClassVar[_Data] = _Data(
        cpu_energy=0.001, ram_energy=0.0005, energy_consumed=0.0035, emissions=0.0007
    )

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.started = self.stopped = 0
        _FakeTracker.instances.append(self)

    def start(self) -> None:
        self.started += 1

    def stop(self) -> None:
        self.stopped += 1

    @property
    def final_emissions_data(self) -> _Data:
        return self.data


@pytest.fixture
def fake_codecarbon(monkeypatch: pytest.MonkeyPatch) -> type[_FakeTracker]:
    # A stand-in module: the real codecarbon is never imported, so no sampling thread starts.
    module = types.ModuleType("codecarbon")
    module.OfflineEmissionsTracker = _FakeTracker  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "codecarbon", module)
    _FakeTracker.instances = []
    return _FakeTracker


def test_co2_counts_cpu_ram_and_real_gpu_energy(fake_codecarbon: type[_FakeTracker]) -> None:
    gpu_j = 0.002 * J_PER_KWH
    with EmissionsMeter("AUT", "vienna", enabled=True) as emissions:
        emissions.set_device_energy(gpu_j, "nvml")
    (tracker,) = fake_codecarbon.instances
    assert tracker.kwargs["country_iso_code"] == "AUT" and tracker.kwargs["region"] == "vienna"
    report = emissions.report
    assert report.cpu_energy_j == pytest.approx(0.001 * J_PER_KWH)
    assert report.ram_energy_j == pytest.approx(0.0005 * J_PER_KWH)
    # 0.0007 kg over 0.0035 kWh = 200 g/kWh; counted 0.001 + 0.0005 + 0.002 kWh -> 0.0007 kg.
    assert report.carbon_intensity_g_per_kwh == pytest.approx(200.0)
    assert report.co2_kg == pytest.approx(0.0007)
    assert report.device_energy_j == gpu_j and report.device_energy_source == "nvml"
    # the report states the energy it multiplies, and it is the one used
    assert report.counted_energy_j == pytest.approx(0.0035 * J_PER_KWH)
    assert report.co2_kg == pytest.approx(report.counted_energy_j / J_PER_KWH * 200.0 / 1000)
    assert "+ GPU in the measured windows (meter)" in report.counted
    assert "GPU energy from the project's meter" in report.note


@pytest.mark.parametrize("source", ["codecarbon-estimate", "rapl", "simulated"])
def test_co2_leaves_out_energy_that_is_not_real_gpu_energy(
    fake_codecarbon: type[_FakeTracker], source: str
) -> None:
    with EmissionsMeter("AUT", None, enabled=True) as emissions:
        emissions.set_device_energy(1234.0, source)
    # CPU + RAM only: 0.0015 kWh at 200 g/kWh.
    assert emissions.report.co2_kg == pytest.approx(0.0003)
    assert emissions.report.counted_energy_j == pytest.approx(0.0015 * J_PER_KWH)
    assert f"the {source} device energy is not added" in emissions.report.counted
    assert emissions.report.note == "codecarbon offline"  # no GPU energy was counted
    assert "region" not in fake_codecarbon.instances[0].kwargs


def test_tracker_is_stopped_when_the_block_raises(fake_codecarbon: type[_FakeTracker]) -> None:
    emissions = EmissionsMeter("AUT", None, enabled=True)
    with pytest.raises(RuntimeError, match="run failed"), emissions:
        raise RuntimeError("run failed")
    (tracker,) = fake_codecarbon.instances
    assert (tracker.started, tracker.stopped) == (1, 1)
    assert emissions.report.device_energy_j == 0.0  # set on exit all the same


def test_disabled_never_creates_a_tracker(fake_codecarbon: type[_FakeTracker]) -> None:
    with EmissionsMeter("AUT", None, enabled=False) as emissions:
        pass
    assert fake_codecarbon.instances == []
    assert emissions.report.note == "disabled" and emissions.report.co2_kg is None


def test_codecarbon_failing_to_start_does_not_fail_the_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Broken:
        def __init__(self, **kwargs: Any) -> None:
            raise OSError("no power readings")

    module = types.ModuleType("codecarbon")
    module.OfflineEmissionsTracker = Broken  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "codecarbon", module)
    with EmissionsMeter("AUT", None, enabled=True) as emissions:
        emissions.set_device_energy(5.0, "nvml")
    assert emissions.report.note.startswith("codecarbon unavailable: OSError")
    assert emissions.report.co2_kg is None and emissions.report.device_energy_j == 5.0


def test_report_before_exit_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="before its with block ended"):
        _ = EmissionsMeter("AUT", None, enabled=False).report
