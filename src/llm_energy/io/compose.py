"""Composing conf/ into the params dict, exactly as DVC's `hydra.enabled` does (Hydra)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from llm_energy.config.schema import ConfigError, did_you_mean, dotted_keys


def compose_params(conf_dir: Path, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Compose conf/config.yaml with Hydra, exactly like DVC's `hydra.enabled` composition."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import ConfigCompositionException
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(conf_dir.resolve()), version_base=None):
        try:
            cfg = compose(config_name="config", overrides=list(overrides))
        except ConfigCompositionException as exc:
            raise _one_line(exc, compose(config_name="config"), overrides) from None
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def _one_line(exc: Exception, base: Any, overrides: Sequence[str]) -> ConfigError:
    """Hydra's multi-line "Could not override 'gpu.frq'" as one line with a did-you-mean."""
    from omegaconf import OmegaConf

    match = re.search(r"Could not override '([^']+)'", str(exc))
    if match is None:
        return ConfigError("override", " ".join(overrides), str(exc).splitlines()[0])
    key = match.group(1)
    value = next((o.split("=", 1)[1] for o in overrides if o.split("=", 1)[0] == key), None)
    known = dotted_keys(OmegaConf.to_container(base, resolve=False))  # type: ignore[arg-type]
    return ConfigError(key, value, f"no such key in conf/{did_you_mean(key, known) or ''}")
