"""Stage `stats`: significance tests, regression, trade-off and recommended cap -> reports/.

Tables go to reports/stats/*.csv and *.md; headline numbers to reports/metrics.json (a DVC
metrics file, so `dvc exp show` lists them per experiment). Every test counts items (prompts:
their repetitions and clocks are blocks within them); what each number estimates is in
docs/statistics.md. `repetition` flags a first repetition that differs from the rest.
"""

from __future__ import annotations

from _common import StageError, log, run_stage

from llm_energy.analysis.headline import headline_metrics
from llm_energy.analysis.repetition import repetition_headline
from llm_energy.analysis.study import stats_tables
from llm_energy.analysis.tradeoff import savings_headline
from llm_energy.config.settings import Config
from llm_energy.io.files import atomic_write_text, staged_dir, write_json
from llm_energy.io.records import load_records, load_table
from llm_energy.paths import ProjectPaths
from llm_energy.records import AGGREGATE_REQUESTS, SUMMARY
from llm_energy.report.tables import to_markdown


def main(cfg: Config, paths: ProjectPaths) -> None:
    scored_file = paths.aggregate_dir / "requests.jsonl"
    if not scored_file.exists() or not paths.summary_csv.exists():
        raise StageError(f"{paths.aggregate_dir} is incomplete: run the aggregate stage first")
    rerun = "re-run the aggregate stage (dvc repro aggregate, or python stages/aggregate.py)"
    requests = load_records(scored_file, AGGREGATE_REQUESTS, remedy=rerun)
    summary = load_table(paths.summary_csv, SUMMARY, remedy=rerun)
    s = cfg.stats
    tables, ols_info = stats_tables(
        requests,
        summary,
        alpha=s.alpha,
        min_samples=s.min_samples,
        latency_budget_pct=s.latency_budget_pct,
        ci_level=cfg.aggregate.ci_level,
    )
    # Written aside and swapped in: a failed write keeps the previous reports/stats.
    with staged_dir(paths.stats_dir) as out:
        for name, table in tables.items():
            table.to_csv(out / f"{name}.csv", index=False)
            atomic_write_text(out / f"{name}.md", to_markdown(table) + "\n")
        write_json(out / "ols_info.json", ols_info)
    metrics = headline_metrics(summary, requests, ci_level=cfg.aggregate.ci_level)
    metrics["tradeoff"] = savings_headline(tables["recommendation"])
    metrics["stats"] = {"alpha": s.alpha, "ols_r2": ols_info.get("r2")}
    metrics["repetition"] = repetition_headline(tables["repetition"])
    write_json(paths.metrics_file, metrics)
    log.info("stats: %s", ", ".join(f"{k}={len(v)} rows" for k, v in tables.items()))


if __name__ == "__main__":
    run_stage("stats", main)
