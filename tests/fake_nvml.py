"""A fake `pynvml` that records every call (no GPU needed), shared by the device, meter, clock
session, lock and doctor tests."""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any

import pynvml as real_pynvml

SETTER_PREFIXES = ("nvmlDeviceSet", "nvmlDeviceReset")


def nvml_error(code: int) -> Exception:
    return real_pynvml.NVMLError(code)


class Proc:
    def __init__(self, pid: int, mem: int) -> None:
        self.pid, self.usedGpuMemory = pid, mem


class _Value:
    def __init__(self, v: int) -> None:
        self.uiVal = v


class Sample:
    def __init__(self, ts: int, v: int) -> None:
        self.timeStamp, self.sampleValue = ts, _Value(v)


class FakeNvml(types.ModuleType):
    """A stand-in for the pynvml module: real constants and error classes, fake functions.

    Every call is appended to `calls` as (name, args). `fail[name] = exc` makes that function
    raise; `hooks[name] = fn` runs fn(*args) before it returns.
    """

    def __init__(self, *, n_gpus: int = 1, uuids: list[str] | None = None) -> None:
        super().__init__("pynvml")
        for k in dir(real_pynvml):
            if k.startswith(("NVML_", "NVMLError")):
                setattr(self, k, getattr(real_pynvml, k))
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.fail: dict[str, Exception] = {}
        self.hooks: dict[str, Callable[..., None]] = {}
        self.n_gpus = n_gpus
        self.uuids = uuids or [f"GPU-fake-{i:04d}" for i in range(n_gpus)]
        self.energy_mj = 5_000_000
        self.energy_step_mj = 0  # added on every energy read
        self.power_mw = 126_600
        self.sm_clock = 345
        self.mem_clock = 3201
        self.locked_sm: int | None = None
        self.locked_mem: int | None = None
        self.power_limit_mw = 700_000
        self.power_limit_range_mw = [200_000, 700_000]
        self.procs: list[Proc] = []
        self.samples: list[Sample] | None = None
        self.reasons = 0x1
        # Cumulative throttle durations (ns): by field id, and by perf policy; None = unsupported.
        self.throttle_fields_ns: dict[int, int] | None = None
        self.violation_ns: dict[int, int] | None = None
        self.supported_mem = [3201, 2201]
        self.mig_mode = 0  # current MIG mode (1 = enabled)
        self.supported_sm = list(range(1980, 344, -15))

    def _rec(self, name: str, *args: Any) -> None:
        self.calls.append((name, args))
        if name in self.hooks:
            self.hooks[name](*args)
        if name in self.fail:
            raise self.fail[name]

    def names(self) -> list[str]:
        return [c[0] for c in self.calls]

    def setter_calls(self) -> list[str]:
        return [n for n in self.names() if n.startswith(SETTER_PREFIXES)]

    # --- lifecycle / identity
    def nvmlInit(self) -> None:
        self._rec("nvmlInit")

    def nvmlShutdown(self) -> None:
        self._rec("nvmlShutdown")

    def nvmlDeviceGetCount(self) -> int:
        self._rec("nvmlDeviceGetCount")
        return self.n_gpus

    def nvmlDeviceGetHandleByIndex(self, i: int) -> str:
        self._rec("nvmlDeviceGetHandleByIndex", i)
        return f"h{i}"

    def nvmlDeviceGetUUID(self, h: str) -> str:
        self._rec("nvmlDeviceGetUUID", h)
        return self.uuids[int(h[1:])]

    def nvmlDeviceGetName(self, h: str) -> str:
        self._rec("nvmlDeviceGetName", h)
        return "NVIDIA H200"

    def nvmlSystemGetDriverVersion(self) -> str:
        self._rec("nvmlSystemGetDriverVersion")
        return "580.159.04"

    def nvmlSystemGetNVMLVersion(self) -> str:
        self._rec("nvmlSystemGetNVMLVersion")
        return "13.580.159.04"

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        self._rec("nvmlSystemGetCudaDriverVersion")
        return 13000

    def nvmlSystemGetProcessName(self, pid: int) -> str:
        self._rec("nvmlSystemGetProcessName", pid)
        return f"proc{pid}"

    def nvmlDeviceGetMigMode(self, h: str) -> list[int]:
        self._rec("nvmlDeviceGetMigMode", h)
        return [self.mig_mode, self.mig_mode]

    def nvmlDeviceGetPersistenceMode(self, h: str) -> int:
        self._rec("nvmlDeviceGetPersistenceMode", h)
        return 1

    # --- readings
    def nvmlDeviceGetTotalEnergyConsumption(self, h: str) -> int:
        self._rec("nvmlDeviceGetTotalEnergyConsumption", h)
        self.energy_mj += self.energy_step_mj
        return self.energy_mj

    def nvmlDeviceGetPowerUsage(self, h: str) -> int:
        self._rec("nvmlDeviceGetPowerUsage", h)
        return self.power_mw

    def nvmlDeviceGetClockInfo(self, h: str, kind: int) -> int:
        self._rec("nvmlDeviceGetClockInfo", h, kind)
        return self.sm_clock if kind == real_pynvml.NVML_CLOCK_SM else self.mem_clock

    def nvmlDeviceGetMaxClockInfo(self, h: str, kind: int) -> int:
        self._rec("nvmlDeviceGetMaxClockInfo", h, kind)
        return 1980 if kind == real_pynvml.NVML_CLOCK_SM else 3201

    def nvmlDeviceGetClock(self, h: str, kind: int, cid: int) -> int:
        self._rec("nvmlDeviceGetClock", h, kind, cid)
        return 1980

    def nvmlDeviceGetSamples(self, h: str, kind: int, since: int) -> tuple[int, list[Sample]]:
        self._rec("nvmlDeviceGetSamples", h, kind, since)
        if self.samples is None:
            raise nvml_error(real_pynvml.NVML_ERROR_NOT_FOUND)
        return real_pynvml.NVML_VALUE_TYPE_UNSIGNED_INT, list(self.samples)

    def nvmlDeviceGetFieldValues(self, h: str, ids: list[int]) -> list[Any]:
        self._rec("nvmlDeviceGetFieldValues", h, tuple(ids))
        if self.throttle_fields_ns is None:
            raise nvml_error(real_pynvml.NVML_ERROR_NOT_SUPPORTED)
        return [
            types.SimpleNamespace(
                nvmlReturn=0, value=types.SimpleNamespace(ullVal=self.throttle_fields_ns[i])
            )
            for i in ids
        ]

    def nvmlDeviceGetViolationStatus(self, h: str, policy: int) -> Any:
        self._rec("nvmlDeviceGetViolationStatus", h, policy)
        if self.violation_ns is None:
            raise nvml_error(real_pynvml.NVML_ERROR_NOT_SUPPORTED)
        return types.SimpleNamespace(referenceTime=0, violationTime=self.violation_ns[policy])

    def nvmlDeviceGetCurrentClocksEventReasons(self, h: str) -> int:
        self._rec("nvmlDeviceGetCurrentClocksEventReasons", h)
        return self.reasons

    def nvmlDeviceGetCurrentClocksThrottleReasons(self, h: str) -> int:
        self._rec("nvmlDeviceGetCurrentClocksThrottleReasons", h)
        return self.reasons

    def nvmlDeviceGetTemperature(self, h: str, sensor: int) -> int:
        self._rec("nvmlDeviceGetTemperature", h, sensor)
        return 31

    def nvmlDeviceGetSupportedMemoryClocks(self, h: str) -> list[int]:
        self._rec("nvmlDeviceGetSupportedMemoryClocks", h)
        return list(self.supported_mem)

    def nvmlDeviceGetSupportedGraphicsClocks(self, h: str, mem: int) -> list[int]:
        self._rec("nvmlDeviceGetSupportedGraphicsClocks", h, mem)
        return list(self.supported_sm)

    def nvmlDeviceGetPowerManagementLimit(self, h: str) -> int:
        self._rec("nvmlDeviceGetPowerManagementLimit", h)
        return self.power_limit_mw

    def nvmlDeviceGetPowerManagementLimitConstraints(self, h: str) -> list[int]:
        self._rec("nvmlDeviceGetPowerManagementLimitConstraints", h)
        return list(self.power_limit_range_mw)

    def nvmlDeviceGetEnforcedPowerLimit(self, h: str) -> int:
        self._rec("nvmlDeviceGetEnforcedPowerLimit", h)
        return self.power_limit_mw

    def nvmlDeviceGetComputeRunningProcesses(self, h: str) -> list[Proc]:
        self._rec("nvmlDeviceGetComputeRunningProcesses", h)
        return list(self.procs)

    def nvmlDeviceGetGraphicsRunningProcesses(self, h: str) -> list[Proc]:
        self._rec("nvmlDeviceGetGraphicsRunningProcesses", h)
        return []

    # --- setters
    def nvmlDeviceSetGpuLockedClocks(self, h: str, lo: int, hi: int) -> None:
        self._rec("nvmlDeviceSetGpuLockedClocks", h, lo, hi)
        self.locked_sm = hi
        self.sm_clock = hi  # a min=max lock holds the clock even when idle

    def nvmlDeviceResetGpuLockedClocks(self, h: str) -> None:
        self._rec("nvmlDeviceResetGpuLockedClocks", h)
        self.locked_sm = None
        self.sm_clock = 345

    def nvmlDeviceSetMemoryLockedClocks(self, h: str, lo: int, hi: int) -> None:
        self._rec("nvmlDeviceSetMemoryLockedClocks", h, lo, hi)
        self.locked_mem = hi
        self.mem_clock = hi

    def nvmlDeviceResetMemoryLockedClocks(self, h: str) -> None:
        self._rec("nvmlDeviceResetMemoryLockedClocks", h)
        self.locked_mem = None
        self.mem_clock = 3201

    def nvmlDeviceSetPowerManagementLimit(self, h: str, mw: int) -> None:
        self._rec("nvmlDeviceSetPowerManagementLimit", h, mw)
        self.power_limit_mw = mw
