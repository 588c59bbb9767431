"""`gpu.control=slurm`: the cap is applied by SLURM (`--gpu-freq`) for the job step, so a run
needs no root: it only observes, and checks inside each window that the cap held. Syntax:
`--gpu-freq=[<type>=]<value>[,<type>=<value>][,verbose]`, type graphics (default) or memory."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

MECHANISMS = {
    "lock": "locked clocks via NVML",
    "observe": "none (observe)",
    "slurm": "application clocks via SLURM",
}
# sbatch --gpu-freq exports SLURM_GPU_FREQ; srun --gpu-freq only puts `gpu:<value>` into the
# step's SLURMD_TRES_FREQ (slurm-wlm 22.05, measured); the last is on some site wrappers.
ENV_VARS = ("SLURM_GPU_FREQ", "SLURMD_TRES_FREQ", "SLURM_JOB_GPU_FREQ")


@dataclass(frozen=True)
class SlurmGpuFreq:
    """What `--gpu-freq` asked for: MHz where numeric, else the word (e.g. "high")."""

    raw: str
    graphics: int | str | None
    memory: int | str | None


def parse_gpu_freq(text: str) -> SlurmGpuFreq:
    """Parse a `--gpu-freq` value (pure); unknown parts are ignored."""
    graphics: int | str | None = None
    memory: int | str | None = None
    for part in (p.strip() for p in text.split(",")):
        if not part or part == "verbose":
            continue
        kind, _, value = part.rpartition("=")
        parsed: int | str = int(value) if value.isdigit() else value.lower()
        if kind in ("", "graphics"):
            graphics = parsed
        elif kind == "memory":
            memory = parsed
    return SlurmGpuFreq(text, graphics, memory)


def slurm_gpu_freq(env: Mapping[str, str] | None = None) -> tuple[str, SlurmGpuFreq] | None:
    """(variable, parsed value) of the first SLURM GPU-frequency variable set, else None."""
    env = os.environ if env is None else env
    for name in ENV_VARS:
        value = env.get(name)
        if name == "SLURMD_TRES_FREQ" and value:  # "gpu:1305" or "gpu:high,memory=...;cpu:..."
            gpu = [t.split(":", 1)[1] for t in value.split(";") if t.startswith("gpu:")]
            value = gpu[0] if gpu else None
        if value:
            return name, parse_gpu_freq(value)
    return None


def clock_mechanism(control: str, backend: str) -> str:
    """How the cap reaches the GPU, as run.json records it: what was done, not what was asked."""
    if backend == "cpu":
        return "none (cpu backend: no GPU clocks)"
    if control == "lock" and backend == "simulated":
        return "locked clocks (simulated GPU)"
    return MECHANISMS[control]


def cap_missed_warning(sm_freq_mhz: int) -> str:
    """The clocks seen inside a window did not hold the cap SLURM was asked for."""
    return (
        f"gpu.control=slurm: the clocks seen inside a window did not hold the requested "
        f"{sm_freq_mhz} MHz (was the job submitted with --gpu-freq={sm_freq_mhz}?); such "
        "windows get freq_applied_mhz = null"
    )


def slurm_freq_warning(sm_freq_mhz: int | None, env: Mapping[str, str] | None = None) -> str | None:
    """A one-line warning when what SLURM was asked for disagrees with gpu.freq (or is unknown)."""
    found = slurm_gpu_freq(env)
    if found is None:
        return (
            f"gpu.control=slurm but none of {', '.join(ENV_VARS)} names a GPU clock: submit the job "
            f"with --gpu-freq={sm_freq_mhz if sm_freq_mhz is not None else 'high'} so SLURM "
            "applies the cap; the run only observes the clocks"
        )
    name, asked = found
    if asked.graphics == sm_freq_mhz:
        return None
    return (
        f"{name}={asked.raw} asks SLURM for graphics clock {asked.graphics}, but gpu.freq = "
        f"{sm_freq_mhz}: records are labelled with gpu.freq; resubmit with "
        f"--gpu-freq={sm_freq_mhz} or set gpu.freq to match"
    )
