"""Shared test helpers: compose the real config and shrink it."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from llm_energy.cli import compose_params
from llm_energy.config import Config
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
