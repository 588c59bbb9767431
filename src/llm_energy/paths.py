"""The one module that owns paths. All are relative to the repository root (the working
directory of `dvc repro`), so a DVC experiment's temporary workspace works unchanged."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


class _Under:
    """A path below the repository root, read as an attribute of `ProjectPaths`."""

    def __init__(self, *parts: str) -> None:
        self.parts = parts

    def __get__(self, paths: ProjectPaths, owner: type | None = None) -> Path:
        return paths.root.joinpath(*self.parts)


@dataclass(frozen=True)
class ProjectPaths:
    root: Path

    # inputs
    params = _Under("params.yaml")
    conf_dir = _Under("conf")
    samples_dir = _Under("data", "samples")
    prompts_dir = _Under("prompts")

    def prompt_file(self, prompt_set: str, kind: str) -> Path:
        """model.prompt_set's template for one task kind: prompts/<set>/<kind>.txt."""
        return self.prompts_dir / prompt_set / f"{kind}.txt"

    # stage outputs; `validated_marker` is the `validate` stage's constant output: later stages
    # depend on it, so it runs first
    validated_marker = _Under("data", "validated.txt")
    prepared_dir = _Under("data", "prepared")
    model_dir = _Under("models", "materialized")
    infer_dir = _Under("data", "infer")
    requests_file = _Under("data", "infer", "requests.jsonl")
    run_file = _Under("data", "infer", "run.json")
    # where a failed or interrupted infer run leaves what it measured (not a DVC output)
    infer_partial_dir = _Under("data", "infer.partial")
    aggregate_dir = _Under("data", "aggregate")
    summary_csv = _Under("data", "aggregate", "summary.csv")
    reports_dir = _Under("reports")
    stats_dir = _Under("reports", "stats")
    metrics_file = _Under("reports", "metrics.json")
    figures_dir = _Under("reports", "figures")
    plots_data_dir = _Under("reports", "plots")
    report_md = _Under("reports", "report.md")
    report_html = _Under("reports", "report.html")
    # the statistics' Monte Carlo results (benchmarks/stats_calibration.py)
    stats_calibration = _Under("benchmarks", "results", "stats_calibration.json")

    # Per-GPU state (locks, crash journals) lives outside the repo, per machine: it must
    # survive `git clean`, be shared by every user and sudo, and be the same for every checkout.
    @property
    def state_dir(self) -> Path:
        """$LLM_ENERGY_STATE_DIR, else the per-machine default (gpu.state_dir: `gpu_state_dir`)."""
        return self.gpu_state_dir(None)

    def gpu_state_dir(self, configured: str | None) -> Path:
        """gpu.state_dir (relative: to the repository root); else $LLM_ENERGY_STATE_DIR; else
        /var/tmp/llm-energy."""
        return resolve_state_dir(configured, root=self.root)


STATE_DIR_ENV = "LLM_ENERGY_STATE_DIR"
# /var/tmp, not $HOME: one directory per machine that root (sudo) and every user see alike,
# and that survives a reboot (a journal must outlive the crash it records).
DEFAULT_STATE_DIR = Path("/var/tmp/llm-energy")


def resolve_state_dir(configured: str | None = None, *, root: Path | None = None) -> Path:
    """Where GPU locks and clock journals live (see docs/device.md)."""
    raw = configured or os.environ.get(STATE_DIR_ENV) or ""
    if not raw.strip():
        return DEFAULT_STATE_DIR
    path = Path(raw).expanduser()
    if not path.is_absolute():
        path = (root if root is not None else Path.cwd()) / path
    return path


def gpu_lock_dir(state_dir: Path) -> Path:
    """Per-UUID lock files: sticky, never deleted (deleting a held lock file breaks exclusion)."""
    return Path(state_dir) / "locks"


def gpu_journal_dir(state_dir: Path) -> Path:
    """Per-UUID clock journals: any user who may restore a GPU may also delete its journal."""
    return Path(state_dir) / "journal"


PROGRESS_DIR_ENV = "LLM_ENERGY_PROGRESS_DIR"


def progress_dir(state_dir: Path) -> Path:
    """One progress JSON per grid unit, shared by every worker of a node (`llm-energy grid
    status`): $LLM_ENERGY_PROGRESS_DIR, else <state_dir>/progress; no result depends on it."""
    raw = os.environ.get(PROGRESS_DIR_ENV, "").strip()
    return Path(raw).expanduser() if raw else Path(state_dir) / "progress"


def progress_file(directory: Path, unit: str) -> Path:
    return Path(directory) / f"{unit}.json"


def project_paths(root: str | os.PathLike[str] | None = None) -> ProjectPaths:
    return ProjectPaths(Path(root) if root is not None else Path.cwd())
