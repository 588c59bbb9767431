"""One generation call, timed: batching, fixed or natural output length, TTFT, reference NLL.

Energy is not measured here: the caller wraps `generate` in a measurement window, so that the
meter's synchronize-and-read happens at the window edges only.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from transformers.generation.streamers import BaseStreamer

from llm_energy.device.errors import DeviceNotFoundError
from llm_energy.device.identity import cuda_index_for_uuid, format_cuda_uuid
from llm_energy.protocols import GenerationResult, PromptTokenizer

log = logging.getLogger(__name__)


def cuda_device_uuids() -> list[str]:
    """The UUID of every CUDA device torch sees, in CUDA index order, as NVML writes UUIDs."""
    props = torch.cuda.get_device_properties
    return [format_cuda_uuid(props(i).uuid) for i in range(torch.cuda.device_count())]


def torch_device_for(backend: str, gpu_uuid: str | None = None) -> str:
    """The torch device for a run measured on `backend`. NVML: the CUDA device whose UUID is
    the measured GPU's (`cuda:N`; CUDA and NVML number GPUs differently), else one line saying
    why the model cannot run on that GPU. Every other backend runs the model on the CPU."""
    if backend != "nvml":
        return "cpu"
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
    """The CUDA index of each measured GPU, in the group's order (pure; each matched by UUID,
    never by index: CUDA and NVML number GPUs differently)."""
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
    `sim_device`: every call then reports its workload to it (runtime.simgen), and random
    weights skip the forward pass. `gpu_uuids` (several: model.device_map) spreads the model
    over exactly those GPUs on nvml; elsewhere the model stays on the CPU."""
    if sim_device is not None and backend == "simulated":
        from llm_energy.sim.generate import simulated_generator

        return simulated_generator(
            model,
            model_dir,
            device=sim_device,
            seed=seed,
            engine=engine,
            allow_compile=allow_compile,
            # The CPU forward pass only supplies outputs: never compiled (that is the GPU's).
            load_real=lambda: load_generator(
                model,
                model_dir,
                backend=backend,
                seed=seed,
                engine=engine,
                allow_compile=False,
                gpu_uuid=gpu_uuid,
            ),
        )
    from llm_energy.io.models import load_model

    if backend == "nvml" and gpu_uuids is not None and len(gpu_uuids) > 1:
        device, placement = multi_gpu_placement(gpu_uuids)
        net, tok = load_model(model, model_dir, device=device, seed=seed, **placement)
        return Generator(
            net,
            tok,
            family=model.family,
            device=str(getattr(net, "device", device)),  # where the first layer (inputs) lives
            engine=engine,
            chat_template=model.chat_template,
            allow_compile=allow_compile,
        )
    device = torch_device_for(backend, gpu_uuid)
    if device.startswith("cuda:"):
        torch.cuda.set_device(device)  # bare "cuda" and implicit-device calls mean this GPU too
    net, tok = load_model(
        model, model_dir, device=device, seed=seed, device_map=None, max_memory=None
    )
    return Generator(
        net,
        tok,
        family=model.family,
        device=device,
        engine=engine,
        chat_template=model.chat_template,
        allow_compile=allow_compile,
    )


class _FirstTokenClock(BaseStreamer):  # type: ignore[misc]
    """Notes when generate emits its first new token (the first `put` is the prompt)."""

    def __init__(self) -> None:
        self.calls = 0
        self.first_token_at: float | None = None

    def put(self, value: Any) -> None:
        self.calls += 1
        if self.calls == 2 and self.first_token_at is None:
            self.first_token_at = time.perf_counter()

    def end(self) -> None:
        pass


class Generator(PromptTokenizer):
    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        family: str,
        device: str,
        engine: str,
        chat_template: bool,
        allow_compile: bool,
    ) -> None:
        self.model, self.tok, self.family, self.device = model, tokenizer, family, device
        self.engine, self.chat_template, self.allow_compile = engine, chat_template, allow_compile
        self.tok.padding_side = "left" if family == "causal" else "right"
        eos = model.generation_config.eos_token_id if model.generation_config is not None else None
        eos_ids = eos if isinstance(eos, list) else [eos]
        self.eos_ids = {int(e) for e in eos_ids if e is not None} | (
            {int(tokenizer.eos_token_id)} if tokenizer.eos_token_id is not None else set()
        )

    # ------------------------------------------------------------ generate
    def _batch(self, prompts_ids: Sequence[Sequence[int]]) -> dict[str, torch.Tensor]:
        enc = self.tok.pad({"input_ids": [list(p) for p in prompts_ids]}, return_tensors="pt")
        return {k: v.to(self.device) for k, v in enc.items()}

    def _count_output(self, new_tokens: torch.Tensor, fixed: bool) -> list[int]:
        counts = []
        for row in new_tokens.tolist():
            if fixed:
                counts.append(len(row))
                continue
            n = len(row)
            for i, token in enumerate(row):
                if token in self.eos_ids:
                    n = i + 1  # the EOS token was generated too
                    break
            counts.append(n)
        return counts

    @torch.inference_mode()
    def generate(
        self,
        prompts_ids: Sequence[Sequence[int]],
        *,
        max_new_tokens: int,
        fixed: bool,
        measure_ttft: bool,
    ) -> GenerationResult:
        batch = self._batch(prompts_ids)
        kwargs: dict[str, Any] = {"max_new_tokens": max_new_tokens, "do_sample": False}
        if fixed:
            kwargs["min_new_tokens"] = max_new_tokens
        if self.engine == "static":
            kwargs["cache_implementation"] = "static"
        if not self.allow_compile:
            kwargs["disable_compile"] = True
        clock = _FirstTokenClock() if measure_ttft else None
        start = time.perf_counter()
        out = self.model.generate(**batch, streamer=clock, **kwargs)
        elapsed = time.perf_counter() - start
        new = out[:, batch["input_ids"].shape[1] :] if self.family == "causal" else out[:, 1:]
        counts = self._count_output(new, fixed)
        texts = [
            self.tok.decode(row[:n], skip_special_tokens=True)
            for row, n in zip(new.tolist(), counts, strict=True)
        ]
        ttft = (
            None if clock is None or clock.first_token_at is None else clock.first_token_at - start
        )
        return GenerationResult(texts, counts, elapsed, ttft)

    @torch.inference_mode()
    def reference_nll(self, prompt_ids: Sequence[int], reference: str) -> tuple[float, int]:
        """Teacher-forced negative log-likelihood (nats, summed) of a reference continuation."""
        ref_ids = self.tok(reference, add_special_tokens=False)["input_ids"]
        if not ref_ids:
            return 0.0, 0
        if self.family == "causal":
            ids = torch.tensor([list(prompt_ids) + list(ref_ids)], device=self.device)
            labels = ids.clone()
            labels[:, : len(prompt_ids)] = -100
            out = self.model(input_ids=ids, labels=labels)
        else:
            ids = torch.tensor([list(prompt_ids)], device=self.device)
            labels = torch.tensor([list(ref_ids)], device=self.device)
            out = self.model(input_ids=ids, labels=labels)
        # HF returns the mean over predicted tokens; causal LMs predict len(ref_ids) of them.
        return float(out.loss) * len(ref_ids), len(ref_ids)
