"""Opening a device: `open_device` picks a backend (nvml / cpu / simulated), takes the GPU's lock
when the run needs it exclusively, and opens several GPUs as one group.

Nothing here touches NVML, torch or codecarbon at import time; backends are imported when chosen.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from llm_energy.config.sections import BACKENDS
from llm_energy.control.gpupick import pick_gpu, pick_gpus
from llm_energy.device.base import Device
from llm_energy.device.cpu import DEFAULT_RAPL_ROOT
from llm_energy.device.errors import (
    DeviceError,
    DeviceNotFoundError,
    NotSupportedError,
)
from llm_energy.device.group import DeviceGroup, split_group_uuid
from llm_energy.paths import gpu_lock_dir
from llm_energy.sim.device import DEFAULT_NOISE_REL

log = logging.getLogger(__name__)

Backend = Literal["auto", "nvml", "cpu", "simulated"]

# open_device's study settings for a tool that opens a device only to read power or clocks
# (`llm-energy gpu`, the power-timeline sampler), never to run a study: it never waits for a
# lock, and no power model or emissions estimate is used. --backend simulated means an h200.
TOOL_SETTINGS: dict[str, Any] = {
    "wait_for_gpu_s": 0.0,
    "simulated_count": 1,
    "simulated_gpu": "h200",
    "simulated_alpha": 0.0,
    "simulated_utilization": 0.0,
    "seed": 0,
    "country_iso_code": "USA",
}


def open_device(
    backend: Backend | str,
    index: int | str,
    *,
    state_dir: str | Path,
    wait_for_gpu_s: float,
    simulated_count: int,
    simulated_gpu: str,
    simulated_alpha: float,
    simulated_utilization: float,
    seed: int,
    country_iso_code: str,
    exclusive: bool = False,
    lock_dir: str | Path | None = None,
    indices: Sequence[int] | str | None = None,
    rapl_root: str | Path = DEFAULT_RAPL_ROOT,
    simulated_noise_rel: float = DEFAULT_NOISE_REL,
    simulated_update_period_s: float | None = None,
    simulated_counter_ticks: bool = True,
) -> Device:
    """Open a device. `auto` = nvml when NVML initialises and sees a GPU, else cpu.

    The keywords without defaults are `gpu.*`, `meta.seed` and `emissions.country_iso_code`
    settings: callers pass them from the config (conf/ is their only home).

    `exclusive` (implied by index="auto"): the device holds its GPU's lock
    (control/gpulock.py) in `device.lease` until the device's `with` block ends, or the process does.
    `auto` takes the first free allowed GPU (nvml: `allowed_gpus`; simulated: `simulated_count`
    GPUs with distinct UUIDs); a fixed index whose lock is held refuses in one line naming the
    holder, at once (`wait_for_gpu_s` = 0) or after polling that long. `indices` opens several
    GPUs as one `DeviceGroup` (device/group.py; a model that spans them): a list of allowed
    indexes, or "all" (model.device_map=auto); with `exclusive` every lock is taken, all or
    nothing (without it, as the power timeline reopens a run's group, none). The cpu
    backend has no GPU to lock. Locks live in `lock_dir` (default <state_dir>/locks). NVIDIA
    GPUs in MIG mode are refused (whole GPUs only).
    """
    if backend not in BACKENDS:
        raise ValueError(
            f"unknown device backend {backend!r}: expected one of {'|'.join(BACKENDS)}"
        )
    exclusive = exclusive or index == "auto"
    locks = Path(lock_dir) if lock_dir is not None else gpu_lock_dir(Path(state_dir))
    wanted = None if indices is None or indices == "all" else [int(i) for i in indices]
    if backend in ("auto", "nvml"):
        from llm_energy.device.nvml import NvmlDevice, allowed_gpus  # pynvml only imported now

        try:
            candidates = allowed_gpus() if exclusive or indices is not None else []
            plain = None if exclusive or indices is not None else NvmlDevice(int(index))
        except DeviceError as err:
            if backend == "nvml" or isinstance(err, NotSupportedError):
                raise
            log.info("backend=auto: no usable NVIDIA GPU (%s); using the cpu backend", err)
        else:
            if plain is not None:
                return plain

            def _nvml(i: int) -> Device:
                dev = NvmlDevice(i)
                try:
                    dev.refuse_mig()
                except BaseException:
                    dev.close()
                    raise
                return dev

            if indices is not None and not exclusive:
                return _plain_group(_nvml, candidates, wanted)
            if indices is not None:
                return _open_group(_nvml, candidates, wanted, locks, wait_for_gpu_s)
            return _open_locked(_nvml, candidates, index, locks, wait_for_gpu_s)
    if backend == "simulated":
        from llm_energy.sim.busy import simulated_gpus
        from llm_energy.sim.device import SimulatedDevice

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

        sims = simulated_gpus(simulated_gpu, simulated_count)
        if indices is not None and not exclusive:
            return _plain_group(_simulated, sims, wanted)
        if not exclusive:
            return _simulated(int(index))
        if indices is not None:
            return _open_group(_simulated, sims, wanted, locks, wait_for_gpu_s)
        return _open_locked(_simulated, sims, index, locks, wait_for_gpu_s)
    from llm_energy.device.cpu import CpuDevice

    cpu_index = 0 if index == "auto" else int(index)
    return CpuDevice(cpu_index, rapl_root=rapl_root, country_iso_code=country_iso_code)


def _checked(open_index: Callable[[int], Device], i: int, uuid: str) -> Device:
    device = open_index(i)
    if device.uuid() != uuid:  # the GPU list changed between listing and opening
        device.close()
        raise DeviceNotFoundError(
            f"Cannot open GPU {i}",
            f"it is now {device.uuid()}, not the {uuid} that was locked",
            "Start the run again.",
        )
    return device


def _open_locked(
    open_index: Callable[[int], Device],
    candidates: list[tuple[int, str]],
    index: int | str,
    lock_dir: Path,
    wait_for_gpu_s: float,
) -> Device:
    i, uuid, lease = pick_gpu(candidates, index, lock_dir, wait_for_gpu_s=wait_for_gpu_s)
    try:
        device = _checked(open_index, i, uuid)
    except BaseException:
        lease.release()
        raise
    device.lease = lease
    return device


def _plain_group(
    open_index: Callable[[int], Device],
    candidates: list[tuple[int, str]],
    indices: list[int] | None,
) -> Device:
    """A group without locks (a reader in another process: the power timeline)."""
    chosen = [i for i, _ in candidates] if indices is None else indices
    members = [open_index(i) for i in chosen]
    return members[0] if len(members) == 1 else DeviceGroup(members)


def _open_group(
    open_index: Callable[[int], Device],
    candidates: list[tuple[int, str]],
    indices: list[int] | None,
    lock_dir: Path,
    wait_for_gpu_s: float,
) -> Device:
    chosen, lease = pick_gpus(candidates, indices, lock_dir, wait_for_gpu_s=wait_for_gpu_s)
    members: list[Device] = []
    try:
        for i, uuid in chosen:
            members.append(_checked(open_index, i, uuid))
        device = members[0] if len(members) == 1 else DeviceGroup(members)
    except BaseException:
        for m in members:
            m.close()
        lease.release()
        raise
    device.lease = lease
    return device


def open_device_by_uuid(uuid: str, *, state_dir: str | Path) -> Device:
    """The device with this UUID, simulated (any model) or NVIDIA whatever
    CUDA_VISIBLE_DEVICES says: how `llm-energy gpu restore` reopens what a journal names.
    A group id (member UUIDs joined, device/group.py) reopens every member as one group."""
    from llm_energy.sim.busy import find_simulated_gpu
    from llm_energy.sim.device import SimulatedDevice

    parts = split_group_uuid(uuid)
    if len(parts) > 1:
        members: list[Device] = []
        try:
            for part in parts:
                members.append(open_device_by_uuid(part, state_dir=state_dir))
        except BaseException:
            for m in members:
                m.close()
            raise
        return DeviceGroup(members)
    found = find_simulated_gpu(uuid)
    if found is not None:
        # Restore only reads and resets clocks: the power model's settings do not matter here.
        return SimulatedDevice(
            found[1],
            state_dir=state_dir,
            gpu=found[0],
            alpha=0.0,
            utilization=0.0,
            seed=0,
            noise_rel=0.0,
        )
    from llm_energy.device.nvml import NvmlDevice

    return NvmlDevice(uuid=uuid)
