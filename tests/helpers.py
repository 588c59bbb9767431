"""Shared test helpers: compose the real config and shrink it; tasks from conf/task over a patch."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from llm_energy.cli import compose_params
from llm_energy.config import TASK_KINDS, Config, TaskConfig
from llm_energy.io.prompts import read_prompt_templates
from llm_energy.paths import project_paths

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"


def compose(*overrides: str) -> dict[str, Any]:
    return compose_params(CONF, overrides)


def option_names(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def templates(cfg: Config) -> Mapping[str, str]:
    """The prompt templates a stage would pass to InferenceRun (read from the repo's prompts/)."""
    return read_prompt_templates(cfg, project_paths(REPO))


def merged(base: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `patch` laid over it; nested mappings merge key by key."""
    out = dict(base)
    for key, value in patch.items():
        old = out.get(key)
        both = isinstance(old, Mapping) and isinstance(value, Mapping)
        out[key] = merged(old, value) if both else value  # type: ignore[arg-type]
    return out


def task_config(patch: Mapping[str, Any] | TaskConfig) -> TaskConfig:
    """A validated task: conf/task/<kind>.yaml (generation, qa or summarization; qa for any
    other kind) with `patch` merged over it, so tests state only what they change."""
    if isinstance(patch, TaskConfig):
        return patch
    kind = patch.get("kind")
    base_name = kind if kind in TASK_KINDS else "qa"
    base = yaml.safe_load((CONF / "task" / f"{base_name}.yaml").read_text())[base_name]
    raw = merged(base, patch)
    return TaskConfig.parse(f"task.{raw.get('name')}", raw)
