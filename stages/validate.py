"""Stage `validate`: check the whole composed config before any stage deletes an output.

DVC deletes a stage's outputs right before running it, so a setting refused by `infer` (a clock
cap on a machine whose clocks cannot be locked) used to cost the previous results. This stage runs
first (prepare and model depend on its marker), reads every params section, probes only NVML
(no torch, well under 2 s) and writes a constant marker, so passing it re-runs nothing downstream.
"""

from __future__ import annotations

from _common import StageError, log, run_stage

from llm_energy.config.feasibility import (
    clock_cap_problem,
    knob_range_problem,
    requested_caps,
    requested_power_limits,
)
from llm_energy.config.settings import Config
from llm_energy.control.open import DeviceSpec, open_device
from llm_energy.control.session import has_clock_privilege
from llm_energy.device.base import Device
from llm_energy.device.nvml import nvml_available
from llm_energy.io.files import atomic_write_text
from llm_energy.io.prompts import read_prompt_templates
from llm_energy.paths import ProjectPaths
from llm_energy.run.plan import needs_resolving, resolve_clocks, sweep_size_problem

# Constant on purpose: its hash never changes, so downstream stages only see their own deps.
MARKER_TEXT = "params validated\n"
HOW_BACK = (
    "nothing was run or deleted; to get back to the committed params run `git checkout "
    "params.yaml` (a refused `dvc exp run -S ...` leaves its -S values in params.yaml)"
)


def main(cfg: Config, paths: ProjectPaths) -> None:
    read_prompt_templates(cfg, paths)  # a missing or broken template fails here, not in infer
    # Probing NVML only matters when a cap or limit is asked for (~0.1-0.5 s on a GPU host).
    setting = bool(requested_caps(cfg) + requested_power_limits(cfg))
    needs_probe = cfg.gpu.control == "lock" and setting
    backend_probe = needs_probe and cfg.gpu.backend in ("auto", "nvml")
    problem = sweep_size_problem(cfg) or clock_cap_problem(
        cfg,
        nvml_gpu_found=nvml_available() if backend_probe else False,
        privileged=has_clock_privilege() if needs_probe else True,
    )
    if problem:
        raise StageError(problem)
    if (needs_resolving(cfg) or needs_probe) and (cfg.gpu.backend == "simulated" or backend_probe):
        with _open_device(cfg, paths) as device:
            # the sweep's points on this device's clocks: relative points, collisions, big snaps
            resolve_clocks(cfg, device.supported_sm_clocks_mhz())
            # power limits inside the device's range, memory clocks among its supported ones
            problem = knob_range_problem(
                cfg,
                power_range_w=device.power_limit_range_w(),
                mem_clocks_mhz=device.supported_mem_clocks_mhz(),
            )
        if problem:
            raise StageError(problem)
    atomic_write_text(paths.validated_marker, MARKER_TEXT)
    log.info("params valid: %s on %s backend", cfg.meta.experiment, cfg.gpu.backend)


def _open_device(cfg: Config, paths: ProjectPaths) -> Device:
    spec = DeviceSpec.from_config(
        cfg.gpu,
        seed=cfg.meta.seed,
        country_iso_code=cfg.emissions.country_iso_code,
        state_dir=paths.gpu_state_dir(cfg.gpu.state_dir),
        index=0 if cfg.gpu.index == "auto" else cfg.gpu.index,  # read only: never locked here
    )
    return open_device(spec)


if __name__ == "__main__":
    run_stage("validate", main, hint=HOW_BACK)
