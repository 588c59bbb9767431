"""The report's words: numbers formatted for reading, warning banners, findings as sentences.

Every sentence is written from a stats table row (recommendation, frequency effect, pairwise,
Spearman, OLS), so the report's prose carries the same numbers as its tables. Pure."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from llm_energy.analysis.records import STRATUM_KEYS, freq_label, is_missing
from llm_energy.report.figure_style import ESTIMATED_LABEL, SIMULATED_LABEL, UNKNOWN_LABEL

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
    "rm_anova": "repeated-measures ANOVA on items, same items at every clock",
    "friedman": "Friedman, same items at every clock",
    "wilcoxon": "Wilcoxon signed-rank, same items at both clocks",
    "mixedlm": "mixed model with a random intercept per item block, likelihood-ratio test",
}


def _truthy(value: Any) -> bool:
    """Flag from a DataFrame cell, also after a CSV round trip (NaN / "False" are false)."""
    if is_missing(value):
        return False
    if isinstance(value, str):
        return value.strip().lower() in {"true", "1", "yes"}
    return bool(value)


def fmt_num(value: Any, digits: int = 3) -> str:
    """Compact number: ``digits`` significant digits, thousands kept whole; ``n/a`` for NaN."""
    if is_missing(value):
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
    if is_missing(value) or not math.isfinite(float(value)):
        return "n/a"
    return f"{float(value):+.1f}" if signed else f"{float(value):.1f}"


def fmt_range(lo: Any, hi: Any, *, signed: bool = False) -> str:
    """``15.1–21.0`` for two non-negative bounds, ``-3.1 to +4.2`` otherwise."""
    if not signed and float(lo) >= 0 and float(hi) >= 0:
        return f"{fmt_pct(lo)}–{fmt_pct(hi)}"
    return f"{fmt_pct(lo, signed=True)} to {fmt_pct(hi, signed=True)}"


def fmt_p(p: Any) -> str:
    if is_missing(p) or not math.isfinite(float(p)):
        return "p = n/a"
    return "p < 0.001" if float(p) < 0.001 else f"p = {float(p):.3f}"


def energy_banner(kinds: Iterable[Any], note: str | None = None) -> str | None:
    """Markdown blockquote warning when any energy is simulated / estimated / unknown."""
    present = {str(k) for k in kinds if not is_missing(k)}
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
        if not is_missing(ratio)
        else ""
    )
    return (
        f"> **⚠ First repetition differs.** In {block['n_configs_flagged']} of "
        f"{block.get('n_configs_tested')} configurations the first repetition (rep 0) differed "
        f"from the later ones{worst}: a cold start or drift. The numbers above include it; a "
        "longer warm-up, or leaving rep 0 out, would remove it."
    )


def _context(row: Mapping[str, Any], varying: Sequence[str]) -> str:
    """ "on summarization with model X" plus any other stratum key that varies."""
    parts = []
    task, model = row.get("task"), row.get("model")
    if not is_missing(task):
        parts.append(f"on {task}")
    if not is_missing(model):
        parts.append(f"with model {model}")
    names = {
        "batch_size": "batch",
        "input_tokens_target": "input target",
        "output_tokens_target": "output target",
    }
    extra = [
        f"{row.get(k)} energy" if k == "energy_kind" else f"{names.get(k, k)} {fmt_num(row.get(k))}"
        for k in varying
        if k not in ("model", "task")
    ]
    text = " ".join(parts) if parts else "overall"
    return f"{text} ({', '.join(extra)})" if extra else text


def _varying(frame: pd.DataFrame, keys: Sequence[str]) -> list[str]:
    return [k for k in keys if k in frame.columns and frame[k].nunique(dropna=False) > 1]


def _sentences_of(
    write: Callable[[pd.DataFrame], list[str]],
) -> Callable[[pd.DataFrame | None], list[str]]:
    """Sentences from a stats table: none for a table that is missing or empty."""

    @functools.wraps(write)
    def sentences(table: pd.DataFrame | None) -> list[str]:
        return [] if table is None or table.empty else write(table)

    return sentences


@_sentences_of
def recommendation_sentences(recommendations: pd.DataFrame) -> list[str]:
    """One sentence per stratum of :func:`recommend_cap`, its interval simultaneous over every
    cap of every stratum (the cost of picking the best)."""
    varying = _varying(recommendations, STRATUM_KEYS)
    out = []
    for row in recommendations.to_dict("records"):
        ctx = _context(row, varying)
        metric = str(row.get("metric") or "j_per_token")
        phrase = METRIC_PHRASES.get(metric, metric)
        kind = row.get("energy_kind")
        if not is_missing(kind) and str(kind) != "measured" and "energy_kind" not in varying:
            ctx = f"{ctx} ({kind} energy)"
        budget = row.get("latency_budget_pct")
        budget_txt = f"+{fmt_num(budget)} %" if not is_missing(budget) else "the budget"
        baseline = str(row.get("baseline") or "default")
        base_txt = "default clocks" if baseline == "default" else f"the {baseline} frequency"
        level = row.get("ci_level")
        ci_pct = "CI" if is_missing(level) else f"{round(float(level) * 100):d} % simultaneous CI"
        rec = row.get("recommended_freq_mhz")
        if is_missing(rec):
            note = str(row.get("note") or "")
            if "only the baseline" in note:
                out.append(f"Only {base_txt} were measured {ctx}; no cap can be recommended.")
            else:
                out.append(
                    f"No frequency cap kept mean latency within {budget_txt} of {base_txt} {ctx} "
                    "(one-sided 95 % upper bound)."
                )
            continue
        saving = row.get("saving_pct")
        lo, hi = row.get("saving_ci_low"), row.get("saving_ci_high")
        ci_txt = "" if is_missing(lo) or is_missing(hi) else f" ({ci_pct} {fmt_range(lo, hi)} %)"
        lat = fmt_pct(row.get("latency_change_pct"), signed=True)
        if _truthy(row.get("saves_energy")):
            sentence = (
                f"Capping at {freq_label(rec)} saved {fmt_pct(saving)} % {phrase}{ci_txt} "
                f"for {lat} % mean latency {ctx}."
            )
            if not is_missing(lo) and float(lo) <= 0:
                sentence += " The interval includes no saving, so the effect is not established."
        else:
            change = -float(saving) if not is_missing(saving) else math.nan
            ci_change = (
                f" ({ci_pct} {fmt_range(-float(hi), -float(lo), signed=True)} %)" if ci_txt else ""
            )
            # a cheaper point whose interval (after picking the best cap) reaches zero is no saving
            verdict = (
                f"the saving is not established, so {base_txt} remain the recommendation"
                if not is_missing(saving) and float(saving) > 0
                else f"{base_txt} remain the better choice"
            )
            sentence = (
                f"Within a {budget_txt} mean-latency budget the best cap, {freq_label(rec)}, "
                f"changed {phrase} by {fmt_pct(change, signed=True)} %{ci_change} {ctx}; "
                f"{verdict}."
            )
        out.append(sentence)
    return out


@_sentences_of
def frequency_effect_sentences(table: pd.DataFrame) -> list[str]:
    varying = _varying(table, STRATUM_KEYS)
    out = []
    for row in table.to_dict("records"):
        ctx = _context(row, varying)
        metric = str(row.get("metric"))
        test = str(row.get("test"))
        if test == "skipped" or is_missing(row.get("p_value")):
            verdict = str(row.get("verdict") or "skipped")
            reason = verdict.removeprefix("skipped: ").removeprefix("skipped")
            out.append(
                f"The frequency-effect test on {metric} {ctx} was skipped: {reason or 'no data'}."
            )
            continue
        k1, stat, p = fmt_num(row.get("df_between")), float(row["statistic"]), fmt_p(row["p_value"])
        effect, blocks = fmt_num(row.get("effect_size"), 2), fmt_num(row.get("n_blocks"))
        f_test = f"F({k1}, {fmt_num(row.get('df_within'))}) = {stat:.2f}, {p}"
        if test == "rm_anova":
            stat_txt = f"{f_test}, partial η² = {effect}, {blocks} items"
        elif test in ("anova", "welch_anova"):
            stat_txt = f"{f_test}, η² = {effect}"
        elif test in ("friedman", "mixedlm"):
            kendall = f", Kendall's W = {effect}" if test == "friedman" else ""
            stat_txt = f"χ²({k1}) = {stat:.2f}, {p}{kendall}, {blocks} item blocks"
        elif test == "wilcoxon":
            stat_txt = f"W = {stat:.2f}, {p}, {blocks} item blocks"
        else:
            stat_txt = f"H({k1}) = {stat:.2f}, {p}, ε² = {effect}"
        name = TEST_NAMES.get(test, test)
        out.append(
            f"The frequency cap had a significant effect on {metric} {ctx} ({name}, {stat_txt})."
            if _truthy(row.get("significant"))
            else f"No significant effect of the frequency cap on {metric} was found {ctx} ({name}, {stat_txt})."
        )
    return out


@_sentences_of
def pairwise_sentences(table: pd.DataFrame) -> list[str]:
    out = []
    tested = table[table["p_holm"].notna()]
    if tested.empty:
        return []
    varying = _varying(tested, STRATUM_KEYS)
    for _, group in tested.groupby(list(STRATUM_KEYS), dropna=False, sort=True):
        row = group.iloc[0].to_dict()
        ctx = _context(row, varying)
        n_sig = sum(_truthy(v) for v in group["significant"].tolist())
        baseline = str(row.get("baseline") or "default")
        base_txt = "default clocks" if baseline == "default" else f"the {baseline} frequency"
        test = str(row.get("test"))
        out.append(
            f"After Holm correction ({test}), {n_sig} of {len(group)} capped frequencies differ "
            f"significantly from {base_txt} in {row.get('metric')} {ctx}."
        )
    return out


@_sentences_of
def spearman_sentences(table: pd.DataFrame) -> list[str]:
    """One sentence per pooled row: the pooled ρ when the strata (task × output length) agree,
    else the spread of the strata's ρ and no pooled claim."""
    out = []
    for row in table[table["scope"] == "pooled"].to_dict("records"):
        var, metric = row.get("variable"), row.get("metric")
        same = table[
            (table["scope"] == "stratum")
            & (table["variable"] == var)
            & (table["energy_kind"].astype(str) == str(row.get("energy_kind")))
        ]
        rhos = pd.to_numeric(same["rho"], errors="coerce").dropna()
        kind = row.get("energy_kind")
        kind_txt = f" ({kind} energy)" if not is_missing(kind) else ""
        if is_missing(row.get("rho")):
            if len(rhos) >= 2:
                out.append(
                    f"{metric} vs {var}{kind_txt}: within each task and output length ρ ranges "
                    f"{rhos.min():.2f} to {rhos.max():.2f}; {row.get('note')}."
                )
            continue
        rho, p = float(row["rho"]), row.get("p_value")
        trend = "rises" if rho > 0 else "falls"
        direction = trend if _truthy(row.get("significant")) else "shows no clear trend"
        out.append(
            f"Within tasks and output lengths{kind_txt}, {metric} {direction} with {var} "
            f"(pooled Spearman ρ = {rho:.2f}, {fmt_p(p)}, "
            f"{len(rhos)} strata, n = {fmt_num(row.get('n'))} items; the strata agree)."
        )
    return out


@_sentences_of
def regression_sentences(table: pd.DataFrame) -> list[str]:
    out, r2, n = [], table.attrs.get("r2"), table.attrs.get("n")
    cov = str(table.attrs.get("cov_type") or "robust")
    clustered = cov.startswith("cluster")
    errors = "one row per window, item-clustered errors" if clustered else f"{cov} errors"
    for row in table.to_dict("records"):
        term = row["term"]
        if term == "const" or term not in TERM_PHRASES:
            continue
        out.append(
            f"OLS with {errors}: {TERM_PHRASES[term]} changes energy per request by "
            f"{fmt_num(row['coef'])} J (95 % CI {fmt_num(row['ci_low'])} to {fmt_num(row['ci_high'])}, "
            f"{fmt_p(row['p_value'])})."
        )
    if out and r2 is not None and not is_missing(r2):
        out.append(f"The model explains R² = {float(r2):.3f} of the variance (n = {fmt_num(n)}).")
    return out
