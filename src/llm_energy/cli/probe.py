"""Read-only facts about one device for `llm-energy doctor`: no setter, no GPU lock; a fact that
cannot be read is `Unavailable(reason)`, so one unsupported NVML call never stops the doctor."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from llm_energy.cli.doctor import Unavailable
from llm_energy.config.settings import GpuConfig
from llm_energy.control.preflight import has_clock_privilege
from llm_energy.control.recovery import state_report
from llm_energy.control.slurm import slurm_gpu_freq
from llm_energy.device.base import Device
from llm_energy.device.errors import NotSupportedError
from llm_energy.energy.meter import EnergyMeter
from llm_energy.paths import gpu_journal_dir, gpu_lock_dir

# Long enough for 5 ticks of a 0.1 s counter; a silent counter costs at most this long.
UPDATE_PERIOD_PROBE_S = 1.5
PROVENANCE_FACTS = (
    "driver_version cuda_driver_version nvml_version power_limit_w power_limit_range_w".split()
)


def _reason(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return f"NVML NOT_SUPPORTED: {text}" if isinstance(err, NotSupportedError) else text


def read_fact(fn: Callable[[], Any]) -> Any:
    """fn(), or Unavailable naming why it failed (the doctor must never stop on one read)."""
    try:
        return fn()
    except Exception as err:  # any failure is one n/a, never a traceback
        return Unavailable(_reason(err))


def _update_period(device: Device, min_window_periods: float, min_window_s: float) -> Any:
    # tick_align only shapes measured windows; the probe measures none
    meter = EnergyMeter(
        device, min_window_periods=min_window_periods, min_window_s=min_window_s, tick_align=True
    )
    period_s = meter.measure_update_period_s(max_s=UPDATE_PERIOD_PROBE_S)
    return {
        "update_period_s": period_s,
        "how": "nominal" if device.nominal_update_period_s() is not None else "measured",
        "min_trusted_window_s": meter.min_trusted_s,
    }


def device_facts(
    device: Device, *, min_window_periods: float, min_window_s: float
) -> dict[str, Any]:
    """What the doctor needs to know about an open device; each value may be Unavailable."""
    prov = read_fact(device.provenance)
    prov = prov if isinstance(prov, dict) else {}
    return {
        "backend": device.backend,
        "index": device.index,
        "name": read_fact(device.name),
        "uuid": read_fact(device.uuid),
        **{k: prov.get(k) for k in PROVENANCE_FACTS},
        "energy_source": read_fact(lambda: device.energy_source),
        "counter": read_fact(lambda: _update_period(device, min_window_periods, min_window_s)),
        "supported_sm_clocks_mhz": read_fact(device.supported_sm_clocks_mhz),
        "supported_mem_clocks_mhz": read_fact(device.supported_mem_clocks_mhz),
        "can_control_clocks": read_fact(device.can_control_clocks),
        "requires_privilege": device.requires_privilege,
        "other_processes": read_fact(
            lambda: [
                {"pid": p.pid, "name": p.name, "used_memory_bytes": p.used_memory_bytes}
                for p in device.other_processes()
            ]
        ),
    }


def gather(
    gpu: GpuConfig, state_dir: Path, *, seed: int, country_iso_code: str
) -> tuple[dict[str, Any], Any]:
    """(device facts, state-directory report) for the device the params name. `gpu.index=auto`
    looks at GPU 0 without locking it: the doctor must not take a GPU from a run."""
    from llm_energy.control.open import DeviceSpec, open_device  # backends imported lazily

    index = 0 if gpu.index == "auto" else int(gpu.index)
    try:
        spec = DeviceSpec.from_config(
            gpu, seed=seed, country_iso_code=country_iso_code, state_dir=state_dir, index=index
        )
        device = open_device(spec)
    except Exception as err:  # a device that does not open is one fact
        facts: dict[str, Any] = {"backend": gpu.backend, "index": index, "open_error": _reason(err)}
    else:
        with device:
            facts = device_facts(
                device, min_window_periods=gpu.min_window_periods, min_window_s=gpu.min_window_s
            )
    slurm = slurm_gpu_freq()
    # pending journals and lock holders in the state directory (recovery's own report)
    state = read_fact(lambda: state_report(gpu_journal_dir(state_dir), gpu_lock_dir(state_dir)))
    return facts | {
        "requested_backend": gpu.backend,
        "privileged": read_fact(has_clock_privilege),
        "slurm_gpu_freq": slurm[1].raw if slurm else None,
        "torch": read_fact(lambda: torch_facts(facts["backend"], facts.get("uuid"))),
    }, state


def torch_facts(backend: str, nvml_uuid: Any) -> dict[str, Any]:
    """torch's build and CUDA devices, and the torch device a run would use (for NVML the CUDA
    device whose UUID is the measured GPU's: the run's own check). Only the doctor imports torch."""
    import torch

    from llm_energy.run.engine import torch_device_for

    if backend == "nvml" and not isinstance(nvml_uuid, str):
        device: Any = Unavailable("no NVML GPU to match by UUID")
    else:
        device = read_fact(lambda: torch_device_for(backend, nvml_uuid))
    available = bool(torch.cuda.is_available())
    return {
        "version": str(torch.__version__),
        "cuda_build": torch.version.cuda,
        "cuda_available": available,
        "device_count": int(torch.cuda.device_count()) if available else 0,
        "device": device,
    }
