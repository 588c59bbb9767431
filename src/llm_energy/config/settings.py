"""Typed, validated configuration (pure: no files, DVC or Hydra): each stage validates the
params.yaml composed from `conf/`; a bad value is one `ConfigError` line before anything is written."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from llm_energy.config.schema import ConfigError, did_you_mean, dotted_keys
from llm_energy.config.sections import (
    AggregateConfig,
    EmissionsConfig,
    GpuConfig,
    InferConfig,
    MetaConfig,
    ModelConfig,
    PlotsConfig,
    PrepareConfig,
    StatsConfig,
    SweepConfig,
)
from llm_energy.config.tasks import TaskConfig, parse_tasks


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


# params.yaml section -> (Config attribute, parser), in the order they are checked.
_PARSERS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "meta": ("meta", MetaConfig.parse),
    "model": ("model", ModelConfig.parse),
    "task": ("tasks", parse_tasks),
    "gpu": ("gpu", GpuConfig.parse),
    "prepare": ("prepare", PrepareConfig.parse),
    "infer": ("infer", InferConfig.parse),
    "sweep": ("sweep", SweepConfig.parse),
    "emissions": ("emissions", EmissionsConfig.parse),
    "aggregate": ("aggregate", AggregateConfig.parse),
    "stats": ("stats", StatsConfig.parse),
    "plots": ("plots", PlotsConfig.parse),
}
SECTIONS = tuple(_PARSERS)


def load_config(params: Mapping[str, Any]) -> Config:
    """Validate a composed params mapping. Raises ConfigError with a one-line message."""
    if not isinstance(params, Mapping):
        raise ConfigError("params", params, "expected a mapping of sections")
    unknown = sorted(str(k) for k in params if k not in _PARSERS)
    if unknown:
        hint = did_you_mean(unknown[0], SECTIONS) or ";"
        why = f"unknown key{hint} allowed keys: {', '.join(SECTIONS)}"
        raise ConfigError(f"params.{unknown[0]}", params[unknown[0]], why)
    sections = {attr: parse(params.get(key)) for key, (attr, parse) in _PARSERS.items()}
    cfg = Config(**sections, raw=copy.deepcopy(dict(params)))
    _check_lengths_fit(cfg)
    return cfg


def _check_lengths_fit(cfg: Config) -> None:
    """Output and input lengths must fit the model's context; a phase split needs a decode."""
    limit = cfg.model.max_context_tokens
    context = f"model {cfg.model.name}'s context of {limit} tokens"
    candidates: list[tuple[str, int]] = []
    if cfg.infer.output_tokens is not None:
        candidates.append(("infer.output_tokens", cfg.infer.output_tokens))
    else:
        candidates += [(f"task.{t.name}.output_tokens", t.output_tokens) for t in cfg.tasks]
    candidates += [(f"sweep.output_tokens[{i}]", v) for i, v in enumerate(cfg.sweep.output_tokens)]
    for key, value in candidates:
        if value == 1 and cfg.infer.phases:
            raise ConfigError(
                key,
                value,
                "one output token is all prefill, there is no decode to split from it: "
                "ask for 2 or more, or set infer.phases=false",
            )
        if value >= limit:
            raise ConfigError(key, value, f"output length must be below {context}")
    inputs = [("infer.input_tokens", cfg.infer.input_tokens)] if cfg.infer.input_tokens else []
    inputs += [(f"sweep.input_tokens[{i}]", v) for i, v in enumerate(cfg.sweep.input_tokens)]
    for key, value in inputs:
        if value is not None and value >= limit:
            raise ConfigError(key, value, f"input length must be below {context}")


def apply_overrides(params: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply `a.b=value` overrides (YAML values) to a params mapping. A key must exist unless
    written `+a.b=value`, as in Hydra's struct mode: this catches typos without Hydra."""
    result = copy.deepcopy(dict(params))
    for item in overrides:
        if "=" not in item:
            raise ConfigError("override", item, "expected key=value, for example gpu.freq=1200")
        raw_key, raw_value = item.split("=", 1)
        add = raw_key.startswith("+")
        parts = raw_key.lstrip("+").split(".")
        if len(parts) == 1 and isinstance(result.get(parts[0]), dict) and not add:
            raise ConfigError(
                raw_key,
                raw_value,
                f"{item} picks a config group, which only composing conf/ can do "
                f"(`llm-energy compose {item}`, `dvc exp run -S {item}`); "
                f"here set its keys instead ({parts[0]}.<key>=<value>)",
            )
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
            hint = did_you_mean(raw_key, dotted_keys(params))
            raise ConfigError(
                raw_key, raw_value, f"no such key in params.yaml{hint or ''} (+ adds a key)"
            )
        node[parts[-1]] = yaml.safe_load(raw_value) if raw_value != "" else None
    return result
