"""The bare side of the overhead comparison (overhead.py): plain `model.generate` calls on
pre-built tensors with the generation settings the infer stage uses, no streamer, no windows,
no records; one counter window around a whole round."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bench_common import round_window
from llm_energy.energy.meter import EnergyMeter


def generate_kwargs(gen: Any, new_tokens: int) -> dict[str, Any]:
    # What Generator.generate passes for a fixed-length request, minus the TTFT streamer.
    kwargs: dict[str, Any] = {
        "max_new_tokens": new_tokens,
        "min_new_tokens": new_tokens,
        "do_sample": False,
    }
    if gen.engine == "static":
        kwargs["cache_implementation"] = "static"
    if not gen.allow_compile:
        kwargs["disable_compile"] = True
    return kwargs


def bare_inputs(gen: Any, ids: Sequence[int]) -> dict[str, Any]:
    """Pre-built batch-1 tensors (a bare loop tokenises once, outside its timing)."""
    import torch

    input_ids = torch.tensor([list(ids)], device=gen.device)
    return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}


def bare_round(
    gen: Any,
    meter: EnergyMeter,
    plan: Sequence[tuple[dict[str, Any], int]],
    new_tokens: int,
) -> dict[str, Any]:
    """Plain generate calls, each prompt `repeats` times; one counter window around the round.

    `window_begin`/`window_end` around each call are no-ops on real devices; they tell the
    simulated device when its "GPU" is busy (otherwise the bare side would count as idle)."""
    import torch

    device = meter.device
    kwargs = generate_kwargs(gen, new_tokens)
    tokens = calls = 0
    # inference_mode as in Generator.generate: otherwise the ratio would include autograd
    # bookkeeping (no_grad vs inference_mode), not the measurement path.
    with torch.inference_mode(), round_window(meter) as w:
        for inputs, repeats in plan:
            for _ in range(repeats):
                device.window_begin()
                out = gen.model.generate(**inputs, **kwargs)
                device.window_end()
                tokens += int(out.shape[1] - inputs["input_ids"].shape[1])
                calls += 1
    return {
        "tokens": tokens,
        "calls": calls,
        "wall_s": w.wall_s,
        "energy_j": w.energy_j,
        "counter_window_s": w.window_s,
        "tick_aligned": w.tick_aligned,
    }


__all__ = ["bare_inputs", "bare_round", "generate_kwargs"]
