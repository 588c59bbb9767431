"""NVIDIA backend through NVML (nvidia-ml-py); importing it makes no NVML call. Clock locks use
nvmlDeviceSet{Gpu,Memory}LockedClocks (min = max), never the deprecated application clocks."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import pynvml

from llm_energy.device import identity
from llm_energy.device import nvml_reads as reads
from llm_energy.device.base import Device, GpuProcess, ThrottleCounters
from llm_energy.device.errors import DeviceError, DeviceNotFoundError, NotSupportedError
from llm_energy.device.nvml_errors import NO_GPU_TODO, translate_nvml_error
from llm_energy.device.nvml_reads import decode_nvml
from llm_energy.units import mj_to_j, mw_to_w, w_to_mw

log = logging.getLogger(__name__)
T = TypeVar("T")


class NvmlDevice(Device):
    backend = "nvml"
    requires_privilege = True

    def __init__(self, index: int = 0, *, uuid: str | None = None) -> None:
        """GPU `index` of the allowed GPUs (see `allowed_gpus`), or the GPU with `uuid` whatever
        CUDA_VISIBLE_DEVICES says (a journal names its GPU by UUID)."""
        super().__init__(index)
        self._initialised = False
        self._call(f"Cannot open NVIDIA GPU {index}", pynvml.nvmlInit)
        self._initialised = True
        try:
            count = int(self._call("Cannot count NVIDIA GPUs", pynvml.nvmlDeviceGetCount))
            if count == 0:
                raise DeviceNotFoundError(
                    f"Cannot open NVIDIA GPU {index}", "NVML sees no GPU on this host", NO_GPU_TODO
                )
            kind, target = ("uuid", uuid) if uuid else identity.resolve_cuda_visible(index)
            self._handle = self._open_handle(kind, target, count)
        except BaseException:
            self.close()
            raise
        self._uuid: str | None = None
        self._name: str | None = None
        self._cuda_index: int | None = None  # the CUDA device that is this GPU, found on use
        self._throttle_api: str | None = None  # found on first use
        self._supported_mem: list[int] | None = None
        self._supported_sm: dict[int, list[int]] = {}

    def _open_handle(self, kind: str, target: int | str, count: int) -> Any:
        asked = f"Cannot open NVIDIA GPU {self.index}"
        if kind == "index":
            assert isinstance(target, int)
            if target >= count:
                raise DeviceNotFoundError(
                    asked,
                    f"NVML sees {count} GPU(s), index {target} is out of range",
                    "Check gpu.index and nvidia-smi -L.",
                )
            return self._call(asked, pynvml.nvmlDeviceGetHandleByIndex, target)
        # CUDA accepts UUID prefixes; NVML wants the full UUID, so match by prefix.
        for i in range(count):
            h = self._call(asked, pynvml.nvmlDeviceGetHandleByIndex, i)
            if decode_nvml(self._call(asked, pynvml.nvmlDeviceGetUUID, h)).startswith(str(target)):
                return h
        raise DeviceNotFoundError(
            asked, f"no GPU has a UUID starting with {target}", "Check CUDA_VISIBLE_DEVICES."
        )

    @staticmethod
    def _call(asked: str, fn: Callable[..., T], *args: Any, todo: str | None = None) -> T:
        try:
            return fn(*args)
        except pynvml.NVMLError as err:
            raise translate_nvml_error(err, asked, todo) from err

    @staticmethod
    def _try(fn: Callable[..., T], *args: Any) -> T | None:
        """Optional reads (provenance, diagnostics): absent instead of failing the run."""
        try:
            return fn(*args)
        except (pynvml.NVMLError, DeviceError, AttributeError, TypeError, OSError):
            return None

    @property
    def energy_source(self) -> str:
        return "nvml"

    def uuid(self) -> str:
        if self._uuid is None:
            fn = pynvml.nvmlDeviceGetUUID
            self._uuid = decode_nvml(self._call("Cannot read the GPU UUID", fn, self._handle))
        return self._uuid

    def name(self) -> str:
        if self._name is None:
            fn = pynvml.nvmlDeviceGetName
            self._name = decode_nvml(self._call("Cannot read the GPU name", fn, self._handle))
        return self._name

    def provenance(self) -> dict[str, Any]:
        h, t = self._handle, self._try
        constraints = t(pynvml.nvmlDeviceGetPowerManagementLimitConstraints, h)
        sm = self._try(self.supported_sm_clocks_mhz) or []
        torch_mod = sys.modules.get("torch")  # never import torch just for provenance
        return {
            "backend": self.backend,
            "energy_source": self.energy_source,
            "index": self.index,
            "name": self.name(),
            "uuid": self.uuid(),
            **reads.system_versions(pynvml, t),
            "torch_cuda_version": getattr(getattr(torch_mod, "version", None), "cuda", None),
            "power_limit_w": self.power_limit_w(),
            "power_limit_range_w": [mw_to_w(c) for c in constraints] if constraints else None,
            "enforced_power_limit_w": mw_to_w(v)
            if (v := t(pynvml.nvmlDeviceGetEnforcedPowerLimit, h)) is not None
            else None,
            "persistence_mode": t(pynvml.nvmlDeviceGetPersistenceMode, h),
            "max_sm_clock_mhz": t(pynvml.nvmlDeviceGetMaxClockInfo, h, pynvml.NVML_CLOCK_SM),
            "max_mem_clock_mhz": t(pynvml.nvmlDeviceGetMaxClockInfo, h, pynvml.NVML_CLOCK_MEM),
            "supported_mem_clocks_mhz": t(self.supported_mem_clocks_mhz),
            "supported_sm_clocks_n": len(sm),
            "supported_sm_clocks_range_mhz": [min(sm), max(sm)] if sm else None,
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        }

    def energy_counter_j(self) -> float:
        fn = pynvml.nvmlDeviceGetTotalEnergyConsumption
        return mj_to_j(self._call("Cannot read the GPU energy counter", fn, self._handle))

    def power_w(self) -> float:
        fn = pynvml.nvmlDeviceGetPowerUsage
        return mw_to_w(self._call("Cannot read GPU power", fn, self._handle))

    def synchronize(self) -> None:
        # Only a process that has imported torch can have queued CUDA work, so torch is looked
        # up, never imported here (importing it costs ~1 s and this module must not need it).
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.synchronize(self._cuda_index_in(torch))

    def _cuda_index_in(self, torch: Any) -> int:
        # CUDA numbers GPUs fastest-first, NVML by PCI bus: match by UUID, never by index.
        if self._cuda_index is None:
            try:
                props, n = torch.cuda.get_device_properties, torch.cuda.device_count()
                uuids = [identity.format_cuda_uuid(props(i).uuid) for i in range(n)]
                self._cuda_index = identity.cuda_index_for_uuid(self.uuid(), uuids)
            except (AttributeError, TypeError, RuntimeError, DeviceError):
                self._cuda_index = self.index  # torch too old to say: the engine checked already
        return self._cuda_index

    def _clock_info_mhz(self, what: str, clock: int) -> int:
        asked = f"Cannot read the {what} clock"
        return int(self._call(asked, pynvml.nvmlDeviceGetClockInfo, self._handle, clock))

    def sm_clock_mhz(self) -> int | None:
        return self._clock_info_mhz("SM", pynvml.NVML_CLOCK_SM)

    def mem_clock_mhz(self) -> int | None:
        return self._clock_info_mhz("memory", pynvml.NVML_CLOCK_MEM)

    def sm_clock_samples_mhz(self, since_us: int) -> list[float] | None:
        return reads.sm_clock_samples_mhz(pynvml, self._handle, self._try, since_us)

    def clock_event_reasons(self) -> int:
        fn = (
            getattr(pynvml, "nvmlDeviceGetCurrentClocksEventReasons", None)
            or pynvml.nvmlDeviceGetCurrentClocksThrottleReasons
        )
        return int(self._call("Cannot read clock-event reasons", fn, self._handle))

    def throttle_counters(self) -> ThrottleCounters | None:
        """Cumulative power/thermal throttle time. The clock-event-reason duration fields
        (newer drivers, one call) are preferred; nvmlDeviceGetViolationStatus is the fallback.
        Whichever works first is kept for the life of the device (lazy, no probe at open)."""
        if self._throttle_api in (None, "field_values"):
            got = reads.throttle_from_fields(pynvml, self._handle, self._try)
            if got is not None:
                self._throttle_api = "field_values"
                return got
            if self._throttle_api == "field_values":
                return None
        if self._throttle_api in (None, "violation_status"):
            got = reads.throttle_from_violations(pynvml, self._handle, self._try)
            if got is not None:
                self._throttle_api = "violation_status"
                return got
        self._throttle_api = "none"
        return None

    def temperature_c(self) -> float | None:
        v = self._try(pynvml.nvmlDeviceGetTemperature, self._handle, pynvml.NVML_TEMPERATURE_GPU)
        return None if v is None else float(v)

    def supported_mem_clocks_mhz(self) -> list[int]:
        if self._supported_mem is None:
            fn = pynvml.nvmlDeviceGetSupportedMemoryClocks
            clocks = self._call("Cannot list supported memory clocks", fn, self._handle)
            self._supported_mem = sorted((int(c) for c in clocks), reverse=True)
        return list(self._supported_mem)

    def supported_sm_clocks_mhz(self, mem_mhz: int | None = None) -> list[int]:
        mem = mem_mhz if mem_mhz is not None else max(self.supported_mem_clocks_mhz(), default=0)
        if mem not in self._supported_sm:
            asked = f"Cannot list supported SM clocks for memory clock {mem} MHz"
            fn = pynvml.nvmlDeviceGetSupportedGraphicsClocks
            clocks = self._call(asked, fn, self._handle, mem)
            self._supported_sm[mem] = sorted((int(c) for c in clocks), reverse=True)
        return list(self._supported_sm[mem])

    def power_limit_w(self) -> float | None:
        v = self._try(pynvml.nvmlDeviceGetPowerManagementLimit, self._handle)
        return None if v is None else mw_to_w(v)

    def power_limit_range_w(self) -> tuple[float, float] | None:
        got = self._try(pynvml.nvmlDeviceGetPowerManagementLimitConstraints, self._handle)
        return (mw_to_w(got[0]), mw_to_w(got[1])) if got else None

    def clock_details(self) -> dict[str, Any]:
        return reads.clock_details(pynvml, self._handle, self._try, self.clock_event_reasons)

    def other_processes(self) -> list[GpuProcess]:
        return reads.other_processes(pynvml, self._handle, self._try)

    def refuse_mig(self) -> None:
        """Whole GPUs only: a GPU in MIG mode is split into slices whose energy and clocks NVML
        does not report per slice, and whose clocks cannot be locked apart."""
        fn = getattr(pynvml, "nvmlDeviceGetMigMode", None)
        mode = self._try(fn, self._handle) if fn is not None else None  # (current, pending)
        if mode and int(mode[0]) == int(getattr(pynvml, "NVML_DEVICE_MIG_ENABLE", 1)):
            raise NotSupportedError(
                f"Cannot measure GPU {self.index} ({self.uuid()})",
                "MIG mode is enabled on it: energy counters and clock locks are per whole GPU, "
                "not per MIG slice",
                "Use a GPU with MIG disabled (nvidia-smi -i N -mig 0, as root), or ask the "
                "scheduler for a whole GPU.",
            )

    def can_control_clocks(self) -> bool:
        return True

    def _lock(self, clock: str, fn: Callable[..., None], freq_mhz: int) -> None:
        asked = f"Cannot lock the {clock} clock of GPU {self.index} to {freq_mhz} MHz"
        self._call(asked, fn, self._handle, int(freq_mhz), int(freq_mhz))

    def _reset(self, clock: str, fn: Callable[..., None]) -> None:
        self._call(f"Cannot reset the {clock} clock lock of GPU {self.index}", fn, self._handle)

    def lock_sm_clocks(self, freq_mhz: int) -> None:
        self._lock("SM", pynvml.nvmlDeviceSetGpuLockedClocks, freq_mhz)

    def reset_sm_clocks(self) -> None:
        self._reset("SM", pynvml.nvmlDeviceResetGpuLockedClocks)

    def lock_mem_clocks(self, freq_mhz: int) -> None:
        self._lock("memory", pynvml.nvmlDeviceSetMemoryLockedClocks, freq_mhz)

    def reset_mem_clocks(self) -> None:
        self._reset("memory", pynvml.nvmlDeviceResetMemoryLockedClocks)

    def set_power_limit_w(self, power_w: float) -> None:
        asked = f"Cannot set the power limit of GPU {self.index} to {power_w:g} W"
        self._call(asked, pynvml.nvmlDeviceSetPowerManagementLimit, self._handle, w_to_mw(power_w))

    def close(self) -> None:
        if self._initialised:
            self._initialised = False
            self._try(pynvml.nvmlShutdown)


def allowed_gpus() -> list[tuple[int, str]]:
    """(gpu.index, UUID) of every GPU this process may use, in gpu.index order: the entries of
    CUDA_VISIBLE_DEVICES when it is set (a GPU-UUID entry matched by UUID prefix, an integer
    entry read as an NVML index, i.e. PCI bus order as nvidia-smi numbers GPUs), else every GPU
    NVML sees. The model later runs on the CUDA device with the same UUID, never by index."""
    items = identity.cuda_visible_entries()
    reads.refuse_mig_visible(items)
    if items:
        n = len(items)
        if any(x.isdigit() for x in items) and os.environ.get("CUDA_DEVICE_ORDER") != "PCI_BUS_ID":
            log.warning(
                "CUDA_VISIBLE_DEVICES=%s holds indexes, read here in PCI bus order; CUDA reads them "
                "fastest-first unless CUDA_DEVICE_ORDER=PCI_BUS_ID (the UUID check will tell)",
                ",".join(items),
            )
    else:
        with NvmlDevice(0) as probe:
            n = int(probe._call("Cannot count NVIDIA GPUs", pynvml.nvmlDeviceGetCount))
    out = []
    for i in range(n):
        with NvmlDevice(i) as dev:
            out.append((i, dev.uuid()))
    return out


def nvml_available() -> bool:
    """True when NVML initialises and sees at least one GPU (used by backend=auto)."""
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return False
    try:
        return int(pynvml.nvmlDeviceGetCount()) > 0
    except pynvml.NVMLError:
        return False
    finally:
        with contextlib.suppress(pynvml.NVMLError):
            pynvml.nvmlShutdown()
