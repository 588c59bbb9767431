"""Hardware layer: devices (nvml / cpu / simulated), clock control, energy measurement.

Nothing here touches NVML, torch or codecarbon at import time; `open_device` picks a backend.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
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
from llm_energy.hw.gpulock import GpuLease, pick_gpu
from llm_energy.hw.guard import SignalExit
from llm_energy.paths import gpu_lock_dir

log = logging.getLogger(__name__)

Backend = Literal["auto", "nvml", "cpu", "simulated"]
BACKENDS: tuple[str, ...] = ("auto", "nvml", "cpu", "simulated")


def open_device(
    backend: Backend | str = "auto",
    index: int | str = 0,
    *,
    state_dir: str | Path,
    exclusive: bool = False,
    lock_dir: str | Path | None = None,
    simulated_count: int = 1,
    rapl_root: str | Path = "/sys/class/powercap",
    simulated_gpu: str = "h200",
    simulated_alpha: float = 0.6,
    simulated_utilization: float = 0.15,
    simulated_noise_rel: float = 0.02,
    simulated_update_period_s: float | None = None,
    simulated_counter_ticks: bool = True,
    seed: int = 0,
    country_iso_code: str = "AUT",
) -> Device:
    """Open a device. `auto` = nvml when NVML initialises and sees a GPU, else cpu.

    `exclusive` (implied by index="auto"): the device holds its GPU's lock (hw/gpulock.py) in
    `device.lease` until the device's `with` block ends, or the process does. `auto` takes the
    first free allowed GPU (nvml: `allowed_gpus`; simulated: `simulated_count` GPUs with
    distinct UUIDs); a fixed index whose lock is held refuses in one line naming the holder.
    The cpu backend has no GPU to lock. Locks live in `lock_dir` (default <state_dir>/locks).
    """
    if backend not in BACKENDS:
        raise ValueError(
            f"unknown device backend {backend!r}: expected one of {'|'.join(BACKENDS)}"
        )
    exclusive = exclusive or index == "auto"
    locks = Path(lock_dir) if lock_dir is not None else gpu_lock_dir(Path(state_dir))
    if backend in ("auto", "nvml"):
        from llm_energy.hw.nvml import NvmlDevice, allowed_gpus  # pynvml only imported now

        try:
            candidates = allowed_gpus() if exclusive else []
            plain = None if exclusive else NvmlDevice(int(index))
        except DeviceError as err:
            if backend == "nvml":
                raise
            log.info("backend=auto: no usable NVIDIA GPU (%s); using the cpu backend", err)
        else:
            if plain is not None:
                return plain
            return _open_locked(NvmlDevice, candidates, index, locks)
    if backend == "simulated":
        from llm_energy.hw.simulated import SimulatedDevice, simulated_gpus

        def _simulated(i: int) -> Device:
            return SimulatedDevice(
                i,
                state_dir=state_dir,
                gpu=simulated_gpu,
                alpha=simulated_alpha,
                utilization=simulated_utilization,
                seed=seed,
                noise_rel=simulated_noise_rel,
                update_period_s=simulated_update_period_s,
                counter_ticks=simulated_counter_ticks,
            )

        if not exclusive:
            return _simulated(int(index))
        return _open_locked(
            _simulated, simulated_gpus(simulated_gpu, simulated_count), index, locks
        )
    from llm_energy.hw.cpu import CpuDevice

    cpu_index = 0 if index == "auto" else int(index)
    return CpuDevice(cpu_index, rapl_root=rapl_root, country_iso_code=country_iso_code)


def _open_locked(
    open_index: Callable[[int], Device],
    candidates: list[tuple[int, str]],
    index: int | str,
    lock_dir: Path,
) -> Device:
    i, uuid, lease = pick_gpu(candidates, index, lock_dir)
    try:
        device = open_index(i)
        if device.uuid() != uuid:  # the GPU list changed between listing and opening
            raise DeviceNotFoundError(
                f"Cannot open GPU {i}",
                f"it is now {device.uuid()}, not the {uuid} that was locked",
                "Start the run again.",
            )
    except BaseException:
        lease.release()
        raise
    device.lease = lease
    return device


def open_device_by_uuid(uuid: str, *, state_dir: str | Path) -> Device:
    """The device with this UUID, simulated (any model) or NVIDIA whatever
    CUDA_VISIBLE_DEVICES says: how `llm-energy gpu restore` reopens what a journal names."""
    from llm_energy.hw.simulated import SimulatedDevice, find_simulated_gpu

    found = find_simulated_gpu(uuid)
    if found is not None:
        return SimulatedDevice(found[1], state_dir=state_dir, gpu=found[0], noise_rel=0.0)
    from llm_energy.hw.nvml import NvmlDevice

    return NvmlDevice(uuid=uuid)


# Light modules (no NVML/torch/codecarbon at import): re-exported for convenience.
from llm_energy.hw.control import ClockSession  # noqa: E402
from llm_energy.hw.meter import EnergyMeter, WindowReading  # noqa: E402
from llm_energy.hw.recovery import (  # noqa: E402
    clear_journal,
    gpu_status,
    recover_pending,
    restore_from_journal,
    state_report,
)
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
    "GpuLease",
    "GpuProcess",
    "NotSupportedError",
    "OtherProcessesError",
    "PermissionDeniedError",
    "PowerTimeline",
    "RestoreError",
    "SessionConflictError",
    "SignalExit",
    "WindowReading",
    "clear_journal",
    "describe_clock_event_reasons",
    "gpu_status",
    "open_device",
    "open_device_by_uuid",
    "recover_pending",
    "restore_from_journal",
    "state_report",
]
