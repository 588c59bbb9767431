"""Run provenance: device, driver and library versions, git commit, config digest."""

from __future__ import annotations

import functools
import hashlib
import json
import platform
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from llm_energy.config.settings import Config

LIBRARIES = tuple(
    "torch transformers datasets evaluate nvidia-ml-py codecarbon dvc hydra-core llm-energy".split()
)


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


PIPELINE_WRITES = (":(exclude)dvc.lock", ":(exclude)params.yaml", ":(exclude)reports")


def git_commit(root: Path) -> str | None:
    """HEAD, with -dirty when tracked source files differ from it."""
    git = functools.partial(subprocess.run, cwd=root, capture_output=True, text=True, timeout=5)
    try:
        out = git(["git", "rev-parse", "HEAD"], check=True)
        # What the pipeline writes itself (dvc.lock, reports/) and `dvc exp run -S` (params.yaml,
        # recorded on its own as the config digest) does not make the code dirty.
        dirty = git(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", *PIPELINE_WRITES]
        )
        return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def config_digest(cfg: Config) -> str:
    relevant = {k: cfg.raw.get(k) for k in ("model", "task", "gpu", "prepare", "infer", "sweep")}
    blob = json.dumps(relevant, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def run_provenance(cfg: Config, *, device: Any, root: Path) -> dict[str, Any]:
    torch = sys.modules.get("torch")  # only where a torch model ran: never imported for this
    cuda = torch.version.cuda if torch is not None and torch.cuda.is_available() else None
    return {
        "experiment": cfg.meta.experiment,
        "device": device.provenance(),
        "energy_source": device.energy_source,
        "cuda_version": cuda,
        "libraries": {name: _version(name) for name in LIBRARIES},
        "python": platform.python_version(),
        "host": socket.gethostname(),
        "git_commit": git_commit(root),
        "config_digest": config_digest(cfg),
    }
