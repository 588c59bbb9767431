"""Shared test helpers: compose the real config and shrink it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llm_energy.cli import compose_params

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"


def compose(*overrides: str) -> dict[str, Any]:
    return compose_params(CONF, overrides)


def option_names(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))
