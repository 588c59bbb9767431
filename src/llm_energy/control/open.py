"""Opening a device: `open_device` picks a backend (nvml / cpu / simulated), takes the GPU's lock
when the run needs it exclusively, and opens several GPUs as one group. Backends are imported
only when chosen (no NVML, torch or codecarbon at import time)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from llm_energy.config.sections import BACKENDS, GpuConfig
from llm_energy.control.gpupick import pick_gpu, pick_gpus
from llm_energy.device.base import Device
from llm_energy.device.cpu import DEFAULT_RAPL_ROOT
from llm_energy.device.errors import DeviceError, DeviceNotFoundError, NotSupportedError
from llm_energy.device.group import DeviceGroup, split_group_uuid
from llm_energy.paths import gpu_lock_dir
from llm_energy.sim.device import DEFAULT_NOISE_REL

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SimSpec:
    """The simulated backend's settings (`gpu.simulated_*`), then test and benchmark knobs."""

    gpu: str = "h200"
    count: int = 1
    alpha: float = 0.0
    utilization: float = 0.0
    noise_rel: float = DEFAULT_NOISE_REL
    update_period_s: float | None = None
    counter_ticks: bool = True


@dataclass(frozen=True)
class DeviceSpec:
    """Everything `open_device` needs (`from_config` for a study, `for_tool` for a command that
    only reads). `exclusive` (implied by index="auto") holds the GPU's lock in `device.lease`
    until the `with` block ends; `indices` (a list, or "all") opens a `DeviceGroup`, locking all
    or nothing; locks live in `lock_dir` (default <state_dir>/locks)."""

    backend: str
    index: int | str
    state_dir: Path
    wait_for_gpu_s: float
    seed: int
    country_iso_code: str
    sim: SimSpec = SimSpec()
    exclusive: bool = False
    lock_dir: Path | None = None
    indices: tuple[int, ...] | str | None = None
    rapl_root: Path = Path(DEFAULT_RAPL_ROOT)

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            allowed = "|".join(BACKENDS)
            raise ValueError(f"unknown device backend {self.backend!r}: expected one of {allowed}")
        if isinstance(self.indices, list):
            object.__setattr__(self, "indices", tuple(int(i) for i in self.indices))

    @classmethod
    def from_config(
        cls,
        gpu: GpuConfig,
        *,
        seed: int,
        country_iso_code: str,
        state_dir: str | Path,
        **overrides: Any,
    ) -> DeviceSpec:
        """A study's device: `gpu.*`, `meta.seed` and `emissions.country_iso_code`."""
        sim = SimSpec(
            gpu.simulated_gpu, gpu.simulated_count, gpu.simulated_alpha, gpu.simulated_utilization
        )
        return cls(
            gpu.backend, gpu.index, Path(state_dir), gpu.wait_for_gpu_s, seed, country_iso_code, sim
        ).but(**overrides)

    @classmethod
    def for_tool(cls, backend: str, index: int | str, state_dir: str | Path) -> DeviceSpec:
        """A tool that opens a device only to read power or clocks (`llm-energy gpu`, the power
        timeline), never to run a study: it never waits for a lock, and no power model or
        emissions estimate is used. `simulated` means an idle h200."""
        return cls(backend, index, Path(state_dir), 0.0, 0, "USA")

    def but(self, **changes: Any) -> DeviceSpec:
        """A copy with `changes`; `sim` may be a mapping of SimSpec fields to change."""
        sim = changes.pop("sim", None)
        if isinstance(sim, Mapping):
            changes["sim"] = replace(self.sim, **sim)
        elif sim is not None:
            changes["sim"] = sim
        for key in ("state_dir", "lock_dir", "rapl_root"):
            if changes.get(key) is not None:
                changes[key] = Path(changes[key])
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, for a process that re-opens the device (`from_dict`)."""
        d = asdict(self)
        for key in ("state_dir", "lock_dir", "rapl_root"):
            d[key] = None if d[key] is None else str(d[key])
        d["indices"] = list(self.indices) if isinstance(self.indices, tuple) else self.indices
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DeviceSpec:
        d = dict(d)
        base = cls.for_tool(d.pop("backend"), d.pop("index"), d.pop("state_dir"))
        return base.but(**d)


def open_device(spec: DeviceSpec) -> Device:
    """Open the device `spec` names. `auto` = nvml when NVML initialises and sees a GPU, else cpu.
    The cpu backend has no GPU to lock. NVIDIA GPUs in MIG mode are refused (whole GPUs only)."""
    exclusive = spec.exclusive or spec.index == "auto"
    locks = spec.lock_dir if spec.lock_dir is not None else gpu_lock_dir(spec.state_dir)
    indices, index, wait_s = spec.indices, spec.index, spec.wait_for_gpu_s
    wanted = None if indices is None or indices == "all" else [int(i) for i in indices]
    if spec.backend in ("auto", "nvml"):
        from llm_energy.device.nvml import NvmlDevice, allowed_gpus  # pynvml only imported now

        try:
            candidates = allowed_gpus() if exclusive or indices is not None else []
            plain = None if exclusive or indices is not None else NvmlDevice(int(index))
        except DeviceError as err:
            if spec.backend == "nvml" or isinstance(err, NotSupportedError):
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
                return _open_group(_nvml, candidates, wanted, locks, wait_s)
            return _open_locked(_nvml, candidates, index, locks, wait_s)
    if spec.backend == "simulated":
        from llm_energy.sim.busy import simulated_gpus
        from llm_energy.sim.device import SimulatedDevice

        sim = spec.sim
        settings = {k: v for k, v in asdict(sim).items() if k != "count"}  # SimulatedDevice's

        def _simulated(i: int) -> Device:
            return SimulatedDevice(i, state_dir=spec.state_dir, seed=spec.seed, **settings)

        sims = simulated_gpus(sim.gpu, sim.count)
        if indices is not None and not exclusive:
            return _plain_group(_simulated, sims, wanted)
        if not exclusive:
            return _simulated(int(index))
        if indices is not None:
            return _open_group(_simulated, sims, wanted, locks, wait_s)
        return _open_locked(_simulated, sims, index, locks, wait_s)
    from llm_energy.device.cpu import CpuDevice

    cpu_index = 0 if index == "auto" else int(index)
    return CpuDevice(cpu_index, rapl_root=spec.rapl_root, country_iso_code=spec.country_iso_code)


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
