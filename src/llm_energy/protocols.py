"""What `InferenceRun` needs from its collaborators, as structural types, so the runner imports
no torch or NVML and tests can pass fakes (positional-only where implementations' names differ)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, runtime_checkable

Prompts = Sequence[Sequence[int]]  # a batch of tokenised prompts

T = TypeVar("T")


@dataclass(frozen=True)
class GenerationResult:
    texts: list[str]
    output_tokens: list[int]
    elapsed_s: float  # host wall time of this call (the meter's window time is authoritative)
    ttft_s: float | None  # time to first token of the batch


class PromptTokenizer:
    """Prompt tokens through the model's tokenizer (its chat template where the model uses
    one); shared by the real and the simulated generators so both fit prompts alike."""

    tok: Any
    chat_template: bool

    def encode(self, prompt: str) -> list[int]:
        if self.chat_template and getattr(self.tok, "chat_template", None):
            ids = self.tok.apply_chat_template(
                [{"role": "user", "content": prompt}],
                add_generation_prompt=True,
                tokenize=True,
                return_dict=True,
            )["input_ids"]
            return list(ids)
        return list(self.tok(prompt, add_special_tokens=True)["input_ids"])

    def count_tokens(self, prompt: str) -> int:
        return len(self.encode(prompt))

    def truncate_text(self, text: str, n_tokens: int) -> str:
        ids = self.tok(text, add_special_tokens=False)["input_ids"][:n_tokens]
        return str(self.tok.decode(ids, skip_special_tokens=True))


@runtime_checkable
class TextGenerator(Protocol):
    """Tokenizes prompts and generates a batch; `engine` is switched per sweep point."""

    engine: str

    def encode(self, prompt: str, /) -> list[int]: ...

    def count_tokens(self, prompt: str, /) -> int: ...

    def truncate_text(self, text: str, n_tokens: int, /) -> str: ...

    def generate(
        self, prompts_ids: Prompts, /, *, max_new_tokens: int, fixed: bool, measure_ttft: bool
    ) -> GenerationResult: ...

    def reference_nll(self, prompt_ids: Sequence[int], reference: str, /) -> tuple[float, int]:
        """Summed negative log-likelihood of `reference` after the prompt, and its token count."""


class Reading(Protocol):
    """What the runner always reads of a window reading (the rest via getattr: fakes stay small)."""

    @property
    def energy_j(self) -> float: ...
    @property
    def elapsed_s(self) -> float: ...
    @property
    def trusted(self) -> bool: ...
    @property
    def energy_source(self) -> str: ...
    @property
    def sm_clock_mean_mhz(self) -> float | None: ...
    @property
    def sm_clock_min_mhz(self) -> float | None: ...
    @property
    def mem_clock_mhz(self) -> float | None: ...
    @property
    def clock_event_reasons(self) -> int | None: ...
    @property
    def temperature_c(self) -> float | None: ...
    @property
    def cap_held(self) -> bool: ...


@runtime_checkable
class WindowMeter(Protocol):
    def run_until_trusted(
        self, fn: Callable[[], T], /, cap_mhz: int | None = ..., *, max_repeats: int
    ) -> tuple[Reading, int, T]:
        """Repeat `fn` inside one measurement window: (reading, repeats, last result)."""

    def measure_idle_samples_w(self, seconds: float, samples: int, /) -> list[float]:
        """Idle power (W) of `samples` back-to-back idle windows sharing `seconds`."""


@runtime_checkable
class SmClockControl(Protocol):
    """The clock session: sets an SM cap, memory clock and power limit (None: as found)."""

    @property
    def applied_sm_mhz(self) -> int | None: ...

    @property
    def applied_mem_mhz(self) -> int | None: ...

    @property
    def applied_power_limit_w(self) -> float | None: ...

    def set_sm_cap(self, freq_mhz: int | None, /) -> int | None: ...

    def set_mem_cap(self, freq_mhz: int | None, /) -> None: ...

    def set_power_limit_w(self, power_w: float | None, /) -> None: ...

    def freq_label_mhz(self, cap_held: bool | None, /) -> int | None:
        """gpu.control=slurm: the requested cap when the window's clocks held it, else None."""


@runtime_checkable
class MeasuredDevice(Protocol):
    """The measured device: where its energy comes from, and a barrier for queued work."""

    @property
    def energy_source(self) -> str: ...

    def synchronize(self) -> None: ...


@runtime_checkable
class ProgressCallback(Protocol):
    """Told after the warm-up (nothing done yet) and after every measured batch
    (`progress.ProgressTracker` writes it where `llm-energy grid status` reads it)."""

    def __call__(
        self, *, points_done: int, points_total: int, batches_done: int, batches_total: int
    ) -> None: ...
