"""Composing conf/ into the params dict, exactly as DVC's `hydra.enabled` does (Hydra)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any


def compose_params(conf_dir: Path, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Compose conf/config.yaml with Hydra, exactly like DVC's `hydra.enabled` composition."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(conf_dir.resolve()), version_base=None):
        cfg = compose(config_name="config", overrides=list(overrides))
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
