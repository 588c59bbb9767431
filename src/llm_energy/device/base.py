"""The abstract device every backend implements, plus small shared value types. Units are in
the names (`*_mhz`, `*_j`, `*_w`, `*_s`, `*_c`); backends convert through `llm_energy.units`."""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from llm_energy.device.errors import ClockControlUnavailableError
from llm_energy.device.freq import step_mhz
from llm_energy.io.files import atomic_write_text

# NVML clock-event ("throttle") reason bits, nvmlClocksEventReason*.
CLOCK_EVENT_REASONS: dict[int, str] = {
    0x1: "gpu_idle",
    0x2: "applications_clocks_setting",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
}
REASON_GPU_IDLE = 0x1
REASON_SW_POWER_CAP = 0x4


def describe_clock_event_reasons(mask: int) -> list[str]:
    """Names of the bits set in an NVML clock-event reason mask (unknown bits as hex)."""
    names = [name for bit, name in CLOCK_EVENT_REASONS.items() if mask & bit]
    unknown = mask & ~sum(CLOCK_EVENT_REASONS)
    if unknown:
        names.append(hex(unknown))
    return names


@dataclass(frozen=True)
class ClockState:
    """The controllable state of a GPU: what is locked and the power limit. With `locks_known`
    False (NVML cannot read locks back) None means "no lock set by us", not "verified unlocked"."""

    sm_locked_mhz: int | None
    mem_locked_mhz: int | None
    power_limit_w: float | None
    locks_known: bool = True
    #: A device group (device/group.py): each member's own state, (uuid, state) in member order;
    #: a restore puts every member back to its own original.
    members: tuple[tuple[str, ClockState], ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "members"}
        if self.members is not None:
            d["members"] = [{"uuid": u, **st.to_dict()} for u, st in self.members]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ClockState:
        sm, mem, pl = (d.get(k) for k in ("sm_locked_mhz", "mem_locked_mhz", "power_limit_w"))
        return cls(
            None if sm is None else int(sm),
            None if mem is None else int(mem),
            None if pl is None else float(pl),
            locks_known=bool(d.get("locks_known", True)),
        )

    def describe(self) -> str:
        if self.members:
            return "; ".join(f"{u}: {st.describe()}" for u, st in self.members)
        locks = [
            f"{what} locked at {mhz} MHz" if mhz else f"{what} unlocked"
            for what, mhz in (("SM", self.sm_locked_mhz), ("memory", self.mem_locked_mhz))
        ]
        pl = self.power_limit_w
        return ", ".join([*locks, "power limit n/a" if pl is None else f"power limit {pl:g} W"])


@dataclass(frozen=True)
class ThrottleCounters:
    """Cumulative time (s) the driver held clocks down, by cause (`source`: the NVML API).
    Differenced across a window: how much of it ran throttled, whatever its idle edges read."""

    source: str
    power_s: float
    thermal_s: float


@dataclass(frozen=True)
class GpuProcess:
    pid: int
    used_memory_bytes: int | None = None
    name: str | None = None


def atomic_write_json(path: Path, data: dict[str, Any]) -> None:
    """Write JSON so that a reader (or a crash) sees either the old or the new file, never half."""
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n", fsync=True)


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in `path`, or None if the file does not exist."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError(f"{path} does not hold a JSON object")
    return data


class Device(ABC):
    """One measurable device. Reads never change state; setters exist only where clocks can be
    controlled (`can_control_clocks()`), everything else raises ClockControlUnavailableError."""

    backend: str = "abstract"
    #: Whether changing clocks needs root / CAP_SYS_ADMIN (checked by ClockSession's preflight).
    requires_privilege: bool = False

    def __init__(self, index: int = 0) -> None:
        self.index = int(index)
        #: This run's lock on the GPU (a GpuLease, when its DeviceSpec was exclusive), if any.
        self.lease: Any = None

    @property
    @abstractmethod
    def energy_source(self) -> str:
        """`nvml`, `rapl`, `codecarbon-estimate` or `simulated`."""

    @abstractmethod
    def uuid(self) -> str: ...

    @abstractmethod
    def name(self) -> str: ...

    def member_devices(self) -> list[Device]:
        """The physical GPUs this device stands for: itself, or a group's members."""
        return [self]

    def provenance(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "name": self.name(),
            "uuid": self.uuid(),
            "energy_source": self.energy_source,
        }

    def open_spec(self) -> dict[str, Any]:
        """`DeviceSpec.from_dict` fields that re-open this device in another process."""
        return {"backend": self.backend, "index": self.index}

    @abstractmethod
    def energy_counter_j(self) -> float:
        """Cumulative energy counter in J (monotonic except for a reset or a wrap)."""

    def energy_counter_max_j(self) -> float | None:
        """Counter range for wrap handling, None when it does not wrap (or is unknown)."""
        return None

    def nominal_update_period_s(self) -> float | None:
        """Known counter update period; None means it must be measured (NVML)."""
        return None

    @abstractmethod
    def power_w(self) -> float: ...

    def now_s(self) -> float:
        """Clock for window elapsed times (the simulated device runs a model clock)."""
        return time.perf_counter()

    def read_counter(self) -> tuple[float, float]:
        """(energy counter J, now_s) read together. The time is the midpoint of the counter
        read, which matters where one read is slow (NVML total energy: ~3.5 ms on an H200)."""
        t_a = self.now_s()
        e = self.energy_counter_j()
        t_b = self.now_s()
        return e, (t_a + t_b) / 2

    def synchronize(self) -> None:  # noqa: B027 (optional hook, no-op by default)
        """Wait for queued device work (CUDA) so counter reads bracket the work."""

    # Hooks around a measurement window: real devices ignore them, the simulated device uses
    # them to know when the "GPU" is busy.
    def window_begin(self) -> None:  # noqa: B027 (optional hook, no-op by default)
        pass

    def window_end(self) -> None:  # noqa: B027 (optional hook, no-op by default)
        pass

    def sm_clock_mhz(self) -> int | None:
        return None

    def mem_clock_mhz(self) -> int | None:
        return None

    def sample_timestamp_us(self) -> int:
        """Timestamp to pass to `sm_clock_samples_mhz` (NVML uses CPU wall-clock µs)."""
        return int(time.time() * 1_000_000)

    def sm_clock_samples_mhz(self, since_us: int) -> list[float] | None:
        """Driver-side SM clock samples since `since_us`, None when unavailable."""
        return None

    def clock_event_reasons(self) -> int:
        return 0

    def throttle_counters(self) -> ThrottleCounters | None:
        """Cumulative throttle durations, None where the device has no such counters."""
        return None

    def temperature_c(self) -> float | None:
        return None

    def supported_mem_clocks_mhz(self) -> list[int]:
        return []

    def supported_sm_clocks_mhz(self, mem_mhz: int | None = None) -> list[int]:
        return []

    def sm_step_mhz(self) -> int:
        clocks = self.supported_sm_clocks_mhz()
        return step_mhz(clocks) if clocks else 0

    def power_limit_w(self) -> float | None:
        return None

    def power_limit_range_w(self) -> tuple[float, float] | None:
        """(min, max) power limit the device accepts; None where it cannot be set."""
        return None

    def other_processes(self) -> list[GpuProcess]:
        """Compute processes on the device other than this one."""
        return []

    def can_control_clocks(self) -> bool:
        return False

    def clock_state(self) -> ClockState:
        # No getter for locked clocks (NVML has none): only the power limit is read back.
        return ClockState(None, None, self.power_limit_w(), locks_known=False)

    def _no_control(self, asked: str) -> ClockControlUnavailableError:
        return ClockControlUnavailableError(
            f"{asked} on the {self.backend} backend",
            "this device has no controllable GPU clocks",
            "Use gpu.backend=simulated for a simulated sweep, run on an NVIDIA host, "
            "or set gpu.freq=null (driver default clocks).",
        )

    def lock_sm_clocks(self, freq_mhz: int) -> None:
        raise self._no_control(f"Cannot lock the SM clock to {freq_mhz} MHz")

    def reset_sm_clocks(self) -> None:
        raise self._no_control("Cannot reset the SM clock lock")

    def lock_mem_clocks(self, freq_mhz: int) -> None:
        raise self._no_control(f"Cannot lock the memory clock to {freq_mhz} MHz")

    def reset_mem_clocks(self) -> None:
        raise self._no_control("Cannot reset the memory clock lock")

    def set_power_limit_w(self, power_w: float) -> None:
        raise self._no_control(f"Cannot set the power limit to {power_w:g} W")

    def close(self) -> None:  # noqa: B027 (optional hook, no-op by default)
        """Release backend resources (NVML handle)."""

    def __enter__(self) -> Device:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.close()
        finally:
            lease = getattr(self, "lease", None)  # subclasses may skip Device.__init__
            if lease is not None:
                lease.release()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} backend={self.backend} index={self.index}>"
