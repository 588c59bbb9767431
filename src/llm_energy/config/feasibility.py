"""Settings that validate one by one but cannot run together on this machine (pure: the caller
passes what it probed). Asked before DVC deletes any output, so a refusal costs nothing."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llm_energy.config.settings import Config


def _asked(cfg: Config, sweep_key: str, gpu_key: str) -> list[tuple[str, Any]]:
    """(params key, value) of each non-null value of a knob: its sweep list, else gpu.<key>."""
    values = getattr(cfg.sweep, sweep_key)
    if values:
        return [(f"sweep.{sweep_key}[{i}]", v) for i, v in enumerate(values) if v is not None]
    one = getattr(cfg.gpu, gpu_key)
    return [] if one is None else [(f"gpu.{gpu_key}", one)]


def requested_caps(cfg: Config) -> list[tuple[str, int]]:
    """(params key, MHz) of every clock cap the config asks to lock (SM, then memory)."""
    return _asked(cfg, "freqs_mhz", "freq") + _asked(cfg, "mem_freqs_mhz", "mem_freq")


def requested_power_limits(cfg: Config) -> list[tuple[str, float]]:
    """(params key, W) of every power limit the config asks to set."""
    return _asked(cfg, "power_limits_w", "power_limit_w")


def knob_range_problem(
    cfg: Config, *, power_range_w: tuple[float, float] | None, mem_clocks_mhz: Sequence[int]
) -> str | None:
    """Why a power limit or memory clock is outside what this device allows (the range / the
    supported clocks it reported), in one line; None when every one fits."""
    if cfg.gpu.control != "lock":
        return None
    for key, w in requested_power_limits(cfg):
        if power_range_w is None:
            return f"{key} = {w:g} W, but this device reports no settable power limit"
        lo, hi = power_range_w
        if not lo <= w <= hi:
            return f"{key} = {w:g} W is outside this GPU's power-limit range {lo:g}-{hi:g} W"
    for key, mhz in requested_caps(cfg):
        if "mem_freq" in key and mhz not in mem_clocks_mhz:
            listed = ", ".join(map(str, mem_clocks_mhz)) or "none reported"
            return (
                f"{key} = {mhz} MHz is not a supported memory clock here (supported: {listed} MHz)"
            )
    return None


def clock_cap_problem(cfg: Config, *, nvml_gpu_found: bool, privileged: bool) -> str | None:
    """Why the requested caps cannot be applied here, with what to do instead; None if they can."""
    if cfg.gpu.control == "slurm":
        return slurm_problem(cfg)
    caps = requested_caps(cfg) + requested_power_limits(cfg)
    if cfg.gpu.control != "lock":  # observe never calls a setter: its SM cap is only a label
        knobs = [k for k, _ in caps if "power_limit" in k or k.startswith("sweep.mem_freqs")]
        if not knobs:
            return None
        return (
            f"{knobs[0]} asks to change the GPU, but gpu.control={cfg.gpu.control} never does: "
            f"set gpu.control=lock, or leave {knobs[0].split('[')[0]} empty/null"
        )
    if not caps:
        return None  # no cap means driver defaults
    key, value = caps[0]
    knob = "set the power limit" if "power_limit" in key else "lock GPU clocks"
    asked = f"{key} = {value} asks to {knob} (gpu.control=lock)"
    backend = cfg.gpu.backend  # the backend infer will open: auto is nvml when NVML sees a GPU
    if backend == "auto":
        backend = "nvml" if nvml_gpu_found else "cpu"
    if backend == "nvml" and not nvml_gpu_found:
        return (
            f"{asked}, but gpu.backend=nvml and NVML finds no NVIDIA GPU here: run on an NVIDIA "
            "host, or use gpu=simulated (gpu.backend=simulated) for a simulated sweep"
        )
    if backend == "cpu":
        found = "" if cfg.gpu.backend == "cpu" else " (gpu.backend=auto found no NVIDIA GPU)"
        return (
            f"{asked}, but the cpu backend{found} has no controllable GPU clocks: use gpu=simulated "
            "(gpu.backend=simulated) for a simulated sweep, run on an NVIDIA host, or set "
            f"{key.split('[')[0]}=null for driver default clocks"
        )
    if backend == "nvml" and not privileged:
        return (
            f"{asked}, but this process is neither root nor has CAP_SYS_ADMIN, which NVML needs "
            "to change clocks and power limits: run with sudo or grant CAP_SYS_ADMIN, or set gpu.control=observe"
        )
    return None


def slurm_problem(cfg: Config) -> str | None:
    """gpu.control=slurm: SLURM applies one cap per job step (`--gpu-freq`), so a sweep of
    several caps cannot run in one; it sets no power limit; it needs NVIDIA GPUs."""
    limits = requested_power_limits(cfg)
    if limits:
        return (
            f"{limits[0][0]} asks to set the power limit, but gpu.control=slurm only observes "
            "what SLURM applied and --gpu-freq sets clocks, not power limits: use gpu.control=lock"
        )
    for key, one in (("freqs_mhz", "freq"), ("mem_freqs_mhz", "mem_freq")):
        freqs = list(dict.fromkeys(getattr(cfg.sweep, key)))
        if len(freqs) > 1:
            listed = ",".join("null" if f is None else str(f) for f in freqs)
            return (
                f"sweep.{key} = [{listed}] asks for {len(freqs)} caps, but gpu.control=slurm "
                "applies one cap per SLURM job step (--gpu-freq): run one experiment per cap "
                f"(`llm-energy grid` expands the sweep into them), each with gpu.{one} set and "
                f"sweep.{key}=[]"
            )
    if cfg.gpu.backend == "cpu":  # auto without a GPU: infer says so when it opens one
        return (
            "gpu.control=slurm observes the clocks SLURM applies to NVIDIA GPUs, but "
            "gpu.backend=cpu has none: set gpu.backend=auto or nvml, or gpu.control=observe"
        )
    return None
