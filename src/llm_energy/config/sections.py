"""The configuration sections other than `task`: typed fields, each with its check (values live
in `conf/` only; cross-field rules in each class's `validate(key)`)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from llm_energy.config.clocks import clock_point
from llm_energy.config.schema import (
    ConfigError,
    Section,
    boolean,
    checked,
    choice,
    clock_mhz,
    integer,
    is_int,
    list_of,
    mapping,
    name_like,
    number,
    open_fraction,
    optional,
    reworded,
    text,
)

BACKENDS = ("auto", "nvml", "cpu", "simulated")
# lock: set SM clocks | observe: never change the GPU | slurm: the clocks the scheduler granted
CONTROLS = ("lock", "observe", "slurm")
OTHER_PROCESS_POLICIES = ("warn", "refuse")
SIMULATED_GPUS = ("h200", "h100", "a100")
FAMILIES = ("causal", "seq2seq")
SOURCES = ("gguf", "hub", "local")
WEIGHTS = ("pretrained", "random")
DTYPES = ("float32", "float16", "bfloat16", "auto")
OUTPUT_MODES = ("fixed", "natural")
ENGINES = ("eager", "static")
SWEEP_ORDERS = ("interleave", "random")
# Architectures the random-weights path knows how to build (transformers model_type values).
MODEL_TYPES = ("gpt2", "gpt_neo", "gptj", "mistral", "falcon", "t5", "llama", "qwen2", "opt")
PROMPT_SET_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
DEVICE_MAP_AUTO = "auto"


def gpu_index(key: str, value: Any) -> int | str:
    if value == "auto":
        return "auto"
    if not is_int(value) or value < 0:
        raise ConfigError(key, value, "expected an NVML device index (integer >= 0) or auto")
    return int(value)


def prompt_set_name(key: str, value: Any) -> str:
    # A bare folder name, so that it can only point inside prompts/.
    if not isinstance(value, str) or not PROMPT_SET_NAME.fullmatch(value):
        raise ConfigError(
            key, value, "expected the name of a folder under prompts/ (letters, digits, _ . -)"
        )
    return value


def device_map(key: str, value: Any) -> str | tuple[int, ...] | None:
    """null: one GPU | auto: every visible GPU the model needs | a list of >= 2 NVML indices."""
    if value is None or value == DEVICE_MAP_AUTO:
        return value
    allowed = "expected null (one GPU), auto, or a list of at least 2 distinct NVML indices"
    if not isinstance(value, list | tuple) or len(value) < 2:
        raise ConfigError(key, value, allowed)
    indices = tuple(integer(0)(f"{key}[{i}]", v) for i, v in enumerate(value))
    if len(set(indices)) != len(indices):
        raise ConfigError(key, value, allowed)
    return indices


def country_code(key: str, value: Any) -> str:
    if not isinstance(value, str) or len(value) != 3 or not value.isalpha():
        raise ConfigError(key, value, "expected an ISO 3166-1 alpha-3 code such as AUT or USA")
    return value.upper()


idle_sample_count = reworded(
    integer(2),
    "expected an integer of at least 2 (sub-readings per idle reading: a standard error needs two)",
)
significance = reworded(open_fraction, "expected a significance level strictly between 0 and 1")


@dataclass(frozen=True)
class MetaConfig(Section):
    KEY: ClassVar[str] = "meta"

    experiment: str = checked(text)
    seed: int = checked(integer(0))
    # the model options `llm-energy grid` expands this experiment into ([]: the one selected)
    grid_models: tuple[str, ...] = checked(list_of(name_like, what="model option names"))


@dataclass(frozen=True)
class GpuConfig(Section):
    KEY: ClassVar[str] = "gpu"

    backend: str = checked(choice(BACKENDS))
    control: str = checked(choice(CONTROLS))
    # an NVML index, or "auto": the first free allowed GPU (per-UUID lock)
    index: int | str = checked(gpu_index)
    wait_for_gpu_s: float = checked(number(0.0))  # index=auto: wait this long for a free GPU
    freq: int | float | str | None = checked(clock_point)  # MHz, 0.5 or "50%" of max, null
    mem_freq: int | None = checked(optional(clock_mhz))
    power_limit_w: float | None = checked(optional(number(1.0)))  # null: leave the limit as is
    on_other_processes: str = checked(choice(OTHER_PROCESS_POLICIES))
    idle_baseline_s: float = checked(number(0.0))
    # back-to-back sub-readings per idle reading: its SE needs two (energy/meter.py)
    idle_samples: int = checked(idle_sample_count)
    idle_settle_s: float = checked(number(0.0))
    min_window_s: float = checked(number(0.0))
    min_window_periods: float = checked(number(1.0))
    tick_align: bool = checked(boolean)
    max_window_repeats: int = checked(integer(1))
    cooldown_s: float = checked(number(0.0))
    state_dir: str | None = checked(optional(text))
    simulated_gpu: str = checked(choice(SIMULATED_GPUS))
    simulated_count: int = checked(integer(1, 64))
    simulated_alpha: float = checked(number(0.0, 1.0))
    simulated_utilization: float = checked(number(0.0, 1.0))
    # Sampling faster than the counter/power averaging is noise and slows inference.
    power_timeline_period_s: float | None = checked(optional(number(0.1)))


@dataclass(frozen=True)
class ModelConfig(Section):
    KEY: ClassVar[str] = "model"

    RETIRED: ClassVar[Mapping[str, str]] = {
        "prompts": "templates now live in files: move them to prompts/<set>/<task kind>.txt "
        "and set model.prompt_set: <set>",
    }

    name: str = checked(text)
    family: str = checked(choice(FAMILIES))
    source: str = checked(choice(SOURCES))
    weights: str = checked(choice(WEIGHTS))
    hub_id: str | None = checked(optional(text))
    path: str | None = checked(optional(text))
    gguf_package: str | None = checked(optional(text))
    gguf_file: str | None = checked(optional(text))
    dtype: str = checked(choice(DTYPES))
    params_m: float = checked(number(0.0))
    max_context_tokens: int = checked(integer(8))
    chat_template: bool = checked(boolean)
    prompt_set: str = checked(prompt_set_name)  # a folder under prompts/ (<task kind>.txt files)
    device_map: str | tuple[int, ...] | None = checked(device_map)
    arch: Mapping[str, Any] = checked(mapping("transformers config fields"))

    def validate(self, key: str) -> None:
        pretrained = self.weights == "pretrained"
        needed = {
            "hub_id": self.source == "hub" and pretrained,
            "gguf_package": self.source == "gguf" and pretrained,
            "gguf_file": self.source == "gguf" and pretrained,
            "path": self.source == "local",
        }
        for name, required in needed.items():
            if required and getattr(self, name) is None:
                needs = f"model.source={self.source} with weights={self.weights} needs it"
                raise ConfigError(f"{key}.{name}", None, f"{needs}: expected a non-empty string")
        if self.weights == "random":
            choice(MODEL_TYPES)(f"{key}.arch.model_type", self.arch.get("model_type"))


@dataclass(frozen=True)
class PrepareConfig(Section):
    KEY: ClassVar[str] = "prepare"

    n_items: int = checked(integer(1))
    seed: int = checked(integer(0))


@dataclass(frozen=True)
class InferConfig(Section):
    KEY: ClassVar[str] = "infer"

    engine: str = checked(choice(ENGINES))
    batch_size: int = checked(integer(1))
    input_tokens: int | None = checked(optional(integer(1)))
    output_tokens: int | None = checked(optional(integer(1)))
    output_mode: str | None = checked(optional(choice(OUTPUT_MODES)))
    repetitions: int = checked(integer(1))
    warmup_requests: int = checked(integer(0))
    warmup_steady_k: int = checked(integer(2))
    warmup_tolerance: float = checked(number(0.0, 1.0))
    warmup_max_s: float = checked(number(0.0))
    measure_ttft: bool = checked(boolean)
    phases: bool = checked(boolean)  # prefill in its own windows; decode = total - prefill
    compile: bool = checked(boolean)
    max_items: int | None = checked(optional(integer(1)))


@dataclass(frozen=True)
class SweepConfig(Section):
    KEY: ClassVar[str] = "sweep"

    name: str = checked(text)
    # null in a frequency sweep means "driver default clocks" (the baseline).
    freqs_mhz: tuple[int | float | str | None, ...] = checked(
        list_of(clock_point, what="clock points")
    )
    input_tokens: tuple[int, ...] = checked(list_of(integer(1), what="integers"))
    output_tokens: tuple[int, ...] = checked(list_of(integer(1), what="integers"))
    batch_sizes: tuple[int, ...] = checked(list_of(integer(1), what="integers"))
    engines: tuple[str, ...] = checked(list_of(choice(ENGINES), what="engines"))
    # null in these: the limit / memory clock as found (the baseline)
    power_limits_w: tuple[float | None, ...] = checked(
        list_of(optional(number(1.0)), what="power limits in W")
    )
    mem_freqs_mhz: tuple[int | None, ...] = checked(
        list_of(optional(clock_mhz), what="memory clocks in MHz")
    )
    order: str = checked(choice(SWEEP_ORDERS))


@dataclass(frozen=True)
class EmissionsConfig(Section):
    KEY: ClassVar[str] = "emissions"

    enabled: bool = checked(boolean)
    country_iso_code: str = checked(country_code)
    region: str | None = checked(optional(text))


@dataclass(frozen=True)
class AggregateConfig(Section):
    KEY: ClassVar[str] = "aggregate"

    ci_level: float = checked(number(0.5, 0.999))
    repetition_alpha: float = checked(significance)  # rep 0 vs the rest (repetition.csv)


@dataclass(frozen=True)
class StatsConfig(Section):
    KEY: ClassVar[str] = "stats"

    alpha: float = checked(significance)
    min_samples: int = checked(integer(2))
    latency_budget_pct: float = checked(number(0.0))


@dataclass(frozen=True)
class PlotsConfig(Section):
    KEY: ClassVar[str] = "plots"

    dpi: int = checked(integer(50, 600))
