"""Stage `aggregate`: score quality per request, then summarise each configuration with CIs.

Writes data/aggregate/requests.jsonl (records + quality_* columns), summary.csv (one row per
configuration) and quality.csv (corpus-level scores from the project's `evaluate` metric scripts).
"""

from __future__ import annotations

import shutil

import pandas as pd

from _common import StageError, log, run_stage
from llm_energy.analysis.summary import summarize
from llm_energy.config import Config
from llm_energy.io.files import read_json, read_jsonl, write_jsonl
from llm_energy.metrics import compute_for_kind
from llm_energy.paths import ProjectPaths
from llm_energy.quality import corpus_quality, score_requests


def _corpus_metric(kind: str, predictions: list, references: list, extra: dict) -> dict[str, float]:
    """The project's evaluate metric scripts (loaded offline from the package)."""
    if kind == "generation":
        result = compute_for_kind(
            kind, ref_nll_sum=extra.get("ref_nll_sum"), ref_tokens=extra.get("ref_tokens")
        )
    else:
        result = compute_for_kind(kind, predictions=predictions, references=references)
    return {k: float(v) for k, v in result.items() if isinstance(v, int | float)}


def main(cfg: Config, paths: ProjectPaths) -> None:
    if not paths.requests_file.exists():
        raise StageError(f"{paths.requests_file} not found: run the infer stage first")
    requests = pd.DataFrame(read_jsonl(paths.requests_file))
    if requests.empty:
        raise StageError(f"{paths.requests_file} holds no requests")
    # infer appends records as it goes and writes run.json last: without a matching run.json the
    # records are what an interrupted run left behind, kept for inspection but not summarised.
    if not paths.run_file.exists():
        raise StageError(
            f"{paths.run_file} missing: the infer run that wrote {paths.requests_file.name} did not finish; re-run infer"
        )
    run_id = read_json(paths.run_file).get("run_id")
    if set(requests["run_id"].dropna()) != {run_id}:
        raise StageError(
            f"{paths.requests_file.name} does not belong to the run in {paths.run_file.name}; re-run infer"
        )
    scored = score_requests(requests)
    summary = summarize(
        scored,
        ci_level=cfg.aggregate.ci_level,
        n_boot=cfg.aggregate.n_boot,
        seed=cfg.aggregate.seed,
    )
    quality = corpus_quality(scored, _corpus_metric)
    shutil.rmtree(paths.aggregate_dir, ignore_errors=True)
    paths.aggregate_dir.mkdir(parents=True)
    write_jsonl(paths.aggregate_dir / "requests.jsonl", scored.to_dict(orient="records"))
    summary.to_csv(paths.summary_csv, index=False)
    quality.to_csv(paths.aggregate_dir / "quality.csv", index=False)
    log.info(
        "%d requests -> %d configurations (%d excluded)",
        len(scored),
        len(summary),
        int(summary["n_excluded"].sum()),
    )


if __name__ == "__main__":
    run_stage("aggregate", main)
