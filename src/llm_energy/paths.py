"""The one module that owns paths. Stages ask here where to read and write.

All paths are relative to the repository root (the working directory of `dvc repro`),
so a DVC experiment's temporary workspace works unchanged.
"""

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

    # stage outputs
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
    def windows_file(self) -> Path:
        return self.infer_dir / "windows.jsonl"

    @property
    def idle_file(self) -> Path:
        return self.infer_dir / "idle.jsonl"

    @property
    def run_file(self) -> Path:
        return self.infer_dir / "run.json"

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

    # per-GPU state lives outside the repo so that crash journals survive `git clean`
    @property
    def state_dir(self) -> Path:
        env = os.environ.get("LLM_ENERGY_STATE_DIR")
        return Path(env) if env else Path.home() / ".cache" / "llm-energy"


def project_paths(root: str | os.PathLike[str] | None = None) -> ProjectPaths:
    return ProjectPaths(Path(root) if root is not None else Path.cwd())
