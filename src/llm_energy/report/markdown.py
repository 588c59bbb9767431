"""The report as Markdown: ``templates/report.md.j2`` (package data) with sentences and tables."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from llm_energy.analysis.significance import SPEARMAN_COLUMNS
from llm_energy.paths import ProjectPaths
from llm_energy.report import sections
from llm_energy.report.html import report_templates
from llm_energy.report.knobs import knob_sentences
from llm_energy.report.phases import phase_clock_sentences, phase_sentences
from llm_energy.report.sentences import (
    energy_banner,
    fmt_num,
    frequency_effect_sentences,
    pairwise_sentences,
    recommendation_sentences,
    regression_sentences,
    repetition_warning,
    spearman_sentences,
)
from llm_energy.report.tables import pipe_table

# the sentence and banner helpers stay importable from here, the report's entry point


def markdown_table(
    frame: pd.DataFrame, columns: Sequence[str] | None = None, *, digits: int = 3
) -> str:
    """A GitHub pipe table with report number formatting; ``""`` without rows or ``columns``."""
    if frame is None or frame.empty:
        return ""
    cols = [c for c in (columns or list(frame.columns)) if c in frame.columns]
    if not cols:
        return ""

    def cell(v: Any) -> str:
        return str(v) if isinstance(v, list | tuple | dict) else fmt_num(v, digits)

    return pipe_table(frame[cols], cell)


_STATS_TABLE_COLUMNS: dict[str, list[str]] = {
    "frequency_effect": "model task metric n_levels n_total test test_reason statistic p_value "
    "effect_size effect_size_kind verdict".split(),
    "pairwise": "model task metric label baseline n n_pairs mean mean_baseline ratio ratio_ci_low "
    "ratio_ci_high pct_change p_value p_holm significant note".split(),
    "spearman": SPEARMAN_COLUMNS,
    "regression": "term coef se t df p_value ci_low ci_high".split(),
    # the full pareto.csv has ~100 columns; the report shows what places a point on the frontier
    "pareto": "model task label n j_per_token_mean latency_p50_s on_frontier".split(),
}
_RECOMMEND_TABLE_COLUMNS = (
    "model task baseline recommended_label baseline_mean recommended_mean saving_pct "
    "saving_ci_low saving_ci_high latency_change_pct latency_change_ci_high n_family note"
).split()


#: where every column of the configurations table's rows is (the report shows a few)
SUMMARY_CSV = ProjectPaths(Path()).summary_csv.as_posix()


def build_markdown(
    summary: pd.DataFrame,
    stats_tables: Mapping[str, pd.DataFrame],
    recommendations: pd.DataFrame,
    headline: Mapping[str, Any],
    figure_paths: Mapping[str, str] | None = None,
    energy_kind_note: str | None = None,
    *,
    run_info: Mapping[str, Any] | None = None,
    calibration: Mapping[str, Any] | None = None,
    title: str | None = None,
) -> str:
    """The report as markdown: banner, summary, findings, tables, run (run.json), figures
    (name → path relative to the report), the calibration lines and the metrics.json appendix;
    "frequency caps" in the title only when more than one clock ran."""
    kinds: set[str] = set()
    if summary is not None and not summary.empty:
        used = summary[summary["n"] > 0]  # configurations that only failed carry no energy
        kinds |= {str(k) for k in used["energy_kind"].dropna().unique()}
    energy_head = headline.get("energy") if headline else None
    if isinstance(energy_head, Mapping) and energy_head.get("kind"):
        kinds.add(str(energy_head["kind"]))

    recommendations_all = recommendations
    tables = dict(stats_tables or {})
    clock_note = sections.single_clock_note(summary)
    if clock_note:
        # one clock: every recommendation and frequency test is "skipped", said once in the note
        for name in ("frequency_effect", "pairwise", "pareto", "phases", "phase_clocks"):
            tables.pop(name, None)
        recommendations = pd.DataFrame()
    findings = [
        *recommendation_sentences(recommendations),
        *phase_sentences(summary, tables.get("phases")),
        *phase_clock_sentences(tables.get("phase_clocks")),
        *knob_sentences(summary),
        *frequency_effect_sentences(tables.get("frequency_effect")),
        *pairwise_sentences(tables.get("pairwise")),
        *spearman_sentences(tables.get("spearman")),
        *regression_sentences(tables.get("regression")),
    ]

    budget_txt, recs_table = "", ""
    if recommendations is not None and not recommendations.empty:
        budget = recommendations["latency_budget_pct"].dropna().unique()
        budget_txt = f" (mean-latency budget +{fmt_num(budget[0])} %)" if len(budget) == 1 else ""
        recs_table = markdown_table(recommendations, _RECOMMEND_TABLE_COLUMNS)

    summary_table = sections.configurations_table(summary)
    note = ""
    if summary_table:
        note = (
            "Means with intervals over items (Student t; the delta method for J/token, which is "
            "total energy over total tokens; n/a where no interval is honest). Every column, "
            "excluded requests by reason and why an interval is missing are in "
            f"`{SUMMARY_CSV}`."
        )

    statistics = []
    for name, frame in tables.items():
        if frame is None or frame.empty:
            continue
        cols = _STATS_TABLE_COLUMNS.get(name)
        if cols:
            cols = [c for c in cols if c in frame.columns]
            if name != "regression":
                cols = [c for c in cols if c not in ("model", "task") or frame[c].notna().any()]
        statistics.append((name, markdown_table(frame, cols)))

    figures = dict(figure_paths or {})
    n_clocks = sections.n_clock_levels(summary)
    if n_clocks == 1:
        figures = {k: v for k, v in figures.items() if k not in sections.MULTI_CLOCK_FIGURES}
    caps = " under GPU frequency caps" if n_clocks > 1 else ""
    run = run_info or {}
    page = report_templates().get_template("report.md.j2")
    text = page.render(
        title=title or f"LLM inference energy{caps}",
        banner=energy_banner(kinds, energy_kind_note),
        repetition=repetition_warning((headline or {}).get("repetition")),
        opening=sections.opening_sentences(summary, recommendations_all, headline),
        opening_table=sections.opening_table(summary, recommendations_all),
        findings=findings,
        calibration=sections.calibration_lines(calibration),
        appendix=sections.metrics_appendix(headline),
        co2=sections.co2_table(run),
        provenance=sections.provenance_table(run),
        settings=sections.settings_table(run),
        budget=budget_txt,
        recommendations=recs_table,
        configurations=summary_table,
        configurations_note=note,
        statistics=statistics,
        figures=list(figures.items()),
    )
    return text.rstrip() + "\n"
