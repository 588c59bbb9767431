"""The one module that owns paths. All are relative to the repository root (the working
directory of `dvc repro`), so a DVC experiment's temporary workspace works unchanged."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ProjectPaths:
    root: Path

    # inputs
    @property
    def params(self) -> Path:
        return self.root / "params.yaml"

    @property
    def conf_dir(self) -> Path:
        return self.root / "conf"

    @property
    def samples_dir(self) -> Path:
        return self.root / "data" / "samples"

    @property
    def prompts_dir(self) -> Path:
        return self.root / "prompts"

    def prompt_file(self, prompt_set: str, kind: str) -> Path:
        """model.prompt_set's template for one task kind: prompts/<set>/<kind>.txt."""
        return self.prompts_dir / prompt_set / f"{kind}.txt"

    # stage outputs
    @property
    def validated_marker(self) -> Path:
        """The `validate` stage's constant output: later stages depend on it, so it runs first."""
        return self.root / "data" / "validated.txt"

    @property
    def prepared_dir(self) -> Path:
        return self.root / "data" / "prepared"

    @property
    def model_dir(self) -> Path:
        return self.root / "models" / "materialized"

    @property
    def infer_dir(self) -> Path:
        return self.root / "data" / "infer"

    @property
    def requests_file(self) -> Path:
        return self.infer_dir / "requests.jsonl"

    @property
    def run_file(self) -> Path:
        return self.infer_dir / "run.json"

    @property
    def infer_partial_dir(self) -> Path:
        """Where a failed or interrupted infer run leaves what it measured (not a DVC output)."""
        return self.root / "data" / "infer.partial"

    @property
    def aggregate_dir(self) -> Path:
        return self.root / "data" / "aggregate"

    @property
    def summary_csv(self) -> Path:
        return self.aggregate_dir / "summary.csv"

    @property
    def reports_dir(self) -> Path:
        return self.root / "reports"

    @property
    def stats_dir(self) -> Path:
        return self.reports_dir / "stats"

    @property
    def metrics_file(self) -> Path:
        return self.reports_dir / "metrics.json"

    @property
    def figures_dir(self) -> Path:
        return self.reports_dir / "figures"

    @property
    def plots_data_dir(self) -> Path:
        return self.reports_dir / "plots"

    @property
    def report_md(self) -> Path:
        return self.reports_dir / "report.md"

    @property
    def report_html(self) -> Path:
        return self.reports_dir / "report.html"

    @property
    def stats_calibration(self) -> Path:
        """The statistics' Monte Carlo results (benchmarks/stats_calibration.py)."""
        return self.root / "benchmarks" / "results" / "stats_calibration.json"

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
