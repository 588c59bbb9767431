"""Optional NVML reads for diagnosis and provenance, and the MIG refusal of CUDA_VISIBLE_DEVICES.
Each takes the `pynvml` module (tests pass a fake) and a `try_` turning a failed read into None."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from llm_energy.device.base import GpuProcess, ThrottleCounters
from llm_energy.device.errors import NotSupportedError
from llm_energy.units import ns_to_s

TryFn = Callable[..., Any]

# Clock-event-reason duration fields (ns): power (SW cap, HW brake), then thermal (SW, HW).
THROTTLE_FIELDS = (
    "NVML_FI_DEV_CLOCKS_EVENT_REASON_SW_POWER_CAP",
    "NVML_FI_DEV_CLOCKS_EVENT_REASON_HW_POWER_BRAKE_SLOWDOWN",
    "NVML_FI_DEV_CLOCKS_EVENT_REASON_SW_THERM_SLOWDOWN",
    "NVML_FI_DEV_CLOCKS_EVENT_REASON_HW_THERM_SLOWDOWN",
)


def decode_nvml(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def system_versions(nvml: Any, try_: TryFn) -> dict[str, str | None]:
    """Driver, NVML and CUDA driver versions (provenance); None where unreadable."""
    driver = try_(nvml.nvmlSystemGetDriverVersion)
    lib = try_(nvml.nvmlSystemGetNVMLVersion)
    cuda = try_(nvml.nvmlSystemGetCudaDriverVersion)
    return {
        "driver_version": decode_nvml(driver) if driver is not None else None,
        "nvml_version": decode_nvml(lib) if lib is not None else None,
        "cuda_driver_version": f"{cuda // 1000}.{(cuda % 1000) // 10}"
        if isinstance(cuda, int)
        else None,
    }


def sm_clock_samples_mhz(nvml: Any, handle: Any, try_: TryFn, since_us: int) -> list[float] | None:
    """SM clock samples the driver took since `since_us` (driver-side sampling: no Python
    polling thread in the inference process); None where there are none."""
    got = try_(nvml.nvmlDeviceGetSamples, handle, nvml.NVML_PROCESSOR_CLK_SAMPLES, since_us)
    if not got:
        return None
    vtype, samples = got
    field = {
        nvml.NVML_VALUE_TYPE_DOUBLE: "dVal",
        nvml.NVML_VALUE_TYPE_UNSIGNED_INT: "uiVal",
        nvml.NVML_VALUE_TYPE_UNSIGNED_LONG: "ulVal",
        nvml.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG: "ullVal",
        nvml.NVML_VALUE_TYPE_SIGNED_LONG_LONG: "sllVal",
        nvml.NVML_VALUE_TYPE_SIGNED_INT: "siVal",
    }.get(vtype, "uiVal")
    values = [float(getattr(s.sampleValue, field)) for s in samples if s.timeStamp >= since_us]
    return values or None


def throttle_from_fields(nvml: Any, handle: Any, try_: TryFn) -> ThrottleCounters | None:
    ids = [getattr(nvml, name, None) for name in THROTTLE_FIELDS]
    fn = getattr(nvml, "nvmlDeviceGetFieldValues", None)
    if fn is None or None in ids:
        return None
    values = try_(fn, handle, ids)
    if values is None or any(int(getattr(v, "nvmlReturn", 1)) != 0 for v in values):
        return None
    ns = [int(v.value.ullVal) for v in values]
    return ThrottleCounters("field_values", ns_to_s(ns[0] + ns[1]), ns_to_s(ns[2] + ns[3]))


def throttle_from_violations(nvml: Any, handle: Any, try_: TryFn) -> ThrottleCounters | None:
    fn = getattr(nvml, "nvmlDeviceGetViolationStatus", None)
    if fn is None:
        return None
    power = try_(fn, handle, nvml.NVML_PERF_POLICY_POWER)
    thermal = try_(fn, handle, nvml.NVML_PERF_POLICY_THERMAL)
    if power is None or thermal is None:
        return None
    return ThrottleCounters(
        "violation_status", ns_to_s(power.violationTime), ns_to_s(thermal.violationTime)
    )


def clock_details(
    nvml: Any, handle: Any, try_: TryFn, event_reasons: Callable[[], int]
) -> dict[str, Any]:
    """Everything NVML will say about clocks; NVML cannot read locked clocks back, so the
    application-clock targets and boost limits are recorded for diagnosis only."""
    h, t, p = handle, try_, nvml
    out: dict[str, Any] = {
        "sm_clock_mhz": t(p.nvmlDeviceGetClockInfo, h, p.NVML_CLOCK_SM),
        "mem_clock_mhz": t(p.nvmlDeviceGetClockInfo, h, p.NVML_CLOCK_MEM),
        "max_sm_clock_mhz": t(p.nvmlDeviceGetMaxClockInfo, h, p.NVML_CLOCK_SM),
    }
    for label, cid in (
        ("app_target", p.NVML_CLOCK_ID_APP_CLOCK_TARGET),
        ("app_default", p.NVML_CLOCK_ID_APP_CLOCK_DEFAULT),
        ("customer_boost_max", p.NVML_CLOCK_ID_CUSTOMER_BOOST_MAX),
    ):
        out[f"{label}_sm_mhz"] = t(p.nvmlDeviceGetClock, h, p.NVML_CLOCK_SM, cid)
    out["clock_event_reasons"] = t(event_reasons)
    return out


def other_processes(nvml: Any, handle: Any, try_: TryFn) -> list[GpuProcess]:
    """Processes other than this one on the GPU (compute and graphics), by pid."""
    procs: dict[int, GpuProcess] = {}
    for fn in (
        nvml.nvmlDeviceGetComputeRunningProcesses,
        nvml.nvmlDeviceGetGraphicsRunningProcesses,
    ):
        for p in try_(fn, handle) or []:
            pid = int(p.pid)
            if pid == os.getpid():
                continue
            mem = getattr(p, "usedGpuMemory", None)
            name = try_(nvml.nvmlSystemGetProcessName, pid)
            procs[pid] = GpuProcess(
                pid,
                int(mem) if isinstance(mem, int) else None,
                decode_nvml(name) if name is not None else None,
            )
    return sorted(procs.values(), key=lambda q: q.pid)


def refuse_mig_visible(items: list[str]) -> None:
    """CUDA_VISIBLE_DEVICES naming a MIG slice: refuse in one line (whole GPUs only)."""
    mig = [x for x in items if x.upper().startswith("MIG-")]
    if mig:
        raise NotSupportedError(
            f"Cannot measure the MIG slice {mig[0]} named in CUDA_VISIBLE_DEVICES",
            "energy counters and clock locks are per whole GPU, not per MIG slice",
            "Run on whole GPUs: set CUDA_VISIBLE_DEVICES to GPU-... UUIDs or indexes "
            "(with SLURM, request a whole GPU rather than a MIG profile).",
        )
