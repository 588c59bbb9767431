"""Where the joules go: which phase dominates each task's time and energy (summary.csv's decode
shares) and how each phase responds to the clock (reports/stats/phases.csv). Pure."""

from __future__ import annotations

import math

import pandas as pd

from llm_energy.analysis.records import freq_label, is_missing
from llm_energy.records import OTHER_KNOB_KEYS
from llm_energy.report.knobs import knob_of
from llm_energy.report.sentences import fmt_pct, fmt_range

_PHASE_WORDS = {
    "prefill_energy_j": "prefill energy",
    "prefill_time_s": "prefill time",
    "decode_energy_j": "decode energy",
    "decode_time_s": "decode time",
}


def _share(row: pd.Series, name: str) -> str:
    value = 100 * row[f"{name}_mean"]
    lo, hi = row.get(f"{name}_ci_low"), row.get(f"{name}_ci_high")
    if is_missing(lo) or is_missing(hi):
        return f"{fmt_pct(value)} %"
    return f"{fmt_pct(value)} % (CI {fmt_range(100 * lo, 100 * hi)})"


def phase_sentences(summary: pd.DataFrame | None, phases: pd.DataFrame | None) -> list[str]:
    """One sentence per model and task at its reference clock (default, else the highest) on
    the decode shares, and one on the lowest cap's change of each phase's energy and time."""
    if summary is None or "decode_share_energy_mean" not in summary:
        return []
    rows = summary[summary["decode_share_energy_mean"].notna()]
    out = []
    for (model, task), group in rows.groupby(["model", "task"], sort=True):
        ref = group[group["default_clocks"]] if group["default_clocks"].any() else group
        if not group["default_clocks"].any():
            ref = ref[ref["freq_applied_mhz"] == ref["freq_applied_mhz"].max()]
        r = ref.iloc[0]
        where = "default clocks" if r["default_clocks"] else freq_label(r["freq_applied_mhz"])
        lo, hi = r.get("decode_share_energy_ci_low"), r.get("decode_share_energy_ci_high")
        lead = f"{'decode' if r['decode_share_energy_mean'] > 0.5 else 'prefill'} dominates"
        if not is_missing(lo) and lo <= 0.5 <= hi:
            lead = "no phase clearly dominates the energy"
        more = f" (first of {len(ref)} configurations)" if len(ref) > 1 else ""
        out.append(
            f"{task} ({model}, {where}{more}): {lead}. Decode took "
            f"{_share(r, 'decode_share_time')} of the time and "
            f"{_share(r, 'decode_share_energy')} of the energy; prefill (the prompt's forward "
            "pass and first token, measured in its own windows) the rest."
        )
        out += _clock_response(phases, model, task)
    return out


def _clock_response(phases: pd.DataFrame | None, model: str, task: str) -> list[str]:
    """The lowest cap against the default clock, each phase metric with its paired CI."""
    if phases is None or phases.empty or "ratio" not in phases:
        return []
    mine = phases[(phases["model"] == model) & (phases["task"] == task)]
    mine = mine[pd.to_numeric(mine["ratio"], errors="coerce").notna()]
    for key in OTHER_KNOB_KEYS:  # the clock's own stratum: power limit and memory clock as found
        if key in mine:
            mine = mine[mine[key].isna()]
    if mine.empty:
        return []
    lowest = mine["freq_mhz"].min()
    at = mine[mine["freq_mhz"] == lowest]
    parts = []
    for metric, words in _PHASE_WORDS.items():
        hit = at[at["metric"] == metric]
        if hit.empty:
            continue
        h = hit.iloc[0]
        lo, hi = 100 * (h["ratio_ci_low"] - 1), 100 * (h["ratio_ci_high"] - 1)
        ci = "" if math.isnan(lo) else f" (CI {fmt_range(lo, hi, signed=True)})"
        parts.append(f"{words} {fmt_pct(100 * (h['ratio'] - 1), signed=True)} %{ci}")
    baseline = at.iloc[0].get("baseline", "default")
    head = f"At {freq_label(lowest)} against {baseline}, per request on the same items: "
    return [head + "; ".join(parts) + "."]


def phase_clock_sentences(table: pd.DataFrame | None) -> list[str]:
    """The per-phase clock estimate per stratum (analysis/phase_clocks.py), labelled as one."""
    if table is None or table.empty:
        return []
    out = []
    for _, r in table[pd.to_numeric(table["saving_pct"], errors="coerce").notna()].iterrows():
        budget = f"+{fmt_pct(r['latency_budget_pct'])} %"
        knob, setting = knob_of(r)  # the stratum's power limit / memory clock, if set
        where = f"{r['task']}, {r['model']}" + ("" if knob == "default" else f", at {setting}")
        if r["prefill_freq_mhz"] == r["decode_freq_mhz"] or (
            is_missing(r["prefill_freq_mhz"]) and is_missing(r["decode_freq_mhz"])
        ):
            out.append(
                f"Per-phase clocks ({where}): both phases do best at "
                f"{freq_label(r['single_freq_mhz'])} within the latency budget ({budget}), so "
                "switching the clock between prefill and decode would gain nothing here."
            )
            continue
        out.append(
            f"ESTIMATE, per-phase clocks ({where}; no clock is switched "
            f"mid-request): prefill at {freq_label(r['prefill_freq_mhz'])} and decode at "
            f"{freq_label(r['decode_freq_mhz'])} would use {r['pair_energy_j']:.3g} J per request "
            f"within the latency budget ({budget}), {fmt_pct(r['saving_pct'])} % less than the "
            f"best single clock, {freq_label(r['single_freq_mhz'])} "
            f"({r['single_energy_j']:.3g} J; item bootstrap with both picks repeated: "
            f"{fmt_range(r['saving_ci_low'], r['saving_ci_high'])} %)."
        )
    return out
