"""llm-energy: energy, latency and quality of LLM inference under GPU frequency caps.

`llm_energy.measure(...)` and `llm_energy.locked_clocks(...)` measure or cap your own workload
with the pipeline's machinery (see `llm_energy.api`); importing the package loads nothing else."""

from typing import Any

__version__ = "0.1.0"
PUBLIC_API = ("measure", "locked_clocks", "energy_meter", "Measurement")


def __getattr__(name: str) -> Any:
    if name in PUBLIC_API:
        from llm_energy import api

        return getattr(api, name)
    raise AttributeError(f"module 'llm_energy' has no attribute {name!r}")
