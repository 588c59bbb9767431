"""Does the frequency cap change a metric? Omnibus tests, paired ratios against the baseline
clock and length/energy rank correlations, over items of valid requests, within a *stratum*
(every configuration key but the frequency). Estimands: docs/statistics.md.
"""

from __future__ import annotations

import gc
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import scipy  # scipy.stats loads on first use (plots imports this module, runs no test)

from llm_energy.analysis.designs import LevelSample, TestChoice, omnibus
from llm_energy.analysis.estimators import PairedRatio, independent_ratio, paired_ratio
from llm_energy.analysis.records import FREQ_LEVEL_COL, STRATUM_KEYS, freq_label
from llm_energy.analysis.windows import ITEM_COL, RATIO_METRICS, item_table, window_table

FREQUENCY_EFFECT_COLUMNS: list[str] = [
    *STRATUM_KEYS,
    *(
        "metric levels n_levels n_total design n_blocks shapiro_min_p normal levene_p equal_var "
        "test test_reason statistic df_between df_within p_value effect_size effect_size_kind "
        "significant verdict note"
    ).split(),
]

PAIRWISE_COLUMNS: list[str] = [
    *STRATUM_KEYS,
    *(
        "metric freq_mhz label baseline baseline_freq_mhz n n_baseline n_pairs mean mean_baseline "
        "ratio ratio_ci_low ratio_ci_high pct_change test statistic df p_value p_holm significant "
        "note"
    ).split(),
]

SPEARMAN_COLUMNS: list[str] = (
    "scope model task output_tokens_target energy_kind gpu_name variable metric n rho p_value "
    "significant strata_agree note"
).split()


def level_items(requests: pd.DataFrame, windows: pd.DataFrame | None = None) -> pd.DataFrame:
    """Every metric per stratum × frequency level × item: what :func:`metric_items` reads (one
    table for a study's tests, so its windows are pooled once; ``windows``: their table)."""
    windows = window_table(requests) if windows is None else windows
    return item_table(windows, [*STRATUM_KEYS, FREQ_LEVEL_COL])


def metric_items(
    requests: pd.DataFrame, metric: str, items: pd.DataFrame | None = None
) -> pd.DataFrame:
    """One row per stratum × frequency level × item with a finite ``metric``: the keys, the item,
    ``latency_s``, ``num`` / ``den`` (Σ energy and Σ tokens for J/token; the item's mean value
    and 1 otherwise) and ``value``. ``items``: :func:`level_items` of the same requests, when
    already made. Only these columns: every group taken downstream copies what it carries."""
    items = level_items(requests) if items is None else items
    if metric not in items.columns:
        raise KeyError(f"metric {metric!r} is not a column of the requests")
    ratio = metric in RATIO_METRICS
    out = items[[*STRATUM_KEYS, FREQ_LEVEL_COL, ITEM_COL, "latency_s"]].assign(
        num=items[f"{metric}_num"] if ratio else items[metric],
        den=items[f"{metric}_den"] if ratio else 1.0,
        value=pd.to_numeric(items[metric], errors="coerce"),
    )
    return out[np.isfinite(out["value"].to_numpy(dtype=float))]


def _strata(df: pd.DataFrame) -> list[tuple[tuple[Any, ...], pd.DataFrame]]:
    if df.empty:
        return []
    return [
        (key if isinstance(key, tuple) else (key,), group)
        for key, group in df.groupby(list(STRATUM_KEYS), dropna=False, sort=True)
    ]


def _levels(group: pd.DataFrame) -> list[tuple[float, pd.DataFrame]]:
    """Levels with the default group (NaN) first, then by descending frequency."""
    out = [
        (float(level), sub)
        for level, sub in group.groupby(FREQ_LEVEL_COL, dropna=False, sort=False)
    ]
    out.sort(key=lambda lv: (not math.isnan(lv[0]), -np.nan_to_num(lv[0])))
    return out


def _stratum_samples(
    requests: pd.DataFrame, metric: str, min_samples: int, items: pd.DataFrame | None
) -> Iterator[tuple[dict[str, Any], list[tuple[float, pd.DataFrame]], list[str]]]:
    """Per stratum: its row head (stratum keys, metric), the levels with at least
    `min_samples` items (level, item rows) and the ones left out (labelled)."""
    for key, group in _strata(metric_items(requests, metric, items)):
        head: dict[str, Any] = {**dict(zip(STRATUM_KEYS, key, strict=True)), "metric": metric}
        levels = _levels(group)
        kept = [(f, sub) for f, sub in levels if len(sub) >= min_samples]
        dropped = [f"{freq_label(f)} (n={len(sub)})" for f, sub in levels if len(sub) < min_samples]
        yield head, kept, dropped


def _level_sample(level: float, sub: pd.DataFrame) -> LevelSample:
    """Per-item values, on the log scale when all are positive (effects are multiplicative)."""
    values = sub["value"].to_numpy(dtype=float)
    return LevelSample(level, values, sub[ITEM_COL].to_numpy(dtype=object))


def frequency_effect(
    requests: pd.DataFrame,
    *,
    metric: str = "j_per_token",
    alpha: float,
    min_samples: int,
    test: TestChoice = "auto",
    items: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Omnibus test of the frequency level's effect on ``metric`` (log item values when all
    are positive), one row per stratum. Levels with fewer than ``min_samples`` items are left
    out (named in ``note``). Columns: :data:`FREQUENCY_EFFECT_COLUMNS`.
    """
    rows: list[dict[str, Any]] = []
    for row, kept, dropped in _stratum_samples(requests, metric, min_samples, items):
        row["levels"] = ", ".join(freq_label(f) for f, _ in kept)
        notes = [f"left out (n<{min_samples} items): {', '.join(dropped)}"] if dropped else []
        if len(kept) < 2:
            reason = (
                "only one frequency level"
                if len(kept) + len(dropped) < 2
                else f"fewer than 2 frequency levels with ≥{min_samples} items"
            )
            row.update(
                n_levels=len(kept),
                n_total=int(sum(len(sub) for _, sub in kept)),
                test="skipped",
                verdict=f"skipped: {reason}",
                note="; ".join(notes),
            )
            rows.append(row)
            continue
        samples = [_level_sample(f, sub) for f, sub in kept]
        if all((s.values > 0).all() for s in samples):
            samples = [LevelSample(s.level_mhz, np.log(s.values), s.blocks) for s in samples]
            notes.append("on log values")
        res = omnibus(samples, alpha=alpha, test=test)
        res["note"] = "; ".join([*notes, res["note"]] if res["note"] else notes)
        row.update(res)
        rows.append(row)
    return pd.DataFrame(rows).reindex(columns=FREQUENCY_EFFECT_COLUMNS)


PAIRED_TEST = "paired t on items (delta method, log ratio of Σ/Σ)"
UNPAIRED_TEST = "welch_t on the two Σ/Σ ratios (delta method; no item measured at both clocks)"


def paired_on_items(
    sub: pd.DataFrame, base: pd.DataFrame, num: str, den: str | None, *, level: float
) -> PairedRatio:
    """``Σ num / Σ den`` of a level's items over the baseline's, on the items both ran (rows of
    :func:`metric_items`; ``den`` None: a mean of ``num``)."""
    both = _pairs(sub, base, [num] if den is None else [num, den])
    ones = np.ones(len(both[num]))
    a_den, b_den = (ones, ones) if den is None else (both[den], both[f"{den}_b"])
    return paired_ratio(both[num], a_den, both[f"{num}_b"], b_den, level=level)


def _pairs(sub: pd.DataFrame, base: pd.DataFrame, cols: list[str]) -> dict[str, np.ndarray]:
    """``cols`` of the items both ran, in ``sub``'s order, the baseline's suffixed ``_b``: an
    inner merge on the item (unique within a level), without a merge's cost per call."""
    pos = pd.Index(base[ITEM_COL]).get_indexer(sub[ITEM_COL])
    mine = pos >= 0
    out = {c: sub[c].to_numpy(dtype=float)[mine] for c in cols}
    return out | {f"{c}_b": base[c].to_numpy(dtype=float)[pos[mine]] for c in cols}


def _compare(sub: pd.DataFrame, base: pd.DataFrame, ci_level: float) -> dict[str, Any]:
    """The cap vs the baseline on the items both ran (paired); with none in common, the two
    Σ/Σ ratios as independent samples (their variances add)."""
    both = _pairs(sub, base, ["num", "den"])
    n_pairs = len(both["num"])
    out: dict[str, Any] = {"n": len(sub), "n_baseline": len(base), "n_pairs": n_pairs}
    if n_pairs:
        parts = [both[c] for c in ("num", "den", "num_b", "den_b")]
        test, res = PAIRED_TEST, paired_ratio(*parts, level=ci_level)
    else:
        parts = [f[c].to_numpy(dtype=float) for f in (sub, base) for c in ("num", "den")]
        test, res = UNPAIRED_TEST, independent_ratio(*parts, level=ci_level)
    est = res.ratio
    out.update(
        mean=float(parts[0].sum() / parts[1].sum()),
        mean_baseline=float(parts[2].sum() / parts[3].sum()),
        ratio=est.value,
        ratio_ci_low=est.ci_low,
        ratio_ci_high=est.ci_high,
        test=test if est.estimable else "skipped",
        statistic=res.t,
        df=est.df,
        p_value=res.p_two_sided,
        note=est.note,
    )
    return out


def pairwise_vs_default(
    requests: pd.DataFrame,
    *,
    metric: str = "j_per_token",
    alpha: float,
    min_samples: int,
    ci_level: float,
    items: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Each capped frequency vs its stratum's baseline (the default-clock group, else the
    highest frequency) on the items both ran, Holm across the stratum's caps
    (docs/statistics.md, ``pairwise.csv``). Columns: :data:`PAIRWISE_COLUMNS`.
    """
    rows: list[dict[str, Any]] = []
    for head, kept, _dropped in _stratum_samples(requests, metric, min_samples, items):
        if len(kept) < 2:
            rows.append(
                {
                    **head,
                    "test": "skipped",
                    "note": f"skipped: fewer than 2 frequency levels with ≥{min_samples} items",
                }
            )
            continue
        defaults = [lv for lv in kept if math.isnan(lv[0])]
        base_f, base = defaults[0] if defaults else max(kept, key=lambda lv: lv[0])
        baseline = "default" if defaults else f"highest ({freq_label(base_f)})"
        stratum_rows = [
            {
                **head,
                "freq_mhz": f,
                "label": freq_label(f),
                "baseline": baseline,
                "baseline_freq_mhz": base_f,
                **_compare(sub, base, ci_level),
            }
            for f, sub in kept
            if sub is not base
        ]
        for r in stratum_rows:
            r["pct_change"] = 100.0 * (r["ratio"] - 1.0)
        _holm(stratum_rows, alpha)
        rows.extend(stratum_rows)
    return pd.DataFrame(rows).reindex(columns=PAIRWISE_COLUMNS)


def _holm(rows: list[dict[str, Any]], alpha: float) -> None:
    from statsmodels.stats.multitest import multipletests

    pvals = np.array([r.get("p_value", math.nan) for r in rows], dtype=float)
    finite = np.isfinite(pvals)
    adjusted = np.full(len(pvals), np.nan)
    if finite.any():
        # statsmodels' Holm runs a full gc.collect() per call (~25 ms over a heap holding
        # scipy and pandas): frozen, the objects alive now are not traversed again
        gc.freeze()
        try:
            adjusted[finite] = multipletests(pvals[finite], alpha=alpha, method="holm")[1]
        finally:
            gc.unfreeze()
    for r, p_adj in zip(rows, adjusted, strict=True):
        r["p_holm"] = float(p_adj)
        r["significant"] = bool(np.isfinite(p_adj) and p_adj < alpha)


#: strata of the length correlations: tasks differ in input and output length, so a pooled ρ
#: across them mostly measures the tasks (QA: long inputs, short answers)
LENGTH_STRATUM_KEYS: tuple[str, ...] = tuple(
    "model task output_tokens_target energy_kind gpu_name".split()
)


def _spearman_row(
    sub: pd.DataFrame, variable: str, metric: str, min_samples: int
) -> dict[str, Any]:
    out: dict[str, Any] = {"variable": variable, "metric": metric, "rho": math.nan}
    out["p_value"] = math.nan
    x = pd.to_numeric(sub[variable], errors="coerce")
    y = pd.to_numeric(sub[metric], errors="coerce")
    use = x.notna() & y.notna()
    xv, yv = x[use].to_numpy(dtype=float), y[use].to_numpy(dtype=float)
    out["n"] = len(xv)
    if len(xv) < min_samples:
        return {**out, "note": f"skipped: fewer than {min_samples} items"}
    if np.ptp(xv) == 0:
        return {**out, "note": f"skipped: {variable} is constant"}
    if np.ptp(yv) == 0:
        return {**out, "note": f"skipped: {metric} is constant"}
    res = scipy.stats.spearmanr(xv, yv)
    return {**out, "rho": float(res.statistic), "p_value": float(res.pvalue), "note": ""}


def _pooled_row(rows: list[dict[str, Any]], alpha: float) -> dict[str, Any]:
    """Fisher-z meta-analysis of the strata's ρ (weights n − 3); a pooled ρ only when Cochran's
    Q does not reject homogeneity at ``alpha`` (the strata agree)."""
    usable = [r for r in rows if np.isfinite(r["rho"]) and r["n"] > 3 and abs(r["rho"]) < 1]
    out: dict[str, Any] = {"n": int(sum(r["n"] for r in rows)), "rho": math.nan}
    out.update(p_value=math.nan, strata_agree=None)
    if len(usable) < 2:
        return {**out, "note": f"{len(usable)} stratum with a ρ: nothing to pool"}
    z = np.arctanh([r["rho"] for r in usable])
    w = np.array([r["n"] - 3.0 for r in usable])
    pooled = float((w * z).sum() / w.sum())
    q = float((w * (z - pooled) ** 2).sum())
    q_p = float(scipy.stats.chi2.sf(q, len(usable) - 1))
    if q_p < alpha:
        return {
            **out,
            "strata_agree": False,
            "note": f"strata disagree (Cochran's Q p={q_p:.3g}): no pooled statement",
        }
    stat = pooled * math.sqrt(w.sum())
    p_value = float(2.0 * scipy.stats.norm.sf(abs(stat)))
    return {
        **out,
        "rho": math.tanh(pooled),
        "p_value": p_value,
        "significant": p_value < alpha,
        "strata_agree": True,
        "note": f"Fisher-z pool of {len(usable)} strata (Cochran's Q p={q_p:.3g})",
    }


def spearman_lengths(
    requests: pd.DataFrame,
    *,
    metric: str = "energy_j",
    variables: tuple[str, ...] = ("input_tokens", "output_tokens"),
    min_samples: int,
    alpha: float = 0.05,
    windows: pd.DataFrame | None = None,  # window_table(requests), when already made
) -> pd.DataFrame:
    """Spearman ρ of input/output length with ``metric``, one point per item, per stratum of
    :data:`LENGTH_STRATUM_KEYS`, plus a Fisher-z ``pooled`` row per energy kind, GPU model and
    variable (docs/statistics.md, ``spearman.csv``). Columns: :data:`SPEARMAN_COLUMNS`.
    """
    windows = window_table(requests) if windows is None else windows
    if windows.empty:
        return pd.DataFrame(columns=SPEARMAN_COLUMNS)
    items = item_table(windows, list(LENGTH_STRATUM_KEYS))
    rows: list[dict[str, Any]] = []
    for key, sub in items.groupby(list(LENGTH_STRATUM_KEYS), dropna=False, sort=True):
        head = {"scope": "stratum", **dict(zip(LENGTH_STRATUM_KEYS, key, strict=True))}
        for v in variables:
            row = {**head, **_spearman_row(sub, v, metric, min_samples)}
            row["significant"] = bool(np.isfinite(row["p_value"]) and row["p_value"] < alpha)
            rows.append(row)
    pooled: list[dict[str, Any]] = []
    frame = pd.DataFrame(rows)
    for (kind, gpu, var), sub in frame.groupby(
        ["energy_kind", "gpu_name", "variable"], dropna=False, sort=True
    ):
        head = {"scope": "pooled", "energy_kind": kind, "gpu_name": gpu, "variable": var}
        pooled.append({**head, "metric": metric, **_pooled_row(sub.to_dict("records"), alpha)})
    return pd.DataFrame(rows + pooled).reindex(columns=SPEARMAN_COLUMNS)
