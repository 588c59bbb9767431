"""One timed generation call with torch: batching, fixed or natural length, TTFT, reference NLL.
No energy here: the caller's window reads the meter at its edges only."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch
from transformers.generation.streamers import BaseStreamer

from llm_energy.protocols import GenerationResult, Prompts, PromptTokenizer


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
        eos_ids = [*(eos if isinstance(eos, list) else [eos]), tokenizer.eos_token_id]
        self.eos_ids = {int(e) for e in eos_ids if e is not None}

    def _count_output(self, new_tokens: torch.Tensor, fixed: bool) -> list[int]:
        rows = new_tokens.tolist()
        if fixed:
            return [len(row) for row in rows]
        # Up to the first EOS, which was generated too; the whole row without one.
        return [
            next((i + 1 for i, t in enumerate(row) if t in self.eos_ids), len(row)) for row in rows
        ]

    @torch.inference_mode()
    def generate(
        self, prompts_ids: Prompts, *, max_new_tokens: int, fixed: bool, measure_ttft: bool
    ) -> GenerationResult:
        enc = self.tok.pad({"input_ids": [list(p) for p in prompts_ids]}, return_tensors="pt")
        batch = {k: v.to(self.device) for k, v in enc.items()}
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
        first = clock.first_token_at if clock is not None else None
        ttft = None if first is None else first - start
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
        else:
            ids = torch.tensor([list(prompt_ids)], device=self.device)
            labels = torch.tensor([list(ref_ids)], device=self.device)
        out = self.model(input_ids=ids, labels=labels)
        # HF returns the mean over predicted tokens; causal LMs predict len(ref_ids) of them.
        return float(out.loss) * len(ref_ids), len(ref_ids)
