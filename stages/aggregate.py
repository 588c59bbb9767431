"""Stage `aggregate`: score quality per request, then summarise each configuration with CIs.

Records are checked against the record schema (llm_energy/records.py) on the way in and out.
Writes data/aggregate/requests.jsonl (records + quality_* columns and the run's gpu_name and
gpu_uuid),
summary.csv (one row per configuration), quality.csv (corpus-level scores from the project's
`evaluate` metric scripts, keyed by summary.csv's configuration columns, so the two join) and
repetition.csv (first repetition vs the rest, flagged when it differs: a cold start).
"""

from __future__ import annotations

from _common import StageError, log, run_stage

import pandas as pd

from llm_energy.analysis.repetition import repetition_effect, repetition_headline
from llm_energy.analysis.summary import summarize
from llm_energy.config.settings import Config
from llm_energy.errors import InputFileError
from llm_energy.io.files import read_json, read_jsonl, staged_dir, write_jsonl
from llm_energy.paths import ProjectPaths
from llm_energy.quality.metrics import compute_for_kind
from llm_energy.quality.scores import corpus_quality, score_requests
from llm_energy.records import (
    AGGREGATE_REQUESTS,
    INFER_REQUESTS,
    plain_records,
    required_keys,
    typed_frame,
)


def _corpus_metric(kind: str, predictions: list, references: list, extra: dict) -> dict[str, float]:
    """The project's evaluate metric scripts (loaded offline from the package)."""
    if kind == "generation":
        result = compute_for_kind(
            kind, ref_nll_sum=extra.get("ref_nll_sum"), ref_tokens=extra.get("ref_tokens")
        )
    else:
        result = compute_for_kind(kind, predictions=predictions, references=references)
    return {k: float(v) for k, v in result.items() if isinstance(v, int | float)}


RERUN_INFER = "re-run the infer stage (dvc repro infer, or python stages/infer.py)"
RECORD_KEYS = required_keys(INFER_REQUESTS, status_ok=False)  # also on failed rows
OK_KEYS = required_keys(INFER_REQUESTS, status_ok=True)
BUG = "the aggregate stage broke its own record schema: please report it"


def main(cfg: Config, paths: ProjectPaths) -> None:
    if not paths.requests_file.exists():
        raise StageError(f"{paths.requests_file} not found: run the infer stage first")
    # infer appends records as it goes and writes run.json last: without a matching run.json the
    # records are what an interrupted run left behind, kept for inspection but not summarised.
    if not paths.run_file.exists():
        raise StageError(
            f"{paths.run_file} missing: the infer run that wrote {paths.requests_file.name} did not finish; re-run infer"
        )
    records = read_jsonl(paths.requests_file, remedy=RERUN_INFER, required=RECORD_KEYS)
    for line, row in enumerate(records, 1):  # measured rows carry what scoring reads
        missing = [k for k in OK_KEYS if k not in row] if row["status"] == "ok" else []
        if missing:
            raise InputFileError(
                paths.requests_file,
                "record has no such key",
                RERUN_INFER,
                line=line,
                key=missing[0],
            )
    if not records:
        raise StageError(f"{paths.requests_file} holds no requests")
    requests = typed_frame(pd.DataFrame(records), INFER_REQUESTS, paths.requests_file, RERUN_INFER)
    run = read_json(paths.run_file, remedy=RERUN_INFER, expect=dict)
    run_id = run.get("run_id")
    if set(requests["run_id"].dropna()) != {run_id}:
        raise StageError(
            f"{paths.requests_file.name} does not belong to the run in {paths.run_file.name}; re-run infer"
        )
    # Whole lines cut off the end parse fine: the count infer wrote in run.json catches them.
    totals = run.get("totals") if isinstance(run.get("totals"), dict) else {}
    expected = totals.get("requests_ok", 0) + totals.get("requests_failed", 0) if totals else None
    if expected is not None and expected != len(records):
        raise StageError(
            f"{paths.requests_file} holds {len(records)} records but {paths.run_file.name} counts "
            f"{expected}: the file was truncated or edited; {RERUN_INFER}"
        )
    # the GPU is a configuration key (models never pooled) and a block in the statistics (cards)
    device = run.get("device") if isinstance(run.get("device"), dict) else {}
    requests["gpu_name"] = device.get("name")
    requests["gpu_uuid"] = device.get("uuid")
    scored = typed_frame(
        score_requests(requests), AGGREGATE_REQUESTS, paths.aggregate_dir / "requests.jsonl", BUG
    )
    repetition = repetition_effect(scored, alpha=cfg.aggregate.repetition_alpha)
    summary = summarize(scored, ci_level=cfg.aggregate.ci_level)
    quality = corpus_quality(scored, _corpus_metric)
    # Written aside and swapped in: a failed write keeps the previous data/aggregate.
    with staged_dir(paths.aggregate_dir) as out:
        write_jsonl(out / "requests.jsonl", plain_records(scored))
        summary.to_csv(out / paths.summary_csv.name, index=False)
        quality.to_csv(out / "quality.csv", index=False)
        repetition.to_csv(out / "repetition.csv", index=False)
    log.info(
        "%d requests -> %d configurations (%d excluded)",
        len(scored),
        len(summary),
        int(summary["n_excluded"].sum()),
    )
    flagged = repetition_headline(repetition)
    if flagged["n_configs_flagged"]:
        log.warning(
            "first repetition differs in %d of %d configurations (worst: %s %.2fx, %s); see %s",
            flagged["n_configs_flagged"],
            flagged["n_configs_tested"],
            flagged["worst_metric"],
            flagged["worst_ratio"],
            flagged["worst_config"],
            "data/aggregate/repetition.csv",
        )


if __name__ == "__main__":
    run_stage("aggregate", main)
