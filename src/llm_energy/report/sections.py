"""The report's opening (what was measured, J/token with its CI, the recommended cap or why
none), its run section (CO₂, provenance, settings) and its metrics appendix. Pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from llm_energy.analysis.headline import flatten_dict
from llm_energy.analysis.records import STRATUM_KEYS, freq_label, is_missing
from llm_energy.report.sentences import fmt_num, fmt_pct, fmt_range
from llm_energy.report.tables import pipe_table

# figures whose x axis (or frontier) is the clock: with one clock they show one point each
MULTI_CLOCK_FIGURES = ("energy_vs_freq", "latency_vs_freq", "pareto")


def config_labels(summary: pd.DataFrame) -> pd.Series:
    """``default`` or ``1200 MHz`` per summary row."""
    if "label" in summary.columns:
        return summary["label"].astype(str)
    freq = summary["freq_applied_mhz"]
    default = summary["default_clocks"].astype(bool)
    labels = ["default" if d else freq_label(f) for d, f in zip(default, freq, strict=True)]
    return pd.Series(labels, index=summary.index)


def n_clock_levels(summary: pd.DataFrame | None) -> int:
    if summary is None or summary.empty:
        return 0
    return int(config_labels(summary).nunique())


def single_clock_note(summary: pd.DataFrame | None) -> str | None:
    """The one sentence that stands in for the clock figures and tests of a one-clock run."""
    if n_clock_levels(summary) != 1:
        return None
    label = config_labels(summary).iloc[0]
    clocks = "default clocks" if label == "default" else f"one clock ({label})"
    return (
        f"Only {clocks} were measured, so there is nothing to compare: the frequency figures "
        "(energy and latency vs SM clock, Pareto frontier) and the frequency-effect tests "
        "are omitted."
    )


def _used(summary: pd.DataFrame) -> pd.DataFrame:
    return summary[summary["n"] > 0]


def _measured_sentence(summary: pd.DataFrame, headline: Mapping[str, Any]) -> str:
    counts, energy, gpu = (headline.get(k) or {} for k in ("counts", "energy", "gpu"))
    tasks = sorted({str(t) for t in summary.get("task", pd.Series(dtype=str)).dropna()})
    models = sorted({str(m) for m in summary.get("model", pd.Series(dtype=str)).dropna()})
    clocks = [
        "default clocks" if c == "default" else c for c in dict.fromkeys(config_labels(summary))
    ]
    parts = [
        f"This run measured {fmt_num(counts.get('n_valid'))} valid requests"
        f" ({fmt_num(counts.get('n_windows'))} measurement windows)",
        f"of model {', '.join(models)}" if models else "",
        f"on {', '.join(tasks)}" if tasks else "",
        f"at {', '.join(clocks[:6])}{' …' if len(clocks) > 6 else ''}",
        f"on {gpu['name']}" if gpu.get("name") else "",
    ]
    source, kind = energy.get("source"), energy.get("kind")
    src = f"; energy from {source} ({kind})" if source else ""
    return " ".join(p for p in parts if p) + src + "."


def _recommendation_sentence(
    recommendations: pd.DataFrame | None,
    headline: Mapping[str, Any],
    n_clocks: int,
    clock_note: str | None,
) -> str:
    trade = headline.get("tradeoff") or {}
    budget = trade.get("latency_budget_pct")
    budget_txt = f"+{fmt_num(budget)} %" if not is_missing(budget) else "the latency budget"
    rec = trade.get("recommended_freq_mhz")
    if not is_missing(rec):
        where = " ".join(
            f"{w} {trade[k]}" for k, w in (("task", "on"), ("model", "with model")) if trade.get(k)
        )
        lo, hi = trade.get("best_saving_ci_low"), trade.get("best_saving_ci_high")
        ci = f" (CI {fmt_range(lo, hi)} %)" if not (is_missing(lo) or is_missing(hi)) else ""
        n_ok, n_all = trade.get("n_strata_with_saving"), trade.get("n_strata")
        return (
            f"**Recommended cap: {freq_label(rec)}** {where}: it saves "
            f"{fmt_pct(trade.get('best_saving_pct'))} % energy per token{ci} for "
            f"{fmt_pct(trade.get('latency_change_pct'), signed=True)} % mean latency "
            f"(budget {budget_txt}); {fmt_num(n_ok)} of {fmt_num(n_all)} task/model strata "
            "have an established saving."
        )
    if n_clocks <= 1 and clock_note:
        return f"**No clock can be recommended.** {clock_note}"
    n_all = trade.get("n_strata")
    if n_all is None and recommendations is not None:
        n_all = len(recommendations)
    return (
        f"**No cap can be recommended:** in none of the {fmt_num(n_all)} task/model strata did "
        f"a cap save energy per token with an interval excluding zero within {budget_txt} "
        "p50 latency."
    )


def _opening_rows(summary: pd.DataFrame, recommendations: pd.DataFrame | None) -> pd.DataFrame:
    """Baseline and recommended clock per stratum when a cap was picked; else every row."""
    data = summary.copy().assign(_label=config_labels(summary))  # copy: de-fragments a wide frame
    if recommendations is None or recommendations.empty or len(data) <= 12:
        return data
    keep = set()
    for row in recommendations.to_dict("records"):
        for label in (row.get("baseline"), row.get("recommended_label")):
            if not is_missing(label):
                keep.add((row.get("task"), row.get("model"), str(label)))
    mask = [
        (t, m, lab) in keep
        for t, m, lab in zip(data.get("task"), data.get("model"), data["_label"], strict=True)
    ]
    return data[mask] if any(mask) else data


def opening_table(summary: pd.DataFrame, recommendations: pd.DataFrame | None = None) -> str:
    """Energy per token with CI, p50 latency and n per configuration (Markdown)."""
    if summary is None or summary.empty:
        return ""
    return pipe_table(_config_frame(_opening_rows(_used(summary), recommendations)), fmt_num)


def configurations_table(summary: pd.DataFrame | None) -> str:
    """Every configuration with what a reader needs: the opening's columns, tokens/s and the
    quality scores, with readable headers and units (summary.csv has the rest)."""
    if summary is None or summary.empty:
        return ""
    data = _used(summary).copy().assign(_label=config_labels(summary))
    out = _config_frame(data)
    out["tokens/s"] = data["tokens_per_s_mean"]
    scores = [c for c in data.columns if c.startswith("quality_") and c.endswith("_mean")]
    names = {c: c[8:-5].replace("_", " ") for c in scores}  # quality_exact_match_mean
    names["perplexity"] = "perplexity"
    out["quality (scores 0–1; perplexity ≥ 1)"] = [
        ", ".join(f"{names[c]} {fmt_num(row[c])}" for c in names if not is_missing(row.get(c)))
        for row in data.to_dict("records")
    ]
    return pipe_table(out, fmt_num)


def _config_frame(data: pd.DataFrame) -> pd.DataFrame:
    keys = [
        k
        for k in STRATUM_KEYS
        if (k in ("model", "task") or data[k].nunique(dropna=False) > 1) and k != "energy_kind"
    ]
    names = {
        "input_tokens_target": "input target (tokens)",
        "output_tokens_target": "output target (tokens)",
    }
    out = pd.DataFrame({names.get(k, k.replace("_", " ")): data[k] for k in keys})
    out["clock"] = data["_label"]
    out["requests"] = data["n"]
    out["J/token"] = data["j_per_token_mean"]
    lo, hi = data["j_per_token_ci_low"], data["j_per_token_ci_high"]
    ci = data["ci_level"].dropna()
    ci_name = f"{round(float(ci.iloc[0]) * 100):d} % CI (J/token)" if len(ci) else "CI (J/token)"
    out[ci_name] = [
        "n/a" if is_missing(a) or is_missing(b) else f"{fmt_num(a)}–{fmt_num(b)}"
        for a, b in zip(lo, hi, strict=True)
    ]
    out["p50 latency (s)"] = data["latency_p50_s"]
    return out


def opening_sentences(
    summary: pd.DataFrame | None,
    recommendations: pd.DataFrame | None,
    headline: Mapping[str, Any] | None,
) -> list[str]:
    """What was measured, the energy-per-token range, and the recommendation or its absence."""
    if summary is None or summary.empty:
        return []
    head = headline or {}
    used = _used(summary)
    out = [_measured_sentence(used, head)]
    if used["j_per_token_mean"].notna().any():
        jpt = used.dropna(subset=["j_per_token_mean"])
        low = jpt.loc[jpt["j_per_token_mean"].idxmin()]
        high = jpt.loc[jpt["j_per_token_mean"].idxmax()]
        pooled = head.get("pooled_over_tasks") or {}
        pooled_txt = (
            f" (pooled over tasks: {fmt_num(pooled['j_per_token'])} J/token, CI "
            f"{fmt_num(pooled['j_per_token_ci_low'])}–{fmt_num(pooled['j_per_token_ci_high'])})"
            if pooled
            else ""
        )
        out.append(
            f"Energy per token (Σ energy / Σ tokens per configuration) ranged from "
            f"{fmt_num(low['j_per_token_mean'])} J/token ({low.get('task', '')}) to "
            f"{fmt_num(high['j_per_token_mean'])} J/token ({high.get('task', '')}){pooled_txt}."
        )
    note = single_clock_note(used)
    out.append(_recommendation_sentence(recommendations, head, n_clock_levels(used), note))
    return out


_UNIT_SUFFIXES: Sequence[tuple[str, str]] = (
    ("dynamic_j_per_token", "J/token"),
    ("j_per_token", "J/token"),
    ("tokens_per_s", "tokens/s"),
    ("edp_j_s", "J·s"),
    ("_pct", "%"),
    ("_ci_low", ""),
    ("_mhz", "MHz"),
    ("_w", "W"),
    ("_j", "J"),
    ("_s", "s"),
    ("_c", "°C"),
)


def metric_unit(key: str) -> str:
    """Unit of a flattened metrics.json key (``energy.total_j`` → ``J``); ``""`` if none."""
    leaf = key.rsplit(".", 1)[-1]
    section = key.split(".", 1)[0]
    if section == "counts" or leaf.startswith("n_"):
        return "count"
    if leaf.startswith("quality_"):
        return "score (0–1)"
    for suffix in ("_ci_low", "_ci_high"):
        leaf = leaf.removesuffix(suffix)
    if leaf in ("best_saving", "latency_change"):
        return "%"
    for suffix, unit in _UNIT_SUFFIXES:
        if leaf.endswith(suffix) or leaf == suffix.lstrip("_"):
            return unit
    return ""


def metrics_appendix(headline: Mapping[str, Any] | None) -> str:
    """metrics.json as a (key, value, unit) table."""
    if not headline:
        return ""
    rows = [(k, v, metric_unit(k)) for k, v in flatten_dict(headline).items()]
    frame = pd.DataFrame(rows, columns=["key", "value", "unit"])
    return pipe_table(frame, lambda v: fmt_num(v, 4))


def _kv_table(rows: Sequence[tuple[str, Any]]) -> str:
    shown = [(k, v) for k, v in rows if not is_missing(v) and v != ""]
    if not shown:
        return ""
    return pipe_table(pd.DataFrame(shown, columns=["item", "value"]), lambda v: fmt_num(v, 4))


def co2_table(run: Mapping[str, Any]) -> str:
    em = run.get("emissions") or {}
    if not isinstance(em, Mapping) or not em:
        return ""
    co2 = em.get("co2_kg")
    device = f"device energy (J, {em.get('device_energy_source') or 'meter'})"
    return _kv_table(
        [
            ("CO₂ (g)", None if is_missing(co2) else float(co2) * 1000),
            ("= energy counted (J)", em.get("counted_energy_j")),
            ("energy counted", em.get("counted")),
            ("× carbon intensity (g CO₂/kWh)", em.get("carbon_intensity_g_per_kwh")),
            ("grid region (emissions.country_iso_code)", em.get("country_iso_code")),
            (device, em.get("device_energy_j")),
            ("CPU energy (J)", em.get("cpu_energy_j")),
            ("RAM energy (J)", em.get("ram_energy_j")),
            ("what was counted", em.get("note")),
        ]
    )


def provenance_table(run: Mapping[str, Any]) -> str:
    device = run.get("device") or {}
    libs = run.get("libraries") or {}
    rows: list[tuple[str, Any]] = [
        ("device", device.get("name")),
        ("backend", device.get("backend")),
        ("driver", device.get("driver_version") or device.get("driver")),
        ("CUDA", run.get("cuda_version")),
        ("energy source", run.get("energy_source")),
        ("clock control", run.get("clock_mechanism") or run.get("control")),
        ("host", run.get("host")),
        ("git commit", run.get("git_commit")),
        ("config digest", run.get("config_digest")),
        ("run id", run.get("run_id")),
        ("Python", run.get("python")),
    ]
    rows += [(name, version) for name, version in libs.items()]
    return _kv_table(rows)


def settings_table(run: Mapping[str, Any]) -> str:
    warm = run.get("warmup") or {}
    rules = run.get("window_rules") or {}
    period = run.get("counter_update_period_s")
    no_counter = "counter_update_period_s" in run and (is_missing(period) or float(period) <= 0)

    def counter(value: Any) -> Any:  # rules of a ticking counter; an estimate has none
        return "n/a (no energy counter)" if no_counter else value

    rows: list[tuple[str, Any]] = [
        ("repetitions", run.get("repetitions")),
        ("warm-up stopped by", warm.get("stopped_by")),
        ("warm-up elapsed (s)", warm.get("elapsed_s")),
        ("warm-up steady (every shape)", warm.get("all_steady")),
        ("warm-up steady calls / tolerance", _pair(warm.get("steady_k"), warm.get("tolerance"))),
        ("warm-up limit (s)", warm.get("max_s")),
        ("min window (s)", counter(rules.get("min_window_s"))),
        ("min window (counter periods)", counter(rules.get("min_window_periods"))),
        ("min trusted window (s)", counter(rules.get("min_trusted_s"))),
        ("tick-aligned windows", counter(rules.get("tick_align"))),
        ("cooldown between windows (s)", rules.get("cooldown_s")),
        ("idle settle (s)", rules.get("idle_settle_s")),
        ("idle baseline (s)", rules.get("idle_baseline_s")),
        ("counter update period (s)", counter(run.get("counter_update_period_s"))),
    ]
    return _kv_table(rows)


def _pair(a: Any, b: Any) -> str | None:
    return None if is_missing(a) and is_missing(b) else f"{fmt_num(a)} / {fmt_num(b)}"


def calibration_lines(calibration: Mapping[str, Any] | None) -> list[str]:
    """One line per interval type from benchmarks/stats_calibration.py's results: nominal vs
    achieved coverage in the project's own Monte Carlo at its smallest item count."""
    rows = (calibration or {}).get("rows") or []
    best: dict[str, Mapping[str, Any]] = {}
    for row in rows:
        method = str(row.get("method", ""))
        if "coverage" not in method or row.get("achieved") is None:
            continue
        key = (row.get("n_items") or 0, "null" not in str(row.get("scenario", "")))
        held = best.get(method)
        if held is None or key < (held.get("n_items") or 0, "null" not in str(held["scenario"])):
            best[method] = row
    out = []
    for method, row in best.items():
        what = method.replace("coverage", "").strip(" :") or method
        out.append(
            f"{what} interval — calibrated: {fmt_pct(100 * float(row['nominal']))} % nominal, "
            f"{fmt_pct(100 * float(row['achieved']))} % achieved in the project's own Monte "
            f"Carlo ({row.get('n_items')} items, {row.get('scenario')}, "
            f"{row.get('n')} intervals)."
        )
    if out:
        sweeps = (calibration or {}).get("replicates") or {}
        total = sum(sweeps.values()) if isinstance(sweeps, dict) else sweeps
        out.append(
            f"Monte Carlo of commit {calibration.get('code', 'unknown')} "
            f"({calibration.get('created', 'undated')}, {total} sweeps): rerun "
            "`python benchmarks/stats_calibration.py` after changing the statistics."
        )
    return out
