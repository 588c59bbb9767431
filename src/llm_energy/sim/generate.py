"""Generators for the simulated GPU: each `generate` call reports its workload to the device's
model clock (`device.run_workload`). `SimulatedGenerator` (random weights) skips the forward pass;
`ReportingGenerator` (pretrained) runs the real model on the CPU once per distinct request and
replays its outputs (docs/device.md)."""

from __future__ import annotations

import math
import random
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from llm_energy.io.files import read_json
from llm_energy.protocols import GenerationResult, Prompts, PromptTokenizer
from llm_energy.sim import archspec, roofline


class WorkloadDevice(Protocol):
    """What a generator needs from the simulated device (`sim.device.SimulatedDevice`)."""

    def use_workload_clock(self) -> None: ...

    def run_workload(self, work: roofline.Workload) -> Any: ...


def workload_for(
    model: Any, *, batch: int, prompt_tokens: int, new_tokens: int, engine: str, compiled: bool
) -> roofline.Workload:
    """The GPU workload of one call of `model` (a config.ModelConfig: arch block and dtype)."""
    spec, nbytes = archspec.arch_spec(model.arch), archspec.DTYPE_BYTES.get(str(model.dtype), 4)
    prompt = max(prompt_tokens, 1)
    return roofline.Workload(spec, nbytes, batch, prompt, new_tokens, engine, compiled)


def natural_length(
    seed: int, prompt_ids: Sequence[int], max_new_tokens: int, eos_probability: float
) -> int:
    """A deterministic output length in [1, max] for one prompt, stopping where a token drawn
    with `eos_probability` per step is the first EOS: the same for a seed and a prompt at
    every clock and repetition, as greedy decoding's EOS would be."""
    if max_new_tokens <= 1:
        return max(max_new_tokens, 0)
    p = min(max(eos_probability, 0.0), 1.0)
    if p <= 0.0:
        return max_new_tokens
    key = zlib.crc32(f"{seed}:{','.join(map(str, prompt_ids))}".encode())
    u = random.Random(key).random()  # inverse CDF of the geometric first-EOS position
    first_eos = 1 if p >= 1.0 else math.ceil(math.log1p(-u) / math.log1p(-p))
    return min(max(first_eos, 1), max_new_tokens)


class _Reporter:
    """Reports each call's workload to the device and returns the device's timing."""

    def __init__(self, model: Any, device: WorkloadDevice, engine: str, compiled: bool) -> None:
        self.model_cfg, self.sim_device = model, device
        self.engine, self.allow_compile = engine, compiled
        device.use_workload_clock()  # from now on only reported work is busy time

    def report(
        self, prompts_ids: Sequence[Sequence[int]], counts: Sequence[int], measure_ttft: bool
    ) -> tuple[float, float | None]:
        work = workload_for(
            self.model_cfg,
            batch=len(prompts_ids),
            prompt_tokens=max((len(p) for p in prompts_ids), default=1),
            new_tokens=max(counts, default=0),
            engine=self.engine,
            compiled=self.engine == "static" and self.allow_compile,
        )
        timing = self.sim_device.run_workload(work)
        return float(timing.time_s), float(timing.ttft_s) if measure_ttft else None


class SimulatedGenerator(_Reporter, PromptTokenizer):
    """No forward pass: token counts and placeholder texts, timed by the simulated GPU."""

    device = "none (simulated forward pass)"  # run.json's torch_device

    def __init__(
        self,
        tokenizer: Any,
        *,
        model: Any,
        device: WorkloadDevice,
        seed: int,
        engine: str,
        allow_compile: bool,
    ) -> None:
        super().__init__(model, device, engine, allow_compile)
        self.tok, self.seed, self.chat_template = tokenizer, seed, bool(model.chat_template)

    def generate(
        self, prompts_ids: Prompts, *, max_new_tokens: int, fixed: bool, measure_ttft: bool
    ) -> GenerationResult:
        eos_p = 1.0 / max(len(self.tok), 2)  # random weights: EOS as likely as any token
        counts = [
            max_new_tokens if fixed else natural_length(self.seed, ids, max_new_tokens, eos_p)
            for ids in prompts_ids
        ]
        elapsed_s, ttft_s = self.report(prompts_ids, counts, measure_ttft)
        texts = [f"[simulated output: {n} tokens]" for n in counts]
        return GenerationResult(texts, counts, elapsed_s, ttft_s)

    def reference_nll(self, prompt_ids: Sequence[int], reference: str) -> tuple[float, int]:
        """What random weights score: a uniform guess over the vocabulary, ln(V) per token."""
        n = len(self.tok(reference, add_special_tokens=False)["input_ids"])
        return n * math.log(max(len(self.tok), 2)), n


class ReportingGenerator(_Reporter):
    """The real model on the CPU (once per distinct request), timed by the simulated GPU."""

    def __init__(
        self, inner: Any, *, model: Any, device: WorkloadDevice, allow_compile: bool
    ) -> None:
        super().__init__(model, device, inner.engine, allow_compile)
        self.inner, self.device = inner, inner.device  # where the real forward pass runs
        self._outputs: dict[tuple[Any, ...], tuple[list[str], list[int]]] = {}

    def encode(self, prompt: str) -> list[int]:
        return list(self.inner.encode(prompt))

    def count_tokens(self, prompt: str) -> int:
        return int(self.inner.count_tokens(prompt))

    def truncate_text(self, text: str, n_tokens: int) -> str:
        return str(self.inner.truncate_text(text, n_tokens))

    def reference_nll(self, prompt_ids: Sequence[int], reference: str) -> tuple[float, int]:
        nll, n = self.inner.reference_nll(prompt_ids, reference)
        return float(nll), int(n)

    def generate(
        self, prompts_ids: Prompts, *, max_new_tokens: int, fixed: bool, measure_ttft: bool
    ) -> GenerationResult:
        key = (tuple(tuple(p) for p in prompts_ids), max_new_tokens, fixed, self.engine)
        if key not in self._outputs:
            self.inner.engine = self.engine
            real = self.inner.generate(
                prompts_ids, max_new_tokens=max_new_tokens, fixed=fixed, measure_ttft=False
            )
            self._outputs[key] = (list(real.texts), list(real.output_tokens))
        texts, counts = self._outputs[key]
        elapsed_s, ttft_s = self.report(prompts_ids, counts, measure_ttft)
        return GenerationResult(list(texts), list(counts), elapsed_s, ttft_s)


class BpeTokenizer:
    """tokenizer.json through `tokenizers` alone (no transformers import: ~2 s of CPU less): what
    the simulated path asks of a transformers tokenizer, answered alike (chat template: none)."""

    def __init__(self, path: Path) -> None:
        from tokenizers import Tokenizer

        self.backend = Tokenizer.from_file(str(path))

    def __len__(self) -> int:
        return int(self.backend.get_vocab_size(with_added_tokens=True))

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict[str, list[int]]:
        return {"input_ids": self.backend.encode(text, add_special_tokens=add_special_tokens).ids}

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        return str(self.backend.decode(list(ids), skip_special_tokens=skip_special_tokens))


def load_tokenizer(model: Any, model_dir: Path) -> Any:
    """The materialised tokenizer: `BpeTokenizer` for the plain BPE, else transformers' (no pad)."""
    from llm_energy.io.models import REMATERIALIZE, ModelLoadError, materialized_source

    source = Path(materialized_source(model, Path(model_dir)))
    settings = read_json(source / "tokenizer_config.json", remedy=REMATERIALIZE, expect=dict)
    # The keys materialize writes: others (chat template, BOS/EOS, clean-up) change transformers'.
    keys = "backend bos_token eos_token pad_token model_max_length tokenizer_class".split()
    plain = settings.keys() <= set(keys) and not (source / "chat_template.jinja").exists()
    if plain and settings.get("tokenizer_class") == "TokenizersBackend":
        if (source / "tokenizer.json").is_file():
            return BpeTokenizer(source / "tokenizer.json")
        raise ModelLoadError(f"{source / 'tokenizer.json'} is missing: {REMATERIALIZE}")
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(source)
    except OSError as exc:
        raise ModelLoadError(f"cannot load the tokenizer in {source}: {REMATERIALIZE}") from exc


def simulated_generator(
    model: Any,
    model_dir: Path,
    *,
    device: WorkloadDevice,
    seed: int,
    engine: str,
    allow_compile: bool,
    load_real: Any,
) -> SimulatedGenerator | ReportingGenerator:
    """The generator for a run on the simulated GPU: no forward pass for random weights, else
    the real model (`load_real()`, a run.hf_generate.Generator) wrapped to report its workloads."""
    if model.weights == "random":
        tok = load_tokenizer(model, model_dir)
        return SimulatedGenerator(
            tok, model=model, device=device, seed=seed, engine=engine, allow_compile=allow_compile
        )
    return ReportingGenerator(load_real(), model=model, device=device, allow_compile=allow_compile)
