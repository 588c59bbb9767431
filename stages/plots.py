"""Stage `plots`: figures (PNG, offline), DVC plot data, and the report (Markdown + self-contained HTML)."""

from __future__ import annotations

from _common import StageError, log, run_stage

from llm_energy.config.settings import Config
from llm_energy.io.files import (
    atomic_write_bytes,
    atomic_write_text,
    read_csv,
    read_json,
    staged_dir,
)
from llm_energy.io.records import load_records, load_table
from llm_energy.paths import ProjectPaths
from llm_energy.records import AGGREGATE_REQUESTS, STATS_TABLES, SUMMARY
from llm_energy.report.figure_style import energy_kind_banner, figure_png_bytes
from llm_energy.report.figures import power_timeline, standard_figures
from llm_energy.report.html import build_html
from llm_energy.report.knobs import knob_figures
from llm_energy.report.markdown import build_markdown
from llm_energy.report.plotdata import by_config, by_freq
from llm_energy.report.sections import n_clock_levels

TABLES = (
    "frequency_effect",
    "pairwise",
    "spearman",
    "regression",
    "pareto",
    "recommendation",
    "phases",
    "phase_clocks",
)


RERUN = "re-run the {0} stage (dvc repro {0}, or python stages/{0}.py)"
CALIBRATE = "re-run python benchmarks/stats_calibration.py"


def main(cfg: Config, paths: ProjectPaths) -> None:
    if not paths.metrics_file.exists():
        raise StageError(f"{paths.metrics_file} not found: run the stats stage first")
    agg, stats = RERUN.format("aggregate"), RERUN.format("stats")
    summary = load_table(paths.summary_csv, SUMMARY, remedy=agg)
    requests = load_records(paths.aggregate_dir / "requests.jsonl", AGGREGATE_REQUESTS, remedy=agg)
    tables = {
        name: load_table(
            paths.stats_dir / f"{name}.csv", STATS_TABLES[name], remedy=stats, allow_empty=True
        )
        for name in TABLES
    }
    ols_info = read_json(paths.stats_dir / "ols_info.json", remedy=stats, expect=dict)
    tables["regression"].attrs.update(ols_info)
    headline = read_json(paths.metrics_file, remedy=stats, expect=dict)

    figures = standard_figures(summary, requests, frontier=tables["pareto"])
    figures |= knob_figures(summary)  # clock locks, power limits, memory clocks on one front
    run_info = read_json(paths.run_file, remedy=RERUN.format("infer"), expect=dict)
    run_info["repetitions"] = int(requests["rep"].nunique())  # run.json does not record them
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
        # `dvc plots show` draws by_freq.csv: one clock gives it a header and no points
        freq_rows = by_freq(summary) if n_clock_levels(summary) > 1 else by_freq(summary)[:0]
        freq_rows.to_csv(data_dir / "by_freq.csv", index=False)
        by_config(summary).to_csv(data_dir / "by_config.csv", index=False)

    kinds = summary["energy_kind"].dropna().unique().tolist()
    markdown = build_markdown(
        summary,
        {k: v for k, v in tables.items() if k != "recommendation"},
        tables["recommendation"],
        headline,
        {name: f"figures/{name}.png" for name in pngs},
        energy_kind_banner(kinds),
        run_info=run_info,
        calibration=read_json(paths.stats_calibration, remedy=CALIBRATE, expect=dict)
        if paths.stats_calibration.exists()
        else None,
    )
    atomic_write_text(paths.report_md, markdown)
    atomic_write_text(paths.report_html, build_html(markdown, pngs))
    log.info("wrote %d figures, %s and %s", len(pngs), paths.report_md.name, paths.report_html.name)


if __name__ == "__main__":
    run_stage("plots", main)
