"""report.py: sentences carry the right numbers; HTML is self-contained."""

from __future__ import annotations

import re
from collections import Counter
from html.parser import HTMLParser
from importlib import resources

import numpy as np
import pandas as pd
import pytest

from analysis_fixtures import sweep_requests
from analysis_settings import (
    energy_ols,
    frequency_effect,
    headline_metrics,
    pairwise_vs_default,
    recommend_cap,
    spearman_lengths,
    summarize,
)
from llm_energy.analysis.tradeoff import savings_headline
from llm_energy.report.figure_style import ESTIMATED_LABEL, SIMULATED_LABEL, figure_png_bytes
from llm_energy.report.figures import energy_vs_freq
from llm_energy.report.html import build_html, markdown_to_html
from llm_energy.report.markdown import build_markdown, markdown_table, recommendation_sentences
from llm_energy.report.sections import metric_unit
from llm_energy.report.sentences import fmt_num

TINY_PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000100e221bc330000000049454e44ae426082"
)

# what infer's run.json holds (run/provenance.py plus the meter's blocks)
RUN_INFO = {
    "device": {"name": "NVIDIA H200", "backend": "cuda", "driver_version": "570.86"},
    "energy_source": "nvml-counter",
    "cuda_version": "12.8",
    "libraries": {"torch": "2.6.0", "transformers": "4.50.0"},
    "python": "3.11.7",
    "host": "gpu-node-1",
    "git_commit": "abc1234def",
    "repetitions": 3,
    "control": "lock",
    "clock_mechanism": "locked clocks via NVML",
    "counter_update_period_s": 0.1,
    "window_rules": {
        "min_window_s": 2.0,
        "min_window_periods": 20.0,
        "tick_align": True,
        "cooldown_s": 1.0,
        "idle_baseline_s": 2.0,
    },
    "warmup": {"stopped_by": "steady", "elapsed_s": 19.657, "all_steady": True},
    "emissions": {
        "co2_kg": 8.243e-05,
        "carbon_intensity_g_per_kwh": 110.812,
        "country_iso_code": "AUT",
        "device_energy_j": 1506.55,
        "device_energy_source": "nvml-counter",
        "cpu_energy_j": 717.0,
        "ram_energy_j": 1961.0,
        "note": "codecarbon offline; GPU energy from the project's meter",
    },
}


def _rec_row(**overrides: object) -> dict:
    row = {
        "model": "X",
        "task": "summarization",
        "engine": "eager",
        "batch_size": 1,
        "input_tokens_target": 256,
        "output_tokens_target": 64,
        "energy_kind": "measured",
        "metric": "j_per_token",
        "baseline": "default",
        "baseline_freq_mhz": np.nan,
        "latency_budget_pct": 5.0,
        "recommended_freq_mhz": 1200.0,
        "saving_pct": 18.3,
        "saving_ci_low": 15.1,
        "saving_ci_high": 21.04,
        "latency_change_pct": 4.2,
        "saves_energy": True,
        "ci_level": 0.95,
        "note": "",
    }
    row.update(overrides)
    return row


def test_recommendation_sentence_exact_numbers() -> None:
    (sentence,) = recommendation_sentences(pd.DataFrame([_rec_row()]))
    assert sentence == (
        "Capping at 1200 MHz saved 18.3 % energy per token (95 % simultaneous CI 15.1–21.0 %) "
        "for +4.2 % mean latency on summarization with model X."
    )


def test_recommendation_sentences_other_cases() -> None:
    recs = pd.DataFrame(
        [
            _rec_row(
                task="qa",
                recommended_freq_mhz=np.nan,
                saves_energy=False,
                note="no frequency cap keeps ...",
            ),
            _rec_row(
                task="gen",
                saving_pct=-2.5,
                saving_ci_low=-4.0,
                saving_ci_high=-1.0,
                saves_energy=False,
                latency_change_pct=1.0,
                energy_kind="measured",
            ),
            _rec_row(task="sim", energy_kind="measured", ci_level=0.9),
        ]
    )
    qa, gen, sim = recommendation_sentences(recs)
    assert (
        qa == "No frequency cap kept mean latency within +5 % of default clocks on qa with model X "
        "(one-sided 95 % upper bound)."
    )
    assert "changed energy per token by +2.5 % (95 % simultaneous CI +1.0 to +4.0 %)" in gen
    assert "default clocks remain the better choice" in gen
    assert "(90 % simultaneous CI 15.1–21.0 %)" in sim
    (weak,) = recommendation_sentences(pd.DataFrame([_rec_row(saving_pct=1.0, saving_ci_low=-2.0)]))
    assert "saved 1.0 % energy per token (95 % simultaneous CI -2.0 to +21.0 %)" in weak
    assert "the effect is not established" in weak


def test_simulated_sentence_is_marked() -> None:
    (sentence,) = recommendation_sentences(pd.DataFrame([_rec_row(energy_kind="simulated")]))
    assert sentence.endswith("on summarization with model X (simulated energy).")


@pytest.fixture(scope="module")
def pipeline() -> dict:
    req = sweep_requests(
        (None, 1900.0, 1700.0, 1400.0),
        n_per_freq=8,
        length_jitter=True,
        energy_kind="simulated",
        tasks=("qa",),
    )
    summary = summarize(req)
    recs = recommend_cap(req, latency_budget_pct=10.0)
    coef, _ = energy_ols(req)
    tables = {
        "frequency_effect": frequency_effect(req),
        "pairwise": pairwise_vs_default(req),
        "spearman": spearman_lengths(req),
        "regression": coef,
    }
    headline = headline_metrics(summary, req)
    headline["tradeoff"] = savings_headline(recs)
    return {"req": req, "summary": summary, "recs": recs, "tables": tables, "headline": headline}


def pipeline_markdown(
    pipeline: dict,
    figures: dict[str, str] | None = None,
    banner: str | None = None,
    **kw: object,
) -> str:
    """The report markdown of the `pipeline` fixture's results."""
    p = pipeline
    return build_markdown(
        p["summary"], p["tables"], p["recs"], p["headline"], figures or {}, banner, **kw
    )


def test_build_markdown_from_pipeline(pipeline: dict) -> None:
    md = pipeline_markdown(
        pipeline,
        {"energy_vs_freq": "figures/energy_vs_freq.png"},
        banner="Simulated GPU model: h200.",
    )
    assert md.startswith("# ")
    assert SIMULATED_LABEL in md.split("## Findings")[0]  # banner before the findings
    assert "Simulated GPU model: h200." in md
    rec = pipeline["recs"].iloc[0]
    expected = f"Capping at {rec['recommended_freq_mhz']:.0f} MHz saved {rec['saving_pct']:.1f} % energy per token"
    assert expected in md
    assert f"{rec['saving_ci_low']:.1f}–{rec['saving_ci_high']:.1f} %" in md
    fe = pipeline["tables"]["frequency_effect"].iloc[0]
    assert f"= {fe['statistic']:.2f}" in md
    assert "![energy_vs_freq](figures/energy_vs_freq.png)" in md
    for section in (
        "## Findings",
        "## Summary",
        "## Appendix: headline metrics",
        "## Configurations",
        "## Statistics: pairwise",
        "## Statistics: regression",
    ):
        assert section in md
    assert "OLS with one row per window, item-clustered errors: each extra output token" in md
    # the sweep ran the same items at every clock: a repeated-measures ANOVA on items, named so
    assert "(repeated-measures ANOVA on items, same items at every clock, F(3, " in md
    assert "After Holm correction (paired t on items (delta method" in md


def test_unestablished_saving_is_not_a_recommendation() -> None:
    row = _rec_row(saving_pct=4.0, saving_ci_low=-1.0, saving_ci_high=9.0, saves_energy=False)
    (sentence,) = recommendation_sentences(pd.DataFrame([row]))
    assert "changed energy per token by -4.0 % (95 % simultaneous CI -9.0 to +1.0 %)" in sentence
    assert "the saving is not established, so default clocks remain the recommendation" in sentence


def test_measured_report_has_no_banner(pipeline: dict) -> None:
    summary = pipeline["summary"].assign(energy_kind="measured")
    head = {"energy": {"kind": "measured"}}
    md = build_markdown(
        summary, {}, pipeline["recs"].assign(energy_kind="measured"), head, {}, None
    )
    assert "⚠" not in md and "SIMULATED" not in md


def test_build_markdown_empty_inputs() -> None:
    md = build_markdown(pd.DataFrame(), {}, pd.DataFrame(), {}, {}, None)
    assert "No findings" in md


def _cells(line: str) -> list[str]:
    return [c.strip() for c in re.split(r"(?<!\\)\|", line.strip()[1:-1])]


def test_markdown_table_renderer() -> None:
    # tabulate pads the columns: compare cells, not exact lines
    table = markdown_table(pd.DataFrame({"a": [1, 2], "b": [0.123456, np.nan], "c": ["x|y", None]}))
    lines = table.splitlines()
    assert _cells(lines[0]) == ["a", "b", "c"]
    assert re.fullmatch(r"\|-+\|-+\|-+\|", lines[1])
    assert _cells(lines[2]) == ["1", "0.123", "x\\|y"]
    assert _cells(lines[3]) == ["2", "n/a", "n/a"]
    assert markdown_table(pd.DataFrame()) == ""
    assert markdown_table(pd.DataFrame({"a": [1]}), ["missing"]) == ""


def test_markdown_to_html_subset() -> None:
    md = "# Title\n\nSome **bold** text\nand `code`.\n\n- one\n- two\n\n| a | b |\n|---|---|\n| 1 | x\\|y |\n\n> **warn** here\n"
    out = markdown_to_html(md)
    assert "<h1>Title</h1>" in out
    # markdown-it keeps the soft line break and puts block tags on their own lines
    assert "<p>Some <strong>bold</strong> text\nand <code>code</code>.</p>" in out
    assert "<ul>\n<li>one</li>\n<li>two</li>\n</ul>" in out
    assert "<th>a</th>" in out and "<td>x|y</td>" in out
    assert '<div class="table-scroll"><table>' in out  # a wide table scrolls, not cut off
    assert "<blockquote>\n<p><strong>warn</strong> here</p>\n</blockquote>" in out
    assert "<script" not in markdown_to_html("<script>alert(1)</script>")


def test_markdown_to_html_reaches_nothing_outside() -> None:
    md = "[docs](https://example.org) <http://example.org/x> ![logo](https://example.org/a.png)"
    out = markdown_to_html(md)
    assert "href" not in out and "src" not in out
    assert "docs" in out and "not embedded" in out


def test_build_html_self_contained(pipeline: dict) -> None:
    png = figure_png_bytes(energy_vs_freq(pipeline["summary"]), dpi=30)
    md = pipeline_markdown(pipeline, {"energy_vs_freq": "figures/energy_vs_freq.png"})
    page = build_html(md, {"energy_vs_freq": png, "extra": TINY_PNG})
    assert page.startswith("<!DOCTYPE html>")
    assert page.count("data:image/png;base64,") == 2  # referenced one in place + the extra appended
    assert "http" not in page
    assert not re.search(r"<(script|link)\b", page)
    assert "<style>" in page and "<table>" in page
    assert "<blockquote>" in page  # the simulated banner
    assert "<title>LLM inference energy under GPU frequency caps</title>" in page


class _Page(HTMLParser):
    """What a browser would load or show: tags, src/href values, images, wrapped tables."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: Counter[str] = Counter()
        self.urls: list[str] = []
        self.images: list[str] = []
        self.scrolled_tables = 0
        self.warnings: list[str] = []
        self._open: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        self.tags[tag] += 1
        self.urls += [str(v) for k, v in attrs if k in ("src", "href")]
        if tag == "img":
            self.images.append(str(values.get("src")))
        parent = self._open[-1] if self._open else None
        if tag == "table" and parent and parent[1].get("class") == "table-scroll":
            self.scrolled_tables += 1
        if tag != "img":
            self._open.append((tag, values))

    def handle_endtag(self, tag: str) -> None:
        while self._open and self._open.pop()[0] != tag:
            pass

    def handle_data(self, data: str) -> None:
        if any(t == "blockquote" for t, _ in self._open):
            self.warnings.append(data)


def _page(html_text: str) -> _Page:
    page = _Page()
    page.feed(html_text)
    page.close()
    return page


TEMPLATES = resources.files("llm_energy.report") / "templates"


def test_report_renders_through_the_templates(pipeline: dict) -> None:
    for name in ("report.md.j2", "report.html.j2", "figure.html.j2", "report.css"):
        assert (TEMPLATES / name).is_file(), name  # shipped as package data
    md = pipeline_markdown(
        pipeline, {"energy_vs_freq": "figures/energy_vs_freq.png"}, run_info=RUN_INFO
    )
    # every section the template names is there, in the template's order
    sections = re.findall(r"^## ([A-Za-z ]+)", (TEMPLATES / "report.md.j2").read_text(), re.M)
    assert len(sections) == 10
    positions = [md.index(f"\n## {title}") for title in sections]
    assert positions == sorted(positions)
    # the changelog names the one change in numbers a reader of older results must know
    assert "rouge_score" in md.split("\n## Changelog", 1)[1]
    page = build_html(md, {})
    css = (TEMPLATES / "report.css").read_text()
    assert css.strip() in page  # inline, not linked


def test_html_parses_and_is_self_contained(pipeline: dict) -> None:
    figures = {
        "energy_vs_freq": figure_png_bytes(energy_vs_freq(pipeline["summary"]), dpi=30),
        "pareto": TINY_PNG,
    }
    md = pipeline_markdown(
        pipeline,
        {name: f"figures/{name}.png" for name in figures},
        banner="Simulated GPU model: h200.",
    )
    page = _page(build_html(md, {**figures, "unreferenced": TINY_PNG}))
    assert len(page.images) == 3
    assert all(src.startswith("data:image/png;base64,") for src in page.images)
    assert not [u for u in page.urls if re.match(r"\s*https?:", u, re.I)]
    assert page.tags["script"] == page.tags["link"] == page.tags["iframe"] == 0
    md_tables = re.findall(r"^\|(?:-+\|)+$", md, re.M)  # one separator row per table
    # opening, recommendations, configurations, four statistics, metrics appendix
    assert len(md_tables) == 8
    assert page.tags["table"] == page.scrolled_tables == len(md_tables)
    assert SIMULATED_LABEL in "".join(page.warnings)
    assert "Simulated GPU model: h200." in "".join(page.warnings)


def test_html_estimated_banner(pipeline: dict) -> None:
    summary = pipeline["summary"].assign(energy_kind="estimated")
    md = build_markdown(summary, {}, pd.DataFrame(), {"energy": {"kind": "estimated"}}, {}, None)
    warnings = "".join(_page(build_html(md)).warnings)
    assert ESTIMATED_LABEL in warnings and SIMULATED_LABEL not in warnings


def test_build_html_sections_and_unmatched_image() -> None:
    page = build_html({"Intro": "text", "More": "![missing](figures/missing.png)"}, {})
    assert "<h2>Intro</h2>" in page and "<h2>More</h2>" in page
    assert "not embedded" in page and "figures/missing.png" not in page
    assert "data:image/png;base64," not in page
    page2 = build_html(["# A", "b"], {"fig": TINY_PNG})
    assert "data:image/png;base64," in page2 and "<h2>Figures</h2>" in page2


def test_banner_note_does_not_repeat_the_label() -> None:
    from llm_energy.report.markdown import energy_banner

    banner = energy_banner(["simulated"], SIMULATED_LABEL) or ""
    assert banner.count(SIMULATED_LABEL) == 1
    assert "extra context" in (energy_banner(["simulated"], "extra context") or "")
    assert energy_banner(["measured"], None) is None


def test_csv_round_trip_of_recommendations() -> None:
    import io

    recs = pd.DataFrame(
        [_rec_row(), _rec_row(task="qa", recommended_freq_mhz=np.nan, saves_energy=False)]
    )
    buf = io.StringIO()
    recs.to_csv(buf, index=False)
    back = pd.read_csv(io.StringIO(buf.getvalue()))
    assert recommendation_sentences(back) == recommendation_sentences(recs)


# --- the opening, the run section, the appendix ---------------------------------------------------


def _section(md: str, title: str) -> str:
    return md.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_opening_answers_the_question(pipeline: dict) -> None:
    md = pipeline_markdown(pipeline)
    assert md.index("## Summary") < md.index("## Findings")
    opening = _section(md, "Summary")
    assert len(re.findall(r"^\|(?:-+\|)+$", opening, re.M)) == 1  # exactly one table
    assert "This run measured 32 valid requests" in opening
    trade = pipeline["headline"]["tradeoff"]
    assert f"**Recommended cap: {trade['recommended_freq_mhz']:.0f} MHz**" in opening
    assert f"saves {trade['best_saving_pct']:.1f} % energy per token" in opening
    assert f"{trade['latency_change_pct']:+.1f} % mean latency" in opening
    # energy per token and its CI per configuration, from summary.csv's columns
    row = pipeline["summary"].iloc[0]
    lo, hi = fmt_num(row["j_per_token_ci_low"]), fmt_num(row["j_per_token_ci_high"])
    assert f"| {fmt_num(row['j_per_token_mean'])} " in opening and f"{lo}–{hi}" in opening
    assert "95 % CI (J/token)" in opening and "p50 latency (s)" in opening


def test_no_recommendation_says_why_once(pipeline: dict) -> None:
    recs = pipeline["recs"].assign(recommended_freq_mhz=np.nan, saves_energy=False)
    head = {**pipeline["headline"], "tradeoff": savings_headline(recs)}
    md = build_markdown(pipeline["summary"], pipeline["tables"], recs, head, {}, None)
    opening = _section(md, "Summary")
    assert opening.count("No cap can be recommended") == 1
    assert "in none of the 1 task/model strata" in opening


def _single_clock(pipeline: dict) -> dict:
    """Three tasks at default clocks only: the CPU default run's shape."""
    req = sweep_requests((None,), n_per_freq=6, energy_kind="estimated", tasks=("qa", "gen", "sum"))
    summary = summarize(req)
    recs = recommend_cap(req, latency_budget_pct=5.0)
    tables = {"frequency_effect": frequency_effect(req), "pairwise": pairwise_vs_default(req)}
    head = headline_metrics(summary, req)
    head["tradeoff"] = savings_headline(recs)
    return {"summary": summary, "recs": recs, "tables": tables, "headline": head}


def test_single_clock_replaces_the_frequency_figures_with_one_sentence(pipeline: dict) -> None:
    run = _single_clock(pipeline)
    names = ["energy_vs_freq", "latency_vs_freq", "pareto", "j_per_token_by_task"]
    md = build_markdown(
        run["summary"],
        run["tables"],
        run["recs"],
        run["headline"],
        {n: f"figures/{n}.png" for n in names},
        None,
    )
    assert "![j_per_token_by_task]" in md
    for name in names[:3]:
        assert f"![{name}]" not in md
    assert md.count("Only default clocks were measured") == 1
    assert md.count("No clock can be recommended") == 1
    # one clock: no word of caps anywhere (title, sections, sentences), no Pareto table
    assert md.startswith("# LLM inference energy\n")
    assert not re.search(r"\bcaps?\b", md.split("## Changelog")[0], re.I)
    assert "## Statistics: pareto" not in md
    assert "skipped" not in _section(md, "Findings")
    assert "## Statistics: frequency effect" not in md
    assert "## Recommended frequency caps" not in md
    assert len(re.findall(r"^\|(?:-+\|)+$", _section(md, "Summary"), re.M)) == 1


def test_appendix_lists_metrics_with_units(pipeline: dict) -> None:
    md = build_markdown(pipeline["summary"], {}, pipeline["recs"], pipeline["headline"], {}, None)
    assert md.index("## Appendix: headline metrics") > md.index("## Configurations")
    appendix = _section(md, "Appendix: headline metrics")
    rows = {_cells(line)[0]: _cells(line) for line in appendix.splitlines() if line.startswith("|")}
    assert rows["key"] == ["key", "value", "unit"]
    assert rows["by_task.qa.j_per_token"][2] == "J/token"
    assert rows["by_task.qa.j_per_token_ci_low"][2] == "J/token"
    assert rows["energy.total_j"][2] == "J"
    assert rows["by_task.qa.latency_p50_s"][2] == "s"
    assert rows["by_task.qa.tokens_per_s"][2] == "tokens/s"
    assert rows["by_task.qa.quality_exact_match"][2] == "score (0–1)"
    assert rows["counts.n_requests"][2] == "count"
    assert rows["tradeoff.best_saving_pct"][2] == "%"
    assert "- **energy." not in md  # no raw key list any more
    assert metric_unit("gpu.freq_applied_mhz") == "MHz"
    assert metric_unit("energy.avg_power_w") == "W"


def test_co2_provenance_and_settings_are_shown(pipeline: dict) -> None:
    md = build_markdown(
        pipeline["summary"], {}, pipeline["recs"], pipeline["headline"], {}, None, run_info=RUN_INFO
    )
    run = _section(md, "Run: CO₂, provenance and measurement settings")
    for text in (
        "| CO₂ (g)",
        "0.08243",  # 8.243e-05 kg
        "110.8",  # g/kWh
        "codecarbon offline; GPU energy from the project's meter",
        "NVIDIA H200",
        "570.86",
        "12.8",
        "| torch ",
        "2.6.0",
        "abc1234def",
        "gpu-node-1",
        "| repetitions ",
        "| warm-up stopped by ",
        "steady",
        "19.66",
        "| min window (s) ",
        "| min window (counter periods) ",
        "| tick-aligned windows ",
        "| clock control | locked clocks via NVML",
        "| cooldown between windows (s) ",
        "| idle baseline (s) ",
    ):
        assert text in run, text
    # without run.json the section is left out, not filled with n/a
    bare = build_markdown(pipeline["summary"], {}, pipeline["recs"], pipeline["headline"], {}, None)
    assert "## Run:" not in bare


def test_report_prints_one_calibration_line_per_interval_type(pipeline: dict) -> None:
    calibration = {
        "rows": [
            {
                "method": "coverage j_per_token",
                "scenario": "effect15",
                "n_items": 5,
                "nominal": 0.95,
                "achieved": 0.91,
                "n": 900,
            },
            {
                "method": "coverage j_per_token",
                "scenario": "null",
                "n_items": 12,
                "nominal": 0.95,
                "achieved": 0.953,
                "n": 900,
            },
            {
                "method": "coverage j_per_token",
                "scenario": "null",
                "n_items": 5,
                "nominal": 0.95,
                "achieved": 0.948,
                "n": 1200,
            },
            {
                "method": "pairwise size",
                "scenario": "null",
                "n_items": 5,
                "nominal": 0.05,
                "achieved": 0.04,
                "n": 1200,
            },
        ]
    }
    md = pipeline_markdown(pipeline, calibration=calibration)
    trust = md.split("## How far to trust the intervals", 1)[1].split("\n## ", 1)[0]
    # the smallest item count, the null scenario first; tests (size) are not intervals
    assert trust.count("calibrated:") == 1
    assert (
        "j_per_token interval — calibrated: 95.0 % nominal, 94.8 % achieved in the project's "
        "own Monte Carlo (5 items, null, 1200 intervals)." in trust
    )
    assert "not run here" in pipeline_markdown(pipeline)
    dated = pipeline_markdown(
        pipeline,
        calibration={
            **calibration,
            "code": "abc1234",
            "created": "2026-12-06",
            "replicates": {"null": 300, "effect6": 300},
        },
    )
    assert "Monte Carlo of commit abc1234 (2026-12-06, 600 sweeps)" in dated


def test_provenance_of_a_cpu_run_says_what_was_done() -> None:
    from llm_energy.control.slurm import clock_mechanism
    from llm_energy.report.sections import provenance_table, settings_table

    cpu = RUN_INFO | {
        "energy_source": "codecarbon-estimate",
        "clock_mechanism": clock_mechanism("lock", "cpu"),  # gpu.control=lock, but no GPU
        "counter_update_period_s": None,
        "window_rules": {"min_window_s": None, "min_trusted_s": None, "tick_align": None},
    }
    provenance, settings = provenance_table(cpu), settings_table(cpu)
    assert "none (cpu backend: no GPU clocks)" in provenance and "NVML" not in provenance
    for row in ("min window (s)", "min trusted window (s)", "counter update period (s)"):
        line = next(x for x in settings.splitlines() if x.startswith(f"| {row} "))
        assert "n/a (no energy counter)" in line, line
    gpu_settings = settings_table(RUN_INFO)
    assert "n/a" not in gpu_settings and "| counter update period (s) " in gpu_settings


def _table_header(section: str) -> list[str]:
    return _cells(next(line for line in section.splitlines() if line.startswith("|")))


def test_configurations_table_shows_what_a_reader_needs(pipeline: dict) -> None:
    md = pipeline_markdown(pipeline)
    assert md.startswith("# LLM inference energy under GPU frequency caps\n")  # 4 clocks ran
    section = _section(md, "Configurations")
    header = _table_header(section)
    assert header == [
        "model",
        "task",
        "clock",
        "requests",
        "J/token",
        "95 % CI (J/token)",
        "p50 latency (s)",
        "tokens/s",
        "quality (scores 0–1; perplexity ≥ 1)",
    ]
    assert "`data/aggregate/summary.csv`" in section  # the rest of the columns
    row = pipeline["summary"].iloc[0]
    lo, hi = fmt_num(row["j_per_token_ci_low"]), fmt_num(row["j_per_token_ci_high"])
    assert f"| {fmt_num(row['tokens_per_s_mean'])} " in section and f"{lo}–{hi}" in section
    assert f"| exact match {fmt_num(row['quality_exact_match_mean'])} " in section


def test_pooled_over_tasks_is_quoted_only_with_its_interval(pipeline: dict) -> None:
    run = _single_clock(pipeline)
    pooled = run["headline"]["pooled_over_tasks"]
    md = build_markdown(run["summary"], {}, run["recs"], run["headline"], {}, None)
    lo, hi = fmt_num(pooled["j_per_token_ci_low"]), fmt_num(pooled["j_per_token_ci_high"])
    expected = f"pooled over tasks: {fmt_num(pooled['j_per_token'])} J/token, CI {lo}–{hi}"
    assert expected in _section(md, "Summary")
    head = {k: v for k, v in run["headline"].items() if k != "pooled_over_tasks"}
    md = build_markdown(run["summary"], {}, run["recs"], head, {}, None)
    assert "pooled" not in _section(md, "Summary")
