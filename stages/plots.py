"""Stage `plots`: figures (PNG, offline), DVC plot data, and the report (Markdown + self-contained HTML)."""

from __future__ import annotations

import pandas as pd

from _common import StageError, log, run_stage
from llm_energy.analysis.figure_style import energy_kind_banner, figure_png_bytes
from llm_energy.analysis.figures import power_timeline, standard_figures
from llm_energy.analysis.report import build_html, build_markdown
from llm_energy.analysis.report_sections import MULTI_CLOCK_FIGURES, n_clock_levels
from llm_energy.config import Config
from llm_energy.io.files import (
    atomic_write_bytes,
    atomic_write_text,
    read_csv,
    read_json,
    read_jsonl,
    staged_dir,
)
from llm_energy.paths import ProjectPaths
from llm_energy.plotdata import by_config, by_freq

TABLES = ("frequency_effect", "pairwise", "spearman", "regression", "pareto", "recommendation")


RERUN = "re-run the {0} stage (dvc repro {0}, or python stages/{0}.py)"


def main(cfg: Config, paths: ProjectPaths) -> None:
    if not paths.metrics_file.exists():
        raise StageError(f"{paths.metrics_file} not found: run the stats stage first")
    agg, stats = RERUN.format("aggregate"), RERUN.format("stats")
    summary = read_csv(paths.summary_csv, remedy=agg)
    requests = pd.DataFrame(read_jsonl(paths.aggregate_dir / "requests.jsonl", remedy=agg))
    tables = {
        name: read_csv(paths.stats_dir / f"{name}.csv", remedy=stats, allow_empty=True)
        for name in TABLES
    }
    ols_info = read_json(paths.stats_dir / "ols_info.json", remedy=stats, expect=dict)
    tables["regression"].attrs.update(ols_info)
    headline = read_json(paths.metrics_file, remedy=stats, expect=dict)

    figures = standard_figures(summary, requests, frontier=tables["pareto"])
    run_info = read_json(paths.run_file, remedy=RERUN.format("infer"), expect=dict)
    if "rep" in requests.columns:  # run.json does not record the configured repetitions
        run_info["repetitions"] = int(requests["rep"].nunique())
    timeline_csv = paths.infer_dir / "power_timeline.csv"
    if timeline_csv.exists():
        kind = (headline.get("energy") or {}).get("kind")
        timeline = read_csv(timeline_csv, remedy=RERUN.format("infer"))
        figures["power_timeline"] = power_timeline(timeline, energy_kind=kind)
    pngs = {name: figure_png_bytes(fig, dpi=cfg.plots.dpi) for name, fig in figures.items()}

    # Written aside and swapped in: a failed write keeps the previous figures and plot data.
    with staged_dir(paths.figures_dir) as fig_dir, staged_dir(paths.plots_data_dir) as data_dir:
        for name, data in pngs.items():
            atomic_write_bytes(fig_dir / f"{name}.png", data)
        by_freq(summary).to_csv(data_dir / "by_freq.csv", index=False)
        by_config(summary).to_csv(data_dir / "by_config.csv", index=False)

    # with one clock these figures show one point per series: written for DVC, but the report
    # says so in one sentence instead of showing them
    single = n_clock_levels(summary) == 1
    shown = {k: v for k, v in pngs.items() if not (single and k in MULTI_CLOCK_FIGURES)}
    kinds = summary["energy_kind"].dropna().unique().tolist() if "energy_kind" in summary else []
    markdown = build_markdown(
        summary,
        {k: v for k, v in tables.items() if k != "recommendation"},
        tables["recommendation"],
        headline,
        {name: f"figures/{name}.png" for name in shown},
        energy_kind_banner(kinds),
        run_info=run_info,
    )
    atomic_write_text(paths.report_md, markdown)
    atomic_write_text(paths.report_html, build_html(markdown, shown))
    log.info("wrote %d figures, %s and %s", len(pngs), paths.report_md.name, paths.report_html.name)


if __name__ == "__main__":
    run_stage("plots", main)
