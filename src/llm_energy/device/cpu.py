"""CPU backend: RAPL energy counters when readable, else codecarbon's power estimate × time; no
clock control (docs/device.md)."""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import re
import socket
import time
import uuid as uuid_mod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llm_energy.device.base import Device
from llm_energy.device.errors import DeviceNotFoundError
from llm_energy.units import energy_j, uj_to_j

log = logging.getLogger(__name__)

DEFAULT_RAPL_ROOT = Path("/sys/class/powercap")
RAPL_UPDATE_PERIOD_S = 0.001  # RAPL MSRs update about every millisecond
_PACKAGE_RE = re.compile(r"^intel-rapl:\d+$")
_SUBZONE_RE = re.compile(r"^intel-rapl:\d+:\d+$")


class RaplUnavailableError(OSError):
    """RAPL is absent or unreadable (internal: the cpu backend then falls back to codecarbon)."""


@dataclass(frozen=True)
class RaplZone:
    name: str
    energy_path: Path
    max_range_uj: int | None


def _read_int(path: Path) -> int:
    return int(path.read_text().strip())


def discover_rapl_zones(root: str | Path = DEFAULT_RAPL_ROOT) -> list[RaplZone]:
    """Package zones and their `dram` sub-zones under `root`; raises RaplUnavailableError."""
    root = Path(root)
    if not root.is_dir():
        raise RaplUnavailableError(f"{root} does not exist (no RAPL powercap interface)")
    zones: list[RaplZone] = []
    for pkg in sorted(p for p in root.iterdir() if _PACKAGE_RE.match(p.name)):
        candidates = [pkg, *sorted(p for p in pkg.iterdir() if _SUBZONE_RE.match(p.name))]
        for zdir in candidates:
            try:
                name = (zdir / "name").read_text().strip()
            except OSError:
                name = zdir.name
            if zdir is not pkg and name != "dram":
                continue  # core/uncore sub-zones are already inside the package count
            if name == "psys":
                continue  # platform zone contains the packages: would double count
            energy = zdir / "energy_uj"
            if not energy.exists():
                continue
            try:
                max_range: int | None = _read_int(zdir / "max_energy_range_uj")
            except (OSError, ValueError):
                max_range = None
            zones.append(RaplZone(f"{zdir.name}:{name}", energy, max_range))
    if not zones:
        raise RaplUnavailableError(f"no intel-rapl:* zone with energy_uj under {root}")
    for z in zones:
        try:
            _read_int(z.energy_path)
        except PermissionError as err:
            raise RaplUnavailableError(
                f"{z.energy_path} is not readable ({err.strerror}; root-only since Linux 5.10)"
            ) from err
        except (OSError, ValueError) as err:
            raise RaplUnavailableError(f"{z.energy_path} cannot be read: {err}") from err
    return zones


class RaplReader:
    """Monotonic total energy over all zones, unwrapping each zone's counter."""

    def __init__(self, root: str | Path = DEFAULT_RAPL_ROOT) -> None:
        self.zones = discover_rapl_zones(root)
        self._last = [_read_int(z.energy_path) for z in self.zones]
        self._total_uj = 0.0
        self.wraps = 0
        self.resets = 0

    def read_total_j(self) -> float:
        """Energy since construction, in J. A wrap adds the zone's range; without a known
        range a backwards step is counted as a reset (counting restarts from the new value)."""
        for i, z in enumerate(self.zones):
            raw = _read_int(z.energy_path)
            delta = raw - self._last[i]
            if delta < 0:
                if z.max_range_uj:
                    delta += z.max_range_uj
                    self.wraps += 1
                else:
                    delta = raw
                    self.resets += 1
            self._last[i] = raw
            self._total_uj += delta
        return uj_to_j(self._total_uj)


def cpu_model_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def codecarbon_power_w(country_iso_code: str, sample_s: float = 0.5) -> float:
    """codecarbon's CPU + RAM power estimate (W) from TDP tables and load, read once over
    `sample_s`: as good as its per-window task API, and free per window."""
    try:
        from codecarbon import OfflineEmissionsTracker
    except ImportError as err:
        raise DeviceNotFoundError(
            "Cannot estimate CPU energy",
            f"RAPL is unreadable and codecarbon is not importable ({err})",
            "pip install codecarbon>=3, or run with readable RAPL.",
        ) from err
    cc_log = logging.getLogger("codecarbon")
    old_level = cc_log.level
    cc_log.setLevel(logging.ERROR)  # its INFO/WARNING chatter is not ours to print
    try:
        tracker = OfflineEmissionsTracker(
            country_iso_code=country_iso_code, save_to_file=False, log_level="error"
        )
        tracker.start()
        time.sleep(sample_s)
        tracker.stop()
        data = tracker.final_emissions_data
        power = float(data.cpu_power) + float(data.ram_power)
    except Exception as err:
        raise DeviceNotFoundError(
            "Cannot estimate CPU energy",
            f"RAPL is unreadable and codecarbon failed ({type(err).__name__}: {err})",
            "Make RAPL readable (root) or fix the codecarbon installation.",
        ) from err
    finally:
        cc_log.setLevel(old_level)
    if not power > 0:
        raise DeviceNotFoundError(
            "Cannot estimate CPU energy",
            f"codecarbon estimated {power} W",
            "Make RAPL readable (root).",
        )
    return power


class CpuDevice(Device):
    backend = "cpu"

    def __init__(
        self,
        index: int,
        *,
        country_iso_code: str,
        rapl_root: str | Path = DEFAULT_RAPL_ROOT,
        power_estimator: Callable[[], float] | None = None,
    ) -> None:
        super().__init__(index)
        self.rapl_root = Path(rapl_root)
        self.country_iso_code = country_iso_code
        self._rapl: RaplReader | None = None
        self._rapl_error: str | None = None
        try:
            self._rapl = RaplReader(self.rapl_root)
        except RaplUnavailableError as err:
            self._rapl_error = str(err)
            log.info("RAPL unavailable (%s); CPU energy will be codecarbon's estimate", err)
        self._estimator = power_estimator or (lambda: codecarbon_power_w(country_iso_code))
        self._estimate_w: float | None = None
        self._estimate_t0_s = 0.0
        self._last_power_read: tuple[float, float] | None = None
        self._model = cpu_model_name()

    @property
    def energy_source(self) -> str:
        return "rapl" if self._rapl is not None else "codecarbon-estimate"

    def uuid(self) -> str:
        key = f"llm-energy/cpu/{socket.gethostname()}/{self._model}"
        return "CPU-" + str(uuid_mod.uuid5(uuid_mod.NAMESPACE_URL, key))

    def name(self) -> str:
        return self._model

    def open_spec(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "index": self.index,
            "rapl_root": str(self.rapl_root),
            "country_iso_code": self.country_iso_code,
        }

    def provenance(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "energy_source": self.energy_source,
            "name": self._model,
            "cpu_model": self._model,
            "uuid": self.uuid(),
            "logical_cpus": os.cpu_count(),
            "rapl_root": str(self.rapl_root),
            "rapl_zones": [z.name for z in self._rapl.zones] if self._rapl else [],
            "rapl_unavailable_reason": self._rapl_error,
            "estimated_power_w": self._estimate_w,
            "country_iso_code": self.country_iso_code,
        }

    def estimated_power_w(self) -> float:
        """The one-off codecarbon estimate (measured lazily, on first need)."""
        if self._estimate_w is None:
            self._estimate_w = float(self._estimator())
            self._estimate_t0_s = time.perf_counter()
        return self._estimate_w

    def energy_counter_j(self) -> float:
        if self._rapl is not None:
            return self._rapl.read_total_j()
        power = self.estimated_power_w()
        return energy_j(power, time.perf_counter() - self._estimate_t0_s)

    def read_counter(self) -> tuple[float, float]:
        if self._rapl is not None:
            return super().read_counter()
        power = self.estimated_power_w()
        now = time.perf_counter()  # one timestamp: energy and time describe the same instant
        return energy_j(power, now - self._estimate_t0_s), now

    def energy_counter_max_j(self) -> float | None:
        return None  # the reader unwraps per zone, so the total never wraps

    def nominal_update_period_s(self) -> float | None:
        return RAPL_UPDATE_PERIOD_S if self._rapl is not None else 0.0

    def power_w(self) -> float:
        if self._rapl is None:
            return self.estimated_power_w()
        # Power = counter slope since the previous call (or over a short fresh interval).
        now, e = time.perf_counter(), self._rapl.read_total_j()
        last = self._last_power_read
        if last is None or now - last[0] < 0.01:
            time.sleep(0.05)
            last = (now, e)
            now, e = time.perf_counter(), self._rapl.read_total_j()
        self._last_power_read = (now, e)
        return (e - last[1]) / (now - last[0])
