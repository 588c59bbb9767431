"""Settings that validate one by one but cannot run together on this machine (pure: the caller
passes what it probed). Asked before DVC deletes any output, so a refusal costs nothing.
"""

from __future__ import annotations

from llm_energy.config.settings import Config


def requested_caps(cfg: Config) -> list[tuple[str, int]]:
    """(params key, MHz) of every clock cap the config asks to lock."""
    caps = [(f"sweep.freqs_mhz[{i}]", f) for i, f in enumerate(cfg.sweep.freqs_mhz) if f]
    if not cfg.sweep.freqs_mhz and cfg.gpu.freq is not None:
        caps.append(("gpu.freq", cfg.gpu.freq))
    if cfg.gpu.mem_freq is not None:
        caps.append(("gpu.mem_freq", cfg.gpu.mem_freq))
    return caps


def resolve_backend(backend: str, *, nvml_gpu_found: bool) -> str:
    """The backend infer will open: `auto` is nvml when NVML sees a GPU, else cpu."""
    if backend == "auto":
        return "nvml" if nvml_gpu_found else "cpu"
    return backend


def clock_cap_problem(cfg: Config, *, nvml_gpu_found: bool, privileged: bool) -> str | None:
    """Why the requested caps cannot be applied here, with what to do instead; None if they can."""
    if cfg.gpu.control == "slurm":
        return slurm_problem(cfg)
    caps = requested_caps(cfg)
    if cfg.gpu.control != "lock" or not caps:
        return None  # observe mode never calls a setter; no cap means driver defaults
    key, mhz = caps[0]
    asked = f"{key} = {mhz} asks to lock GPU clocks (gpu.control=lock)"
    backend = resolve_backend(cfg.gpu.backend, nvml_gpu_found=nvml_gpu_found)
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
            "to lock clocks: run with sudo or grant CAP_SYS_ADMIN, or set gpu.control=observe"
        )
    return None


def slurm_problem(cfg: Config) -> str | None:
    """gpu.control=slurm: SLURM applies one cap per job step (`--gpu-freq`), so a sweep of
    several caps cannot run in one; and it needs NVIDIA GPUs to apply it to."""
    freqs = list(dict.fromkeys(cfg.sweep.freqs_mhz))
    if len(freqs) > 1:
        listed = ",".join("null" if f is None else str(f) for f in freqs)
        return (
            f"sweep.freqs_mhz = [{listed}] asks for {len(freqs)} caps, but gpu.control=slurm "
            "applies one cap per SLURM job step (--gpu-freq): run one experiment per cap "
            "(`llm-energy grid` expands the sweep into them), each with gpu.freq set and "
            "sweep.freqs_mhz=[]"
        )
    if cfg.gpu.backend == "cpu":  # auto without a GPU: infer says so when it opens one
        return (
            "gpu.control=slurm observes the clocks SLURM applies to NVIDIA GPUs, but "
            "gpu.backend=cpu has none: set gpu.backend=auto or nvml, or gpu.control=observe"
        )
    return None
