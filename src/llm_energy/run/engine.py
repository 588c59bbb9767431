"""Which generator a run uses and where its model runs (the CUDA device matched to the measured
GPU by UUID, several GPUs, or the simulated GPU); torch only when needed (`run/hf_generate.py`)."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

from llm_energy.device.errors import DeviceNotFoundError
from llm_energy.device.identity import cuda_index_for_uuid, format_cuda_uuid

log = logging.getLogger(__name__)


def cuda_device_uuids() -> list[str]:
    """The UUID of every CUDA device torch sees, in CUDA index order, as NVML writes UUIDs."""
    import torch

    props = torch.cuda.get_device_properties
    return [format_cuda_uuid(props(i).uuid) for i in range(torch.cuda.device_count())]


def torch_device_for(backend: str, gpu_uuid: str | None = None) -> str:
    """The torch device for a run measured on `backend`. NVML: the CUDA device whose UUID is
    the measured GPU's (`cuda:N`; CUDA and NVML number GPUs differently), else one line saying
    why the model cannot run on that GPU. Every other backend runs the model on the CPU."""
    if backend != "nvml":
        return "cpu"
    import torch

    if gpu_uuid is None:  # callers that predate the UUID check (benchmarks): unchecked
        log.warning("torch device not matched to the measured GPU: pass gpu_uuid=device.uuid()")
        return "cuda" if torch.cuda.is_available() else "cpu"
    if not torch.cuda.is_available():
        raise DeviceNotFoundError(
            f"Cannot run the model on the measured GPU {gpu_uuid}",
            f"torch {torch.__version__} cannot use CUDA (CPU-only build, no driver, or "
            f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r} hides every GPU)",
            "Install a CUDA build of torch, or set gpu.backend=cpu to measure a CPU run.",
        )
    return f"cuda:{cuda_index_for_uuid(gpu_uuid, cuda_device_uuids())}"


def cuda_indices_for_uuids(gpu_uuids: Sequence[str], cuda_uuids: Sequence[str]) -> list[int]:
    """Each measured GPU's CUDA index in group order, by UUID: CUDA and NVML number apart (pure)."""
    return [cuda_index_for_uuid(u, cuda_uuids) for u in gpu_uuids]


def max_memory_for(indices: Sequence[int], free_bytes: Mapping[int, int]) -> dict[int | str, int]:
    """transformers' `max_memory` that lets `device_map="auto"` use exactly these CUDA devices
    (and neither the others nor the CPU): each its free memory, every other device 0 (pure)."""
    out: dict[int | str, int] = {i: 0 for i in free_bytes if i not in indices}
    out.update({i: int(free_bytes.get(i, 0)) for i in indices})
    out["cpu"] = 0
    return out


def multi_gpu_placement(gpu_uuids: Sequence[str]) -> tuple[str, dict[str, Any]]:
    """(input device, load_model keyword arguments) that place a model over exactly the
    measured GPUs with transformers' device_map; one line when torch cannot see them all."""
    import torch

    if not torch.cuda.is_available():
        raise DeviceNotFoundError(
            f"Cannot run the model on the measured GPUs {', '.join(gpu_uuids)}",
            f"torch {torch.__version__} cannot use CUDA",
            "Install a CUDA build of torch, or set model.device_map=null.",
        )
    indices = cuda_indices_for_uuids(gpu_uuids, cuda_device_uuids())
    free = {i: torch.cuda.mem_get_info(i)[0] for i in range(torch.cuda.device_count())}
    return f"cuda:{indices[0]}", {"device_map": "auto", "max_memory": max_memory_for(indices, free)}


def load_generator(
    model: Any,
    model_dir: Any,
    *,
    backend: str,
    seed: int,
    engine: str,
    allow_compile: bool,
    gpu_uuid: str | None = None,
    sim_device: Any = None,
    gpu_uuids: Sequence[str] | None = None,
) -> Any:
    """Load the materialised model (see llm_energy.io.models) and wrap it for timed generation
    on the device `torch_device_for(backend, gpu_uuid)` picks. On the simulated GPU, pass it as
    `sim_device`: every call then reports its workload to it (sim/generate.py), and random
    weights skip the forward pass. `gpu_uuids` (several: model.device_map) spreads the model
    over exactly those GPUs on nvml; elsewhere the model stays on the CPU."""
    if sim_device is not None and backend == "simulated":
        from llm_energy.sim.generate import simulated_generator

        # The CPU forward pass only supplies outputs: never compiled (that is the GPU's).
        same = {"backend": backend, "seed": seed, "engine": engine, "gpu_uuid": gpu_uuid}
        return simulated_generator(
            model,
            model_dir,
            device=sim_device,
            seed=seed,
            engine=engine,
            allow_compile=allow_compile,
            load_real=lambda: load_generator(model, model_dir, allow_compile=False, **same),
        )
    import torch

    from llm_energy.io.models import load_model
    from llm_energy.run.hf_generate import Generator

    placement: dict[str, Any] = {"device_map": None, "max_memory": None}
    if backend == "nvml" and gpu_uuids is not None and len(gpu_uuids) > 1:
        device, placement = multi_gpu_placement(gpu_uuids)
    else:
        device = torch_device_for(backend, gpu_uuid)
        if device.startswith("cuda:"):
            torch.cuda.set_device(device)  # bare "cuda" and implicit-device calls mean this GPU too
    net, tok = load_model(model, model_dir, device=device, seed=seed, **placement)
    if placement["device_map"] is not None:  # spread: where the first layer (inputs) lives
        device = str(getattr(net, "device", device))
    return Generator(
        net,
        tok,
        family=model.family,
        device=device,
        engine=engine,
        chat_template=model.chat_template,
        allow_compile=allow_compile,
    )
