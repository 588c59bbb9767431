"""CO2-eq and CPU/RAM energy from codecarbon in offline mode, next to the GPU meter's energy.
codecarbon's own GPU share (NVML) is dropped for the meter's, so the GPU is never counted twice."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import Any

from llm_energy.units import j_to_kwh, kwh_to_j

log = logging.getLogger(__name__)


@dataclass
class EmissionsReport:
    country_iso_code: str
    cpu_energy_j: float | None
    ram_energy_j: float | None
    device_energy_j: float
    device_energy_source: str
    carbon_intensity_g_per_kwh: float | None
    co2_kg: float | None
    note: str
    counted_energy_j: float | None = None  # what co2_kg multiplies by the carbon intensity
    counted: str = ""  # which energies those are

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class EmissionsMeter:
    """codecarbon's OfflineEmissionsTracker as a context manager that never fails the run
    (emissions are extra). The tracker stops on exit even when the block raises, so no sampling
    thread outlives the run; `report` is set on exit."""

    def __init__(self, country_iso_code: str, region: str | None, enabled: bool) -> None:
        self.country, self.region, self.enabled = country_iso_code, region, enabled
        self.device_energy_j = 0.0
        self.device_energy_source = "none"
        self._report: EmissionsReport | None = None
        self.error: str | None = None
        self._tracker: Any = None

    def set_device_energy(self, energy_j: float, energy_source: str) -> None:
        """The meter's total over all windows, counted into CO2-eq when it is real GPU energy."""
        self.device_energy_j, self.device_energy_source = float(energy_j), energy_source

    def __enter__(self) -> EmissionsMeter:
        if self.enabled:
            self._start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._report = self._stop()

    @property
    def report(self) -> EmissionsReport:
        """What codecarbon measured; set when the `with` block ends."""
        if self._report is None:
            raise RuntimeError("EmissionsMeter.report is read before its with block ended")
        return self._report

    def _start(self) -> None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                from codecarbon import OfflineEmissionsTracker

                kwargs: dict[str, Any] = {
                    "country_iso_code": self.country,
                    "save_to_file": False,
                    "log_level": "error",
                    "measure_power_secs": 5,
                    "allow_multiple_runs": True,
                }
                if self.region:
                    kwargs["region"] = self.region
                self._tracker = OfflineEmissionsTracker(**kwargs)
                self._tracker.start()
        except Exception as exc:  # codecarbon is optional for the measurement itself
            self.error = f"codecarbon unavailable: {type(exc).__name__}: {exc}"
            log.warning("%s; emissions will not be reported", self.error)
            self._tracker = None

    def _stop(self) -> EmissionsReport:
        cpu_j = ram_j = intensity = co2 = counted_j = None
        counted = ""
        note = self.error or ("disabled" if not self.enabled else "")
        tracker, self._tracker = self._tracker, None  # stopped at most once
        if tracker is not None:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    tracker.stop()
                data = tracker.final_emissions_data
                cpu_j, ram_j = kwh_to_j(data.cpu_energy), kwh_to_j(data.ram_energy)
                total_kwh = float(data.energy_consumed)
                intensity = 1000.0 * float(data.emissions) / total_kwh if total_kwh > 0 else None
                # Add the device's energy only when it is real GPU energy: a CPU meter's reading is
                # codecarbon's own CPU share again, and simulated joules were never drawn.
                real_gpu = self.device_energy_source == "nvml"
                counted_j = cpu_j + ram_j + (self.device_energy_j if real_gpu else 0.0)
                counted = "CPU + RAM over the whole run (codecarbon)" + (
                    " + GPU in the measured windows (meter)"
                    if real_gpu
                    else f"; the {self.device_energy_source} device energy is not added "
                    "(a CPU estimate repeats codecarbon's CPU share; simulated joules were never drawn)"
                )
                co2 = None if intensity is None else intensity * j_to_kwh(counted_j) / 1000.0
                note = "codecarbon offline" + (
                    "; GPU energy from the project's meter (codecarbon's GPU share dropped)"
                    if real_gpu
                    else ""
                )
            except Exception as exc:
                note = f"codecarbon failed at stop: {type(exc).__name__}: {exc}"
                log.warning(note)
        dev_j, dev_source = self.device_energy_j, self.device_energy_source
        return EmissionsReport(
            self.country, cpu_j, ram_j, dev_j, dev_source, intensity, co2, note, counted_j, counted
        )
