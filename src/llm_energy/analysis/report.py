"""The report: findings written as sentences from the numbers, tables, figures.

:func:`build_markdown` writes ``report.md`` text; :func:`build_html` turns it into one
self-contained HTML page (inline CSS, figures as base64 ``data:`` URIs, nothing fetched).
Pure: strings and bytes in, strings out.
"""

from __future__ import annotations

import base64
import html
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import PurePath
from typing import Any

import numpy as np
import pandas as pd

from llm_energy.analysis.figures import ESTIMATED_LABEL, SIMULATED_LABEL, UNKNOWN_LABEL
from llm_energy.analysis.headline import flatten_dict
from llm_energy.analysis.records import STRATUM_KEYS, freq_label
from llm_energy.analysis.records import is_missing as _is_missing
from llm_energy.analysis.significance import SPEARMAN_COLUMNS

METRIC_PHRASES: dict[str, str] = {
    "j_per_token": "energy per token",
    "energy_j": "energy per request",
    "dynamic_energy_j": "dynamic energy per request",
    "latency_s": "latency",
    "tokens_per_s": "throughput",
    "edp_j_s": "energy-delay product",
}
TERM_PHRASES: dict[str, str] = {
    "input_tokens": "each extra input token",
    "output_tokens": "each extra output token",
    "model_params_m": "each extra million parameters",
    "freq_applied_mhz": "each extra MHz of SM clock",
}
TEST_NAMES: dict[str, str] = {
    "anova": "one-way ANOVA",
    "welch_anova": "Welch's ANOVA",
    "kruskal": "Kruskal–Wallis",
    "friedman": "Friedman, same items at every clock",
    "wilcoxon": "Wilcoxon signed-rank, same items at both clocks",
    "mixedlm": "mixed model with a random intercept per item block, likelihood-ratio test",
}
PAIR_TEST_NAMES: dict[str, str] = {
    "welch_t": "Welch's t",
    "mann_whitney_u": "Mann–Whitney U",
    "wilcoxon_signed_rank": "Wilcoxon signed-rank, paired by item",
    "paired_t": "paired t, paired by item",
}


# --- number formatting ---------------------------------------------------------------------------


def _truthy(value: Any) -> bool:
    """Flag from a DataFrame cell, also after a CSV round trip (NaN / "False" are false)."""
    if _is_missing(value):
        return False
    if isinstance(value, str):
        return value.strip().lower() in {"true", "1", "yes"}
    return bool(value)


def fmt_num(value: Any, digits: int = 3) -> str:
    """Compact number: ``digits`` significant digits, thousands kept whole; ``n/a`` for NaN."""
    if _is_missing(value):
        return "n/a"
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        x = float(value)
        if not math.isfinite(x):
            return "n/a"
        if x.is_integer() and abs(x) < 1e6:
            return str(int(x))
        if x != 0 and (abs(x) >= 1e6 or abs(x) < 1e-3):
            return f"{x:.{digits - 1}e}"
        if abs(x) >= 10**digits:
            return f"{x:.0f}"
        return f"{x:.{digits}g}"
    return str(value)


def fmt_pct(value: Any, *, signed: bool = False) -> str:
    """``18.3`` or ``+4.2`` (one decimal, no unit)."""
    if _is_missing(value) or not math.isfinite(float(value)):
        return "n/a"
    return f"{float(value):+.1f}" if signed else f"{float(value):.1f}"


def fmt_range(lo: Any, hi: Any, *, signed: bool = False) -> str:
    """``15.1–21.0`` for two non-negative bounds, ``-3.1 to +4.2`` otherwise."""
    if not signed and float(lo) >= 0 and float(hi) >= 0:
        return f"{fmt_pct(lo)}–{fmt_pct(hi)}"
    return f"{fmt_pct(lo, signed=True)} to {fmt_pct(hi, signed=True)}"


def fmt_p(p: Any) -> str:
    if _is_missing(p) or not math.isfinite(float(p)):
        return "p = n/a"
    return "p < 0.001" if float(p) < 0.001 else f"p = {float(p):.3f}"


def _freq_text(freq: Any) -> str:
    return freq_label(freq)


# --- tables --------------------------------------------------------------------------------------


def markdown_table(
    frame: pd.DataFrame, columns: Sequence[str] | None = None, *, digits: int = 3
) -> str:
    """A GitHub pipe table (own renderer: no tabulate dependency). Empty string when no rows."""
    if frame is None or frame.empty:
        return ""
    cols = [c for c in (columns or list(frame.columns)) if c in frame.columns]
    if not cols:
        return ""

    def cell(v: Any) -> str:
        text = str(v) if isinstance(v, list | tuple | dict) else fmt_num(v, digits)
        return text.replace("|", "\\|").replace("\n", " ")

    header = "| " + " | ".join(str(c) for c in cols) + " |"
    sep = "|" + "|".join("---" for _ in cols) + "|"
    body = [
        "| " + " | ".join(cell(v) for v in row) + " |"
        for row in frame[cols].itertuples(index=False, name=None)
    ]
    return "\n".join([header, sep, *body])


# --- banners --------------------------------------------------------------------------------------


def energy_banner(kinds: Iterable[Any], note: str | None = None) -> str | None:
    """Markdown blockquote warning when any energy is simulated / estimated / unknown."""
    present = {str(k) for k in kinds if not _is_missing(k)}
    lines = []
    if "simulated" in present:
        lines.append(
            f"> **⚠ {SIMULATED_LABEL}.** Energy and power come from the simulated GPU model; "
            "they illustrate the method and must not be cited as measurements."
        )
    if "estimated" in present:
        lines.append(
            f"> **⚠ {ESTIMATED_LABEL}.** Energy is codecarbon's estimate, not a hardware "
            "energy-counter reading."
        )
    if present - {"measured", "simulated", "estimated"}:
        lines.append(f"> **⚠ {UNKNOWN_LABEL}.**")
    if note and note.strip():
        # a note that only repeats a label already in the banner is left out
        shown = "\n".join(lines)
        rest = note.strip()
        for label in (SIMULATED_LABEL, ESTIMATED_LABEL, UNKNOWN_LABEL):
            if label in shown:
                rest = rest.replace(label, "")
        rest = rest.strip(" |;\n")
        if rest.strip(" .|;"):
            lines.append(f"> {rest}")
    return "\n>\n".join(lines) if lines else None


def repetition_warning(block: Mapping[str, Any] | None) -> str | None:
    """Blockquote when metrics.json ``repetition`` flags a first repetition unlike the rest."""
    if not isinstance(block, Mapping) or not block.get("n_configs_flagged"):
        return None
    ratio = block.get("worst_ratio")
    worst = (
        f" (worst: {block.get('worst_metric')} of rep 0 was {float(ratio):.2f}× the later "
        f"repetitions, {block.get('worst_config')})"
        if not _is_missing(ratio)
        else ""
    )
    return (
        f"> **⚠ First repetition differs.** In {block['n_configs_flagged']} of "
        f"{block.get('n_configs_tested')} configurations the first repetition (rep 0) differed "
        f"from the later ones{worst}: a cold start or drift. The numbers above include it; a "
        "longer warm-up, or leaving rep 0 out, would remove it."
    )


# --- sentences ------------------------------------------------------------------------------------


def _context(row: Mapping[str, Any], varying: Sequence[str]) -> str:
    """ "on summarization with model X" plus any other stratum key that varies."""
    parts = []
    task, model = row.get("task"), row.get("model")
    if not _is_missing(task):
        parts.append(f"on {task}")
    if not _is_missing(model):
        parts.append(f"with model {model}")
    extra = []
    names = {
        "engine": "engine",
        "batch_size": "batch",
        "input_tokens_target": "input target",
        "output_tokens_target": "output target",
    }
    for key in varying:
        if key in ("model", "task"):
            continue
        value = row.get(key)
        if key == "energy_kind":
            extra.append(f"{value} energy")
        else:
            extra.append(f"{names.get(key, key)} {fmt_num(value)}")
    text = " ".join(parts) if parts else "overall"
    return f"{text} ({', '.join(extra)})" if extra else text


def _varying(frame: pd.DataFrame, keys: Sequence[str]) -> list[str]:
    return [k for k in keys if k in frame.columns and frame[k].nunique(dropna=False) > 1]


def recommendation_sentences(recommendations: pd.DataFrame) -> list[str]:
    """One sentence per stratum of :func:`~llm_energy.analysis.tradeoff.recommend_cap`.

    E.g. "Capping at 1200 MHz saved 18.3 % energy per token (95 % CI 15.1–21.0 %) for +4.2 %
    p50 latency on summarization with model X."
    """
    if recommendations is None or recommendations.empty:
        return []
    varying = _varying(recommendations, STRATUM_KEYS)
    out = []
    for row in recommendations.to_dict("records"):
        ctx = _context(row, varying)
        metric = str(row.get("metric") or "j_per_token")
        phrase = METRIC_PHRASES.get(metric, metric)
        kind = row.get("energy_kind")
        if not _is_missing(kind) and str(kind) != "measured" and "energy_kind" not in varying:
            ctx = f"{ctx} ({kind} energy)"
        budget = row.get("latency_budget_pct")
        budget_txt = f"+{fmt_num(budget)} %" if not _is_missing(budget) else "the budget"
        baseline = str(row.get("baseline") or "default")
        base_txt = "default clocks" if baseline == "default" else f"the {baseline} frequency"
        ci_level = row.get("ci_level")
        ci_pct = f"{round(float(ci_level) * 100):d} % CI" if not _is_missing(ci_level) else "CI"
        rec = row.get("recommended_freq_mhz")
        if _is_missing(rec):
            note = str(row.get("note") or "")
            if "only the baseline" in note:
                out.append(f"Only {base_txt} were measured {ctx}; no cap can be recommended.")
            else:
                out.append(
                    f"No frequency cap kept p50 latency within {budget_txt} of {base_txt} {ctx}."
                )
            continue
        saving = row.get("saving_pct")
        lo, hi = row.get("saving_ci_low"), row.get("saving_ci_high")
        ci_txt = (
            f" ({ci_pct} {fmt_range(lo, hi)} %)" if not (_is_missing(lo) or _is_missing(hi)) else ""
        )
        lat = fmt_pct(row.get("latency_change_pct"), signed=True)
        if _truthy(row.get("saves_energy")):
            sentence = (
                f"Capping at {_freq_text(rec)} saved {fmt_pct(saving)} % {phrase}{ci_txt} "
                f"for {lat} % p50 latency {ctx}."
            )
            if not _is_missing(lo) and float(lo) <= 0:
                sentence += " The interval includes no saving, so the effect is not established."
        else:
            change = -float(saving) if not _is_missing(saving) else math.nan
            ci_change = (
                f" ({ci_pct} {fmt_range(-float(hi), -float(lo), signed=True)} %)" if ci_txt else ""
            )
            # a cheaper point whose interval (after picking the best cap) reaches zero is no saving
            verdict = (
                f"the saving is not established, so {base_txt} remain the recommendation"
                if not _is_missing(saving) and float(saving) > 0
                else f"{base_txt} remain the better choice"
            )
            sentence = (
                f"Within a {budget_txt} p50-latency budget the best cap, {_freq_text(rec)}, "
                f"changed {phrase} by {fmt_pct(change, signed=True)} %{ci_change} {ctx}; "
                f"{verdict}."
            )
        out.append(sentence)
    return out


def frequency_effect_sentences(table: pd.DataFrame) -> list[str]:
    if table is None or table.empty:
        return []
    varying = _varying(table, STRATUM_KEYS)
    out = []
    for row in table.to_dict("records"):
        ctx = _context(row, varying)
        metric = str(row.get("metric"))
        test = str(row.get("test"))
        if test == "skipped" or _is_missing(row.get("p_value")):
            verdict = str(row.get("verdict") or "skipped")
            reason = verdict.removeprefix("skipped: ").removeprefix("skipped")
            out.append(
                f"The frequency-effect test on {metric} {ctx} was skipped: {reason or 'no data'}."
            )
            continue
        k1 = row.get("df_between")
        if test in ("anova", "welch_anova"):
            stat_txt = (
                f"F({fmt_num(k1)}, {fmt_num(row.get('df_within'))}) = {float(row['statistic']):.2f}, "
                f"{fmt_p(row['p_value'])}, η² = {fmt_num(row.get('effect_size'), 2)}"
            )
        elif test in ("friedman", "mixedlm"):
            effect = (
                f", Kendall's W = {fmt_num(row.get('effect_size'), 2)}"
                if test == "friedman"
                else ""
            )
            stat_txt = (
                f"χ²({fmt_num(k1)}) = {float(row['statistic']):.2f}, {fmt_p(row['p_value'])}"
                f"{effect}, {fmt_num(row.get('n_blocks'))} item blocks"
            )
        elif test == "wilcoxon":
            stat_txt = (
                f"W = {float(row['statistic']):.2f}, {fmt_p(row['p_value'])}, "
                f"{fmt_num(row.get('n_blocks'))} item blocks"
            )
        else:
            stat_txt = (
                f"H({fmt_num(k1)}) = {float(row['statistic']):.2f}, {fmt_p(row['p_value'])}, "
                f"ε² = {fmt_num(row.get('effect_size'), 2)}"
            )
        name = TEST_NAMES.get(test, test)
        if _truthy(row.get("significant")):
            out.append(
                f"The frequency cap had a significant effect on {metric} {ctx} ({name}, {stat_txt})."
            )
        else:
            out.append(
                f"No significant effect of the frequency cap on {metric} was found {ctx} ({name}, {stat_txt})."
            )
    return out


def pairwise_sentences(table: pd.DataFrame) -> list[str]:
    if table is None or table.empty or "p_holm" not in table.columns:
        return []
    out = []
    tested = table[table["p_holm"].notna()]
    if tested.empty:
        return []
    varying = _varying(tested, STRATUM_KEYS)
    for _, group in tested.groupby(
        [k for k in STRATUM_KEYS if k in tested.columns], dropna=False, sort=True
    ):
        row = group.iloc[0].to_dict()
        ctx = _context(row, varying)
        n_sig = sum(_truthy(v) for v in group["significant"].tolist())
        baseline = str(row.get("baseline") or "default")
        base_txt = "default clocks" if baseline == "default" else f"the {baseline} frequency"
        test = PAIR_TEST_NAMES.get(str(row.get("test")), str(row.get("test")))
        out.append(
            f"After Holm correction ({test}), {n_sig} of {len(group)} capped frequencies differ "
            f"significantly from {base_txt} in {row.get('metric')} {ctx}."
        )
    return out


def spearman_sentences(table: pd.DataFrame) -> list[str]:
    if table is None or table.empty:
        return []
    out = []
    rows = table[table["scope"] == "overall"] if "scope" in table.columns else table
    for row in rows.to_dict("records"):
        if _is_missing(row.get("rho")):
            continue
        rho = float(row["rho"])
        direction = "rises" if rho > 0 else "falls"
        kind = row.get("energy_kind")
        kind_txt = f" ({kind} energy)" if not _is_missing(kind) else ""
        out.append(
            f"Across all windows{kind_txt}, {row.get('metric')} {direction} with "
            f"{row.get('variable')} (Spearman ρ = {rho:.2f}, {fmt_p(row.get('p_value'))}, n = {fmt_num(row.get('n'))} windows)."
        )
    return out


def regression_sentences(table: pd.DataFrame) -> list[str]:
    if table is None or table.empty or "term" not in table.columns:
        return []
    out = []
    r2 = table.attrs.get("r2")
    n = table.attrs.get("n")
    cov = str(table.attrs.get("cov_type") or "robust")
    errors = "window-clustered errors" if cov.startswith("cluster") else f"{cov} errors"
    for row in table.to_dict("records"):
        term = row["term"]
        if term == "const" or term not in TERM_PHRASES:
            continue
        out.append(
            f"OLS with {errors}: {TERM_PHRASES[term]} changes energy per request by "
            f"{fmt_num(row['coef'])} J (95 % CI {fmt_num(row['ci_low'])} to {fmt_num(row['ci_high'])}, "
            f"{fmt_p(row['p_value'])})."
        )
    if out and r2 is not None and not _is_missing(r2):
        out.append(f"The model explains R² = {float(r2):.3f} of the variance (n = {fmt_num(n)}).")
    return out


# --- markdown --------------------------------------------------------------------------------------

_SUMMARY_TABLE_COLUMNS = [
    "label",
    "n",
    "n_excluded",
    "j_per_token_mean",
    "j_per_token_ci_low",
    "j_per_token_ci_high",
    "latency_p50_s",
    "latency_p95_s",
    "tokens_per_s_mean",
    "avg_power_w_mean",
    "energy_j_mean",
    "edp_j_s_mean",
]
_STATS_TABLE_COLUMNS: dict[str, list[str]] = {
    "frequency_effect": [
        "model",
        "task",
        "metric",
        "n_levels",
        "n_total",
        "test",
        "test_reason",
        "statistic",
        "p_value",
        "effect_size",
        "effect_size_kind",
        "verdict",
    ],
    "pairwise": [
        "model",
        "task",
        "metric",
        "label",
        "baseline",
        "n",
        "n_pairs",
        "mean",
        "mean_baseline",
        "pct_change",
        "test",
        "p_value",
        "p_holm",
        "significant",
        "effect_size",
        "effect_size_kind",
    ],
    "spearman": SPEARMAN_COLUMNS,
    "regression": ["term", "coef", "se", "se_hc3", "t", "p_value", "ci_low", "ci_high"],
}
_RECOMMEND_TABLE_COLUMNS = [
    "model",
    "task",
    "baseline",
    "recommended_label",
    "baseline_mean",
    "recommended_mean",
    "saving_pct",
    "saving_ci_low",
    "saving_ci_high",
    "latency_change_pct",
    "latency_change_ci_high",
    "pick_share",
    "note",
]


def _summary_table(summary: pd.DataFrame) -> str:
    if summary is None or summary.empty:
        return ""
    data = summary.copy()
    if "label" not in data.columns:
        default = (
            data["default_clocks"].fillna(False).astype(bool)
            if "default_clocks" in data.columns
            else data.get("freq_applied_mhz", pd.Series(np.nan, index=data.index)).isna()
        )
        freq = data.get("freq_applied_mhz", pd.Series(np.nan, index=data.index))
        data["label"] = [
            "default" if d else freq_label(f) for d, f in zip(default, freq, strict=True)
        ]
    keys = [k for k in STRATUM_KEYS if k in data.columns]
    shown_keys = [k for k in keys if k in ("model", "task") or data[k].nunique(dropna=False) > 1]
    quality = [
        c for c in data.columns if str(c).startswith("quality_") and str(c).endswith("_mean")
    ]
    ppl = (
        ["perplexity"] if "perplexity" in data.columns and data["perplexity"].notna().any() else []
    )
    return markdown_table(data, [*shown_keys, *_SUMMARY_TABLE_COLUMNS, *quality, *ppl])


def _headline_lines(headline: Mapping[str, Any]) -> list[str]:
    flat = flatten_dict(headline) if headline else {}
    return [f"- **{k}**: {fmt_num(v, 4)}" for k, v in flat.items()]


def build_markdown(
    summary: pd.DataFrame,
    stats_tables: Mapping[str, pd.DataFrame],
    recommendations: pd.DataFrame,
    headline: Mapping[str, Any],
    figure_paths: Mapping[str, str] | None = None,
    energy_kind_note: str | None = None,
    *,
    title: str = "LLM inference energy under GPU frequency caps",
) -> str:
    """The report as markdown: banner, findings (sentences), headline, tables, figures.

    ``stats_tables`` keys with dedicated sentences: ``frequency_effect``, ``pairwise``,
    ``spearman``, ``regression`` (R² taken from ``table.attrs`` when present); every table is
    also rendered. ``figure_paths`` maps a figure name to the path the report links (relative
    to the report).
    """
    kinds: set[str] = set()
    if summary is not None and "energy_kind" in summary.columns:
        used = summary
        if "n" in summary.columns:  # configurations that only failed carry no energy number
            used = summary[pd.to_numeric(summary["n"], errors="coerce").fillna(0) > 0]
        kinds |= {str(k) for k in used["energy_kind"].dropna().unique()}
    energy_head = headline.get("energy") if headline else None
    if isinstance(energy_head, Mapping) and energy_head.get("kind"):
        kinds.add(str(energy_head["kind"]))
    lines: list[str] = [f"# {title}", ""]
    banner = energy_banner(kinds, energy_kind_note)
    if banner:
        lines += [banner, ""]
    repetition = repetition_warning((headline or {}).get("repetition"))
    if repetition:
        lines += [repetition, ""]

    findings = recommendation_sentences(recommendations)
    tables = dict(stats_tables or {})
    findings += frequency_effect_sentences(tables.get("frequency_effect"))
    findings += pairwise_sentences(tables.get("pairwise"))
    findings += spearman_sentences(tables.get("spearman"))
    findings += regression_sentences(tables.get("regression"))
    lines += ["## Findings", ""]
    lines += [f"- {s}" for s in findings] if findings else ["No findings: no valid requests."]
    lines.append("")

    if headline:
        lines += ["## Headline metrics", "", *_headline_lines(headline), ""]

    if recommendations is not None and not recommendations.empty:
        budget = recommendations["latency_budget_pct"].dropna().unique()
        budget_txt = f" (p50-latency budget +{fmt_num(budget[0])} %)" if len(budget) == 1 else ""
        lines += [f"## Recommended frequency caps{budget_txt}", ""]
        lines += [markdown_table(recommendations, _RECOMMEND_TABLE_COLUMNS), ""]

    table = _summary_table(summary)
    if table:
        n_boot = summary["n_boot"].dropna().unique() if "n_boot" in summary.columns else []
        ci = summary["ci_level"].dropna().unique() if "ci_level" in summary.columns else []
        note = ""
        if len(n_boot) == 1 and len(ci) == 1:
            note = (
                f"Means with {round(float(ci[0]) * 100):d} % percentile-bootstrap CIs "
                f"({int(n_boot[0])} resamples of measurement windows); J/token is total "
                "energy over total tokens; excluded requests "
                "(failed, untrusted window, cap not held, throttled) are counted, not used."
            )
        lines += ["## Configurations", ""]
        if note:
            lines += [note, ""]
        lines += [table, ""]

    for name, frame in tables.items():
        if frame is None or frame.empty:
            continue
        cols = _STATS_TABLE_COLUMNS.get(name)
        if cols:
            cols = [c for c in cols if c in frame.columns]
            if name != "regression":
                cols = [c for c in cols if c not in ("model", "task") or frame[c].notna().any()]
        lines += [f"## Statistics: {name.replace('_', ' ')}", "", markdown_table(frame, cols), ""]

    if figure_paths:
        lines += ["## Figures", ""]
        for name, path in figure_paths.items():
            lines += [f"### {name.replace('_', ' ')}", "", f"![{name}]({path})", ""]
    return "\n".join(lines).rstrip() + "\n"


# --- markdown → HTML -------------------------------------------------------------------------------

_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1100px;
margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
h1{border-bottom:2px solid #444}h2{border-bottom:1px solid #ccc;margin-top:1.8em}
table{border-collapse:collapse;margin:1em 0;font-size:0.85em;display:block;overflow-x:auto}
th,td{border:1px solid #ccc;padding:3px 7px;text-align:right}
th{background:#f0f0f0}td:first-child,th:first-child{text-align:left}
tr:nth-child(even){background:#fafafa}
blockquote{border-left:6px solid #b00020;background:#fdecea;margin:1em 0;padding:0.6em 1em;
color:#5f0010}
code{background:#f4f4f4;padding:0 3px}pre{background:#f4f4f4;padding:0.8em;overflow-x:auto}
img{max-width:100%;height:auto;border:1px solid #ddd;margin:0.5em 0}
figure{margin:1em 0}figcaption{font-size:0.85em;color:#555}
"""

_IMAGE_RE = re.compile(r"!\[([^\]]*)\]\(([^)\s]*)\)")
_LINK_RE = re.compile(r"\[([^\]]+)\]\(([^)\s]*)\)")
_BOLD_RE = re.compile(r"\*\*(.+?)\*\*")
_CODE_RE = re.compile(r"`([^`]+)`")
_TABLE_SEP_RE = re.compile(r"^\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*$")
_LIST_RE = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+(.*)$")


def png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _figure_lookup(figures: Mapping[str, bytes], src: str, alt: str) -> tuple[str, bytes] | None:
    for candidate in (alt, PurePath(src).stem if src else "", src):
        if candidate and candidate in figures:
            return candidate, figures[candidate]
    return None


def _inline(text: str) -> str:
    """Escape HTML, then **bold**, `code`; links keep their text only (nothing external)."""
    escaped = html.escape(text, quote=False)
    escaped = _CODE_RE.sub(r"<code>\1</code>", escaped)
    escaped = _BOLD_RE.sub(r"<strong>\1</strong>", escaped)
    escaped = _LINK_RE.sub(r"\1", escaped)
    return escaped


def _split_row(line: str) -> list[str]:
    body = line.strip()
    if body.startswith("|"):
        body = body[1:]
    if body.endswith("|") and not body.endswith("\\|"):
        body = body[:-1]
    cells = re.split(r"(?<!\\)\|", body)
    return [c.strip().replace("\\|", "|") for c in cells]


def markdown_to_html(
    text: str, figures: Mapping[str, bytes] | None = None, used: set[str] | None = None
) -> str:
    """A small markdown subset → HTML: headings, paragraphs, pipe tables, lists, blockquotes,
    fenced code, bold, inline code and images (embedded when named in ``figures``)."""
    figures = figures or {}
    used = used if used is not None else set()
    lines = text.splitlines()
    out: list[str] = []
    para: list[str] = []
    i = 0

    def flush_para() -> None:
        if para:
            out.append("<p>" + " ".join(_inline(p) for p in para) + "</p>")
            para.clear()

    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if not stripped:
            flush_para()
            i += 1
            continue
        if stripped.startswith("```"):
            flush_para()
            code: list[str] = []
            i += 1
            while i < len(lines) and not lines[i].strip().startswith("```"):
                code.append(lines[i])
                i += 1
            out.append("<pre><code>" + html.escape("\n".join(code)) + "</code></pre>")
            i += 1
            continue
        heading = re.match(r"^(#{1,6})\s+(.*)$", stripped)
        if heading:
            flush_para()
            level = len(heading.group(1))
            out.append(f"<h{level}>{_inline(heading.group(2))}</h{level}>")
            i += 1
            continue
        if stripped.startswith(">"):
            flush_para()
            quote: list[str] = []
            while i < len(lines) and lines[i].strip().startswith(">"):
                quote.append(lines[i].strip()[1:].strip())
                i += 1
            paragraphs = [p for p in "\n".join(quote).split("\n\n")]
            inner = "".join(
                "<p>" + " ".join(_inline(x) for x in p.splitlines() if x) + "</p>"
                for p in paragraphs
                if p.strip()
            )
            out.append(f"<blockquote>{inner}</blockquote>")
            continue
        if (
            stripped.startswith("|")
            and i + 1 < len(lines)
            and _TABLE_SEP_RE.match(lines[i + 1].strip())
        ):
            flush_para()
            header = _split_row(stripped)
            i += 2
            rows: list[list[str]] = []
            while i < len(lines) and lines[i].strip().startswith("|"):
                rows.append(_split_row(lines[i]))
                i += 1
            head_html = "".join(f"<th>{_inline(h)}</th>" for h in header)
            body_html = "".join(
                "<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>" for r in rows
            )
            out.append(
                f"<table><thead><tr>{head_html}</tr></thead><tbody>{body_html}</tbody></table>"
            )
            continue
        if _LIST_RE.match(line):
            flush_para()
            ordered = bool(re.match(r"^\s*\d+[.)]\s", line))
            items: list[str] = []
            while i < len(lines) and _LIST_RE.match(lines[i]):
                items.append(_LIST_RE.match(lines[i]).group(1))  # type: ignore[union-attr]
                i += 1
                while (
                    i < len(lines)
                    and lines[i].startswith("  ")
                    and lines[i].strip()
                    and not _LIST_RE.match(lines[i])
                ):
                    items[-1] += " " + lines[i].strip()
                    i += 1
            tag = "ol" if ordered else "ul"
            out.append(
                f"<{tag}>" + "".join(f"<li>{_inline(it)}</li>" for it in items) + f"</{tag}>"
            )
            continue
        image = _IMAGE_RE.fullmatch(stripped)
        if image:
            flush_para()
            alt, src = image.group(1), image.group(2)
            found = _figure_lookup(figures, src, alt)
            if found:
                name, png = found
                used.add(name)
                out.append(
                    f'<figure><img alt="{html.escape(alt)}" src="{png_data_uri(png)}">'
                    f"<figcaption>{html.escape(name)}</figcaption></figure>"
                )
            else:
                out.append(f"<p><em>[figure {html.escape(alt or src)} not embedded]</em></p>")
            i += 1
            continue
        if re.fullmatch(r"-{3,}|\*{3,}", stripped):
            flush_para()
            out.append("<hr>")
            i += 1
            continue
        para.append(stripped)
        i += 1
    flush_para()
    return "\n".join(out)


def build_html(
    markdown_text_or_sections: str | Mapping[str, str] | Sequence[str],
    figures: Mapping[str, bytes] | None = None,
    *,
    title: str | None = None,
) -> str:
    """One self-contained HTML page: inline CSS, every figure as a base64 ``data:`` URI.

    Accepts the markdown text, a mapping section title → markdown (each under an ``<h2>``), or
    a sequence of markdown chunks. Images in the markdown whose alt text or file stem names a
    figure are embedded in place; figures not referenced are appended under "Figures". No
    scripts, stylesheets, fonts or images are fetched.
    """
    figures = dict(figures or {})
    if isinstance(markdown_text_or_sections, str):
        text = markdown_text_or_sections
    elif isinstance(markdown_text_or_sections, Mapping):
        text = "\n\n".join(f"## {k}\n\n{v}" for k, v in markdown_text_or_sections.items())
    else:
        text = "\n\n".join(markdown_text_or_sections)
    used: set[str] = set()
    body = markdown_to_html(text, figures, used)
    remaining = [name for name in figures if name not in used]
    if remaining:
        body += "\n<h2>Figures</h2>\n" + "\n".join(
            f'<figure><img alt="{html.escape(n)}" src="{png_data_uri(figures[n])}">'
            f"<figcaption>{html.escape(n)}</figcaption></figure>"
            for n in remaining
        )
    if title is None:
        match = re.search(r"^#\s+(.+)$", text, flags=re.MULTILINE)
        title = match.group(1).strip() if match else "LLM energy report"
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        f"{body}\n</body>\n</html>\n"
    )
