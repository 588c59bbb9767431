"""Hardware layer: devices (nvml / cpu / simulated), clock control, energy measurement.

Nothing here touches NVML, torch or codecarbon at import time; `open_device` picks a backend.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

from llm_energy.hw.base import ClockState, Device, GpuProcess, describe_clock_event_reasons
from llm_energy.hw.errors import (
    ClockControlUnavailableError,
    DeviceError,
    DeviceNotFoundError,
    NotSupportedError,
    OtherProcessesError,
    PermissionDeniedError,
    RestoreError,
    SessionConflictError,
)

log = logging.getLogger(__name__)

Backend = Literal["auto", "nvml", "cpu", "simulated"]
BACKENDS: tuple[str, ...] = ("auto", "nvml", "cpu", "simulated")


def open_device(
    backend: Backend | str = "auto",
    index: int = 0,
    *,
    state_dir: str | Path,
    rapl_root: str | Path = "/sys/class/powercap",
    simulated_gpu: str = "h200",
    simulated_alpha: float = 0.6,
    simulated_utilization: float = 0.15,
    simulated_noise_rel: float = 0.02,
    simulated_update_period_s: float | None = None,
    seed: int = 0,
    country_iso_code: str = "AUT",
) -> Device:
    """Open a device. `auto` = nvml when NVML initialises and sees a GPU, else cpu."""
    if backend not in BACKENDS:
        raise ValueError(
            f"unknown device backend {backend!r}: expected one of {'|'.join(BACKENDS)}"
        )
    if backend in ("auto", "nvml"):
        from llm_energy.hw.nvml import NvmlDevice  # pynvml only imported when asked for

        try:
            return NvmlDevice(index)
        except DeviceError as err:
            if backend == "nvml":
                raise
            log.info("backend=auto: no usable NVIDIA GPU (%s); using the cpu backend", err)
    if backend == "simulated":
        from llm_energy.hw.simulated import SimulatedDevice

        return SimulatedDevice(
            index,
            state_dir=state_dir,
            gpu=simulated_gpu,
            alpha=simulated_alpha,
            utilization=simulated_utilization,
            seed=seed,
            noise_rel=simulated_noise_rel,
            update_period_s=simulated_update_period_s,
        )
    from llm_energy.hw.cpu import CpuDevice

    return CpuDevice(index, rapl_root=rapl_root, country_iso_code=country_iso_code)


# Light modules (no NVML/torch/codecarbon at import): re-exported for convenience.
from llm_energy.hw.control import (  # noqa: E402
    ClockSession,
    gpu_status,
    recover_pending,
    restore_from_journal,
)
from llm_energy.hw.meter import EnergyMeter, WindowReading  # noqa: E402
from llm_energy.hw.timeline import PowerTimeline  # noqa: E402

__all__ = [
    "BACKENDS",
    "Backend",
    "ClockControlUnavailableError",
    "ClockSession",
    "ClockState",
    "Device",
    "DeviceError",
    "DeviceNotFoundError",
    "EnergyMeter",
    "GpuProcess",
    "NotSupportedError",
    "OtherProcessesError",
    "PermissionDeniedError",
    "PowerTimeline",
    "RestoreError",
    "SessionConflictError",
    "WindowReading",
    "describe_clock_event_reasons",
    "gpu_status",
    "open_device",
    "recover_pending",
    "restore_from_journal",
]
