"""Typed, validated configuration (pure: no files, no DVC, no Hydra).

`conf/` (Hydra, plain YAML) is composed into `params.yaml`; each stage validates the sections it
reads with `load_config` below. A bad value raises `ConfigError`, whose message is one line
naming the key, the value and what is allowed, so stages can print it and exit without a
traceback and before writing anything.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import yaml

BACKENDS = ("auto", "nvml", "cpu", "simulated")
CONTROLS = ("lock", "observe")
OTHER_PROCESS_POLICIES = ("warn", "refuse")
SIMULATED_GPUS = ("h200", "h100", "a100")
FAMILIES = ("causal", "seq2seq")
SOURCES = ("gguf", "hub", "local")
WEIGHTS = ("pretrained", "random")
DTYPES = ("float32", "float16", "bfloat16", "auto")
TASK_KINDS = ("generation", "qa", "summarization")
OUTPUT_MODES = ("fixed", "natural")
ENGINES = ("eager", "static")
SWEEP_ORDERS = ("interleave", "random")
# Architectures the random-weights path knows how to build (transformers model_type values).
MODEL_TYPES = ("gpt2", "gpt_neo", "gptj", "mistral", "falcon", "t5", "llama", "qwen2", "opt")
PROMPT_SET_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
MAX_FREQ_MHZ = 5000  # no GPU clocks anywhere near this; catches kHz/Hz unit mistakes


class ConfigError(ValueError):
    """A configuration value is not allowed. The message is one line, for the user."""

    def __init__(self, key: str, value: Any, allowed: str) -> None:
        self.key, self.value, self.allowed = key, value, allowed
        super().__init__(f"params: {key} = {value!r} is not allowed: {allowed}")


# ---------------------------------------------------------------- small validators


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _choice(key: str, value: Any, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise ConfigError(key, value, "expected one of " + "|".join(allowed))
    return str(value)


def _int(key: str, value: Any, *, minimum: int, maximum: int | None = None) -> int:
    if not _is_int(value) or value < minimum or (maximum is not None and value > maximum):
        upper = f" and at most {maximum}" if maximum is not None else ""
        raise ConfigError(key, value, f"expected an integer of at least {minimum}{upper}")
    return int(value)


def _opt_int(key: str, value: Any, *, minimum: int, maximum: int | None = None) -> int | None:
    return None if value is None else _int(key, value, minimum=minimum, maximum=maximum)


def _float(key: str, value: Any, *, minimum: float, maximum: float | None = None) -> float:
    if not _is_number(value) or value < minimum or (maximum is not None and value > maximum):
        upper = f" and at most {maximum}" if maximum is not None else ""
        raise ConfigError(key, value, f"expected a number of at least {minimum}{upper}")
    return float(value)


def _bool(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(key, value, "expected true or false")
    return value


def _str(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(key, value, "expected a non-empty string")
    return value


def _freq(key: str, value: Any) -> int | None:
    if value is None:
        return None
    if not _is_int(value) or not 0 < value <= MAX_FREQ_MHZ:
        raise ConfigError(
            key,
            value,
            f"expected a clock in MHz (integer, 1..{MAX_FREQ_MHZ}) or null for driver defaults",
        )
    return int(value)


def _gpu_index(value: Any) -> int | str:
    if value == "auto":
        return "auto"
    if not _is_int(value) or value < 0:
        raise ConfigError(
            "gpu.index", value, "expected an NVML device index (integer >= 0) or auto"
        )
    return int(value)


def _int_list(key: str, value: Any, *, minimum: int) -> tuple[int, ...]:
    if value is None:
        return ()
    if not isinstance(value, list | tuple):
        raise ConfigError(key, value, "expected a list of integers")
    return tuple(_int(f"{key}[{i}]", v, minimum=minimum) for i, v in enumerate(value))


def _section(params: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = params.get(key)
    if not isinstance(value, Mapping):
        raise ConfigError(key, value, "expected a mapping (section missing from params.yaml?)")
    return value


def _check_keys(key: str, section: Mapping[str, Any], allowed: Sequence[str]) -> None:
    unknown = sorted(set(section) - set(allowed))
    if unknown:
        raise ConfigError(
            f"{key}.{unknown[0]}",
            section[unknown[0]],
            "unknown key; allowed keys: " + ", ".join(allowed),
        )


def _names(cls: type) -> list[str]:
    return [f.name for f in fields(cls)]


# ---------------------------------------------------------------- sections


@dataclass(frozen=True)
class MetaConfig:
    experiment: str
    seed: int

    @classmethod
    def parse(cls, s: Mapping[str, Any]) -> MetaConfig:
        _check_keys("meta", s, _names(cls))
        return cls(
            _str("meta.experiment", s.get("experiment")),
            _int("meta.seed", s.get("seed", 0), minimum=0),
        )


@dataclass(frozen=True)
class GpuConfig:
    backend: str
    control: str
    index: int | str  # an NVML index, or "auto": the first free allowed GPU (per-UUID lock)
    freq: int | None
    mem_freq: int | None
    on_other_processes: str
    idle_baseline_s: float
    idle_settle_s: float
    min_window_s: float
    min_window_periods: float
    tick_align: bool
    max_window_repeats: int
    cooldown_s: float
    state_dir: str | None
    simulated_gpu: str
    simulated_count: int
    simulated_alpha: float
    simulated_utilization: float
    power_timeline_period_s: float | None

    @classmethod
    def parse(cls, s: Mapping[str, Any]) -> GpuConfig:
        _check_keys("gpu", s, _names(cls))
        period = s.get("power_timeline_period_s")
        if period is not None:
            # Sampling faster than the counter/power averaging is noise and slows inference.
            period = _float("gpu.power_timeline_period_s", period, minimum=0.1)
        return cls(
            backend=_choice("gpu.backend", s.get("backend", "auto"), BACKENDS),
            control=_choice("gpu.control", s.get("control", "lock"), CONTROLS),
            index=_gpu_index(s.get("index", 0)),
            freq=_freq("gpu.freq", s.get("freq")),
            mem_freq=_freq("gpu.mem_freq", s.get("mem_freq")),
            on_other_processes=_choice(
                "gpu.on_other_processes",
                s.get("on_other_processes", "warn"),
                OTHER_PROCESS_POLICIES,
            ),
            idle_baseline_s=_float(
                "gpu.idle_baseline_s", s.get("idle_baseline_s", 2.0), minimum=0.0
            ),
            idle_settle_s=_float("gpu.idle_settle_s", s.get("idle_settle_s", 2.0), minimum=0.0),
            min_window_s=_float("gpu.min_window_s", s.get("min_window_s", 2.0), minimum=0.0),
            min_window_periods=_float(
                "gpu.min_window_periods", s.get("min_window_periods", 20), minimum=1.0
            ),
            tick_align=_bool("gpu.tick_align", s.get("tick_align", True)),
            max_window_repeats=_int(
                "gpu.max_window_repeats", s.get("max_window_repeats", 200), minimum=1
            ),
            cooldown_s=_float("gpu.cooldown_s", s.get("cooldown_s", 1.0), minimum=0.0),
            state_dir=None if s.get("state_dir") is None else _str("gpu.state_dir", s["state_dir"]),
            simulated_gpu=_choice(
                "gpu.simulated_gpu", s.get("simulated_gpu", "h200"), SIMULATED_GPUS
            ),
            simulated_count=_int(
                "gpu.simulated_count", s.get("simulated_count", 1), minimum=1, maximum=64
            ),
            simulated_alpha=_float(
                "gpu.simulated_alpha", s.get("simulated_alpha", 0.6), minimum=0.0, maximum=1.0
            ),
            simulated_utilization=_float(
                "gpu.simulated_utilization",
                s.get("simulated_utilization", 0.15),
                minimum=0.0,
                maximum=1.0,
            ),
            power_timeline_period_s=period,
        )


@dataclass(frozen=True)
class ModelConfig:
    name: str
    family: str
    source: str
    weights: str
    hub_id: str | None
    path: str | None
    gguf_package: str | None
    gguf_file: str | None
    dtype: str
    params_m: float
    max_context_tokens: int
    chat_template: bool
    prompt_set: str  # a folder under prompts/; the stages read its <task kind>.txt files
    arch: Mapping[str, Any]

    @classmethod
    def parse(cls, s: Mapping[str, Any]) -> ModelConfig:
        if "prompts" in s:  # the inline templates of older configs: say where they went
            raise ConfigError(
                "model.prompts",
                "...",
                "templates now live in files: move them to prompts/<set>/<task kind>.txt "
                "and set model.prompt_set: <set>",
            )
        _check_keys("model", s, _names(cls))
        source = _choice("model.source", s.get("source", "hub"), SOURCES)
        weights = _choice("model.weights", s.get("weights", "pretrained"), WEIGHTS)
        hub_id = s.get("hub_id")
        if source == "hub" and weights == "pretrained":
            hub_id = _str("model.hub_id", hub_id)
        if source == "gguf" and weights == "pretrained":
            _str("model.gguf_package", s.get("gguf_package"))
            _str("model.gguf_file", s.get("gguf_file"))
        if source == "local":
            _str("model.path", s.get("path"))
        arch = s.get("arch") or {}
        if not isinstance(arch, Mapping):
            raise ConfigError(
                "model.arch", arch, "expected a mapping of transformers config fields"
            )
        if weights == "random":
            _choice("model.arch.model_type", arch.get("model_type"), MODEL_TYPES)
        prompt_set = s.get("prompt_set")
        # A bare folder name, so that it can only point inside prompts/.
        if not isinstance(prompt_set, str) or not PROMPT_SET_NAME.fullmatch(prompt_set):
            raise ConfigError(
                "model.prompt_set",
                prompt_set,
                "expected the name of a folder under prompts/ (letters, digits, _ . -)",
            )
        return cls(
            name=_str("model.name", s.get("name")),
            family=_choice("model.family", s.get("family"), FAMILIES),
            source=source,
            weights=weights,
            hub_id=hub_id,
            path=s.get("path"),
            gguf_package=s.get("gguf_package"),
            gguf_file=s.get("gguf_file"),
            dtype=_choice("model.dtype", s.get("dtype", "float32"), DTYPES),
            params_m=_float("model.params_m", s.get("params_m"), minimum=0.0),
            max_context_tokens=_int(
                "model.max_context_tokens", s.get("max_context_tokens"), minimum=8
            ),
            chat_template=_bool("model.chat_template", s.get("chat_template", False)),
            prompt_set=prompt_set,
            arch=dict(arch),
        )


@dataclass(frozen=True)
class TaskConfig:
    name: str
    kind: str
    dataset: Mapping[str, Any]
    fields: Mapping[str, str]
    options: Mapping[str, Any]
    output_tokens: int
    output_mode: str

    @classmethod
    def parse(cls, key: str, s: Mapping[str, Any]) -> TaskConfig:
        _check_keys(
            key, s, ("name", "kind", "dataset", "fields", "options", "output_tokens", "output_mode")
        )
        dataset = s.get("dataset")
        if not isinstance(dataset, Mapping) or not dataset.get("path"):
            raise ConfigError(
                f"{key}.dataset",
                dataset,
                "expected a mapping with at least `path` (hub id or json/text)",
            )
        fmap = s.get("fields")
        if not isinstance(fmap, Mapping):
            raise ConfigError(
                f"{key}.fields", fmap, "expected a mapping item field -> dataset column"
            )
        return cls(
            name=_str(f"{key}.name", s.get("name")),
            kind=_choice(f"{key}.kind", s.get("kind"), TASK_KINDS),
            dataset=dict(dataset),
            fields=dict(fmap),
            options=dict(s.get("options") or {}),
            output_tokens=_int(f"{key}.output_tokens", s.get("output_tokens", 32), minimum=1),
            output_mode=_choice(f"{key}.output_mode", s.get("output_mode", "fixed"), OUTPUT_MODES),
        )


def parse_tasks(section: Mapping[str, Any]) -> tuple[TaskConfig, ...]:
    if not section:
        raise ConfigError(
            "task", section, "expected at least one task (generation, qa, summarization)"
        )
    return tuple(TaskConfig.parse(f"task.{name}", spec) for name, spec in section.items())


@dataclass(frozen=True)
class PrepareConfig:
    n_items: int
    seed: int

    @classmethod
    def parse(cls, s: Mapping[str, Any]) -> PrepareConfig:
        _check_keys("prepare", s, _names(cls))
        return cls(
            _int("prepare.n_items", s.get("n_items"), minimum=1),
            _int("prepare.seed", s.get("seed", 0), minimum=0),
        )


@dataclass(frozen=True)
class InferConfig:
    engine: str
    batch_size: int
    input_tokens: int | None
    output_tokens: int | None
    output_mode: str | None
    repetitions: int
    warmup_requests: int
    warmup_steady_k: int
    warmup_tolerance: float
    warmup_max_s: float
    measure_ttft: bool
    compile: bool
    max_items: int | None

    @classmethod
    def parse(cls, s: Mapping[str, Any]) -> InferConfig:
        _check_keys("infer", s, _names(cls))
        mode = s.get("output_mode")
        return cls(
            engine=_choice("infer.engine", s.get("engine", "eager"), ENGINES),
            batch_size=_int("infer.batch_size", s.get("batch_size", 1), minimum=1),
            input_tokens=_opt_int("infer.input_tokens", s.get("input_tokens"), minimum=1),
            output_tokens=_opt_int("infer.output_tokens", s.get("output_tokens"), minimum=1),
            output_mode=None if mode is None else _choice("infer.output_mode", mode, OUTPUT_MODES),
            repetitions=_int("infer.repetitions", s.get("repetitions", 1), minimum=1),
            warmup_requests=_int("infer.warmup_requests", s.get("warmup_requests", 1), minimum=0),
            warmup_steady_k=_int("infer.warmup_steady_k", s.get("warmup_steady_k", 3), minimum=2),
            warmup_tolerance=_float(
                "infer.warmup_tolerance", s.get("warmup_tolerance", 0.05), minimum=0.0, maximum=1.0
            ),
            warmup_max_s=_float("infer.warmup_max_s", s.get("warmup_max_s", 60.0), minimum=0.0),
            measure_ttft=_bool("infer.measure_ttft", s.get("measure_ttft", True)),
            compile=_bool("infer.compile", s.get("compile", False)),
            max_items=_opt_int("infer.max_items", s.get("max_items"), minimum=1),
        )


@dataclass(frozen=True)
class SweepConfig:
    name: str
    freqs_mhz: tuple[int, ...]
    input_tokens: tuple[int, ...]
    output_tokens: tuple[int, ...]
    batch_sizes: tuple[int, ...]
    engines: tuple[str, ...]
    order: str

    @classmethod
    def parse(cls, s: Mapping[str, Any]) -> SweepConfig:
        _check_keys("sweep", s, _names(cls))
        freqs = s.get("freqs_mhz") or []
        if not isinstance(freqs, list | tuple):
            raise ConfigError("sweep.freqs_mhz", freqs, "expected a list of MHz values")
        engines = s.get("engines") or []
        return cls(
            name=_str("sweep.name", s.get("name", "none")),
            # null in a frequency sweep means "driver default clocks" (the baseline).
            freqs_mhz=tuple(_freq(f"sweep.freqs_mhz[{i}]", v) for i, v in enumerate(freqs)),  # type: ignore[misc]
            input_tokens=_int_list("sweep.input_tokens", s.get("input_tokens"), minimum=1),
            output_tokens=_int_list("sweep.output_tokens", s.get("output_tokens"), minimum=1),
            batch_sizes=_int_list("sweep.batch_sizes", s.get("batch_sizes"), minimum=1),
            engines=tuple(
                _choice(f"sweep.engines[{i}]", e, ENGINES) for i, e in enumerate(engines)
            ),
            order=_choice("sweep.order", s.get("order", "interleave"), SWEEP_ORDERS),
        )


@dataclass(frozen=True)
class EmissionsConfig:
    enabled: bool
    country_iso_code: str
    region: str | None

    @classmethod
    def parse(cls, s: Mapping[str, Any]) -> EmissionsConfig:
        _check_keys("emissions", s, _names(cls))
        code = _str("emissions.country_iso_code", s.get("country_iso_code", "AUT"))
        if len(code) != 3 or not code.isalpha():
            raise ConfigError(
                "emissions.country_iso_code",
                code,
                "expected an ISO 3166-1 alpha-3 code such as AUT or USA",
            )
        return cls(
            _bool("emissions.enabled", s.get("enabled", True)), code.upper(), s.get("region")
        )


@dataclass(frozen=True)
class AggregateConfig:
    ci_level: float
    n_boot: int
    seed: int

    @classmethod
    def parse(cls, s: Mapping[str, Any]) -> AggregateConfig:
        _check_keys("aggregate", s, _names(cls))
        ci = _float("aggregate.ci_level", s.get("ci_level", 0.95), minimum=0.5, maximum=0.999)
        return cls(
            ci,
            _int("aggregate.n_boot", s.get("n_boot", 2000), minimum=100),
            _int("aggregate.seed", s.get("seed", 0), minimum=0),
        )


@dataclass(frozen=True)
class StatsConfig:
    alpha: float
    min_samples: int
    latency_budget_pct: float
    n_boot: int
    seed: int

    @classmethod
    def parse(cls, s: Mapping[str, Any]) -> StatsConfig:
        _check_keys("stats", s, _names(cls))
        alpha = s.get("alpha", 0.05)
        if not _is_number(alpha) or not 0 < alpha < 1:
            raise ConfigError(
                "stats.alpha", alpha, "expected a significance level strictly between 0 and 1"
            )
        return cls(
            alpha=float(alpha),
            min_samples=_int("stats.min_samples", s.get("min_samples", 3), minimum=2),
            latency_budget_pct=_float(
                "stats.latency_budget_pct", s.get("latency_budget_pct", 5.0), minimum=0.0
            ),
            n_boot=_int("stats.n_boot", s.get("n_boot", 1000), minimum=100),
            seed=_int("stats.seed", s.get("seed", 0), minimum=0),
        )


@dataclass(frozen=True)
class PlotsConfig:
    dpi: int

    @classmethod
    def parse(cls, s: Mapping[str, Any]) -> PlotsConfig:
        _check_keys("plots", s, _names(cls))
        return cls(_int("plots.dpi", s.get("dpi", 110), minimum=50, maximum=600))


@dataclass(frozen=True)
class Config:
    """The whole validated configuration; stages use the sections they declare in dvc.yaml."""

    meta: MetaConfig
    model: ModelConfig
    tasks: tuple[TaskConfig, ...]
    gpu: GpuConfig
    prepare: PrepareConfig
    infer: InferConfig
    sweep: SweepConfig
    emissions: EmissionsConfig
    aggregate: AggregateConfig
    stats: StatsConfig
    plots: PlotsConfig
    raw: Mapping[str, Any] = field(repr=False, compare=False, default_factory=dict)

    def task(self, name: str) -> TaskConfig:
        for task in self.tasks:
            if task.name == name:
                return task
        raise ConfigError("task", name, "expected one of " + "|".join(t.name for t in self.tasks))


SECTIONS = (
    "meta",
    "model",
    "task",
    "gpu",
    "prepare",
    "infer",
    "sweep",
    "emissions",
    "aggregate",
    "stats",
    "plots",
)


def load_config(params: Mapping[str, Any]) -> Config:
    """Validate a composed params mapping. Raises ConfigError with a one-line message."""
    _check_keys("params", params, SECTIONS)
    model = ModelConfig.parse(_section(params, "model"))
    tasks = parse_tasks(_section(params, "task"))
    infer = InferConfig.parse(_section(params, "infer"))
    sweep = SweepConfig.parse(_section(params, "sweep"))
    cfg = Config(
        meta=MetaConfig.parse(_section(params, "meta")),
        model=model,
        tasks=tasks,
        gpu=GpuConfig.parse(_section(params, "gpu")),
        prepare=PrepareConfig.parse(_section(params, "prepare")),
        infer=infer,
        sweep=sweep,
        emissions=EmissionsConfig.parse(_section(params, "emissions")),
        aggregate=AggregateConfig.parse(_section(params, "aggregate")),
        stats=StatsConfig.parse(_section(params, "stats")),
        plots=PlotsConfig.parse(_section(params, "plots")),
        raw=copy.deepcopy(dict(params)),
    )
    _check_lengths_fit(cfg)
    return cfg


def _check_lengths_fit(cfg: Config) -> None:
    """Output (and requested input) lengths must fit the model's context window."""
    limit = cfg.model.max_context_tokens
    candidates: list[tuple[str, int]] = []
    if cfg.infer.output_tokens is not None:
        candidates.append(("infer.output_tokens", cfg.infer.output_tokens))
    else:
        candidates += [(f"task.{t.name}.output_tokens", t.output_tokens) for t in cfg.tasks]
    candidates += [(f"sweep.output_tokens[{i}]", v) for i, v in enumerate(cfg.sweep.output_tokens)]
    for key, value in candidates:
        if value >= limit:
            raise ConfigError(
                key,
                value,
                f"output length must be below model {cfg.model.name}'s context of {limit} tokens",
            )
    inputs = [("infer.input_tokens", cfg.infer.input_tokens)] if cfg.infer.input_tokens else []
    inputs += [(f"sweep.input_tokens[{i}]", v) for i, v in enumerate(cfg.sweep.input_tokens)]
    for key, value in inputs:
        if value is not None and value >= limit:
            raise ConfigError(
                key,
                value,
                f"input length must be below model {cfg.model.name}'s context of {limit} tokens",
            )


# ---------------------------------------------------------------- overrides for plain `python stages/x.py`


def apply_overrides(params: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply `a.b=value` overrides (values parsed as YAML) to a params mapping.

    A key must already exist, as in Hydra's struct mode, unless it is written `+a.b=value`;
    this catches typos on hosts without Hydra (the GPU machine runs stages as plain scripts).
    """
    result = copy.deepcopy(dict(params))
    for item in overrides:
        if "=" not in item:
            raise ConfigError("override", item, "expected key=value, for example gpu.freq=1200")
        raw_key, raw_value = item.split("=", 1)
        add = raw_key.startswith("+")
        parts = raw_key.lstrip("+").split(".")
        node: dict[str, Any] = result
        for depth, part in enumerate(parts[:-1]):
            child = node.get(part)
            if not isinstance(child, dict):
                if not add:
                    raise ConfigError(
                        ".".join(parts[: depth + 1]), child, "no such section in params.yaml"
                    )
                child = node.setdefault(part, {})
            node = child
        if parts[-1] not in node and not add:
            raise ConfigError(
                raw_key, raw_value, "no such key in params.yaml (prefix with + to add one)"
            )
        node[parts[-1]] = yaml.safe_load(raw_value) if raw_value != "" else None
    return result
