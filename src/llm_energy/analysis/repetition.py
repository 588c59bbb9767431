"""Does the first repetition differ from the later ones? A cold start (lazy initialisation, caches, clocks ramping up) makes repetition 0 slower or
costlier than the rest: a real H200 showed it 3× slower. Per configuration and metric, rep-0
windows are compared with windows of rep ≥ 1: the ratio of medians, and a test (Wilcoxon
signed-rank on items measured in both, else Mann–Whitney U). A configuration is flagged when the
ratio is beyond ``ratio_threshold`` either way, or the test rejects at ``alpha`` with a ratio
beyond ``min_ratio``. Flagging changes no number; the report says so.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pandas as pd
import scipy  # scipy.stats loads on first use

from llm_energy.analysis.headline import json_clean
from llm_energy.analysis.records import CONFIG_KEYS, FREQ_LEVEL_COL, freq_label, is_missing
from llm_energy.analysis.windows import BLOCK_COL, window_table

REPETITION_COLUMNS: list[str] = [
    *CONFIG_KEYS,
    *(
        "metric n_rep0 n_rest median_rep0 median_rest ratio test n_pairs p_value flagged note"
    ).split(),
]


def _compare(first: pd.DataFrame, rest: pd.DataFrame, metric: str) -> dict[str, Any]:
    a = first[metric].to_numpy(dtype=float)
    b = rest[metric].to_numpy(dtype=float)
    out: dict[str, Any] = {"n_rep0": len(a), "n_rest": len(b), "test": None, "n_pairs": 0}
    out["median_rep0"], out["median_rest"] = float(np.median(a)), float(np.median(b))
    out["ratio"] = out["median_rep0"] / out["median_rest"] if out["median_rest"] > 0 else math.nan
    out["p_value"] = math.nan
    pairs = (
        pd.DataFrame({"x": first.groupby(BLOCK_COL)[metric].mean()})
        .join(rest.groupby(BLOCK_COL)[metric].mean().rename("y"), how="inner")
        .dropna()
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            if len(pairs) >= 2:
                res = scipy.stats.wilcoxon(pairs["x"], pairs["y"])
                out.update(test="wilcoxon_signed_rank", n_pairs=len(pairs))
            else:
                res = scipy.stats.mannwhitneyu(a, b, alternative="two-sided")
                out["test"] = "mann_whitney_u"
            out["p_value"] = float(res.pvalue)
        except ValueError:  # e.g. every paired difference is zero
            out["test"] = "skipped"
    return out


def repetition_effect(
    requests: pd.DataFrame,
    *,
    metrics: tuple[str, ...] = ("latency_s", "j_per_token"),
    alpha: float,
    ratio_threshold: float = 1.25,
    min_ratio: float = 1.05,
    windows: pd.DataFrame | None = None,  # window_table(requests), when already made
) -> pd.DataFrame:
    """Rep 0 vs rep ≥ 1 per configuration and metric over valid windows (configurations with
    both only; rule in the module docstring). Columns: :data:`REPETITION_COLUMNS`."""
    reps = pd.to_numeric(requests["rep"], errors="coerce")
    if not ((reps == 0).any() and (reps >= 1).any()):  # one repetition: nothing to compare
        return pd.DataFrame(columns=REPETITION_COLUMNS)
    windows = window_table(requests) if windows is None else windows
    if windows.empty:
        return pd.DataFrame(columns=REPETITION_COLUMNS)
    # configurations as in summary.csv: default clocks never merge with a cap at the same clock
    windows = windows.assign(
        rep=pd.to_numeric(windows["rep"], errors="coerce"), freq_applied_mhz=windows[FREQ_LEVEL_COL]
    )
    windows = windows[windows["rep"].notna()]
    rows: list[dict[str, Any]] = []
    for key, group in windows.groupby(list(CONFIG_KEYS), dropna=False, sort=True):
        first, rest = group[group["rep"] == 0], group[group["rep"] >= 1]
        for metric in metrics:
            a = first[np.isfinite(pd.to_numeric(first[metric], errors="coerce"))]
            b = rest[np.isfinite(pd.to_numeric(rest[metric], errors="coerce"))]
            if a.empty or b.empty:
                continue
            row: dict[str, Any] = dict(zip(CONFIG_KEYS, key, strict=True))
            row["metric"] = metric
            row.update(_compare(a, b, metric))
            spread = max(row["ratio"], 1.0 / row["ratio"]) if row["ratio"] > 0 else math.nan
            significant = np.isfinite(row["p_value"]) and row["p_value"] < alpha
            row["flagged"] = bool(
                np.isfinite(spread)
                and (spread >= ratio_threshold or (significant and spread >= min_ratio))
            )
            row["note"] = (
                f"rep 0 is {row['ratio']:.2f}× the later repetitions" if row["flagged"] else ""
            )
            rows.append(row)
    return pd.DataFrame(rows).reindex(columns=REPETITION_COLUMNS)


def _config_text(row: pd.Series) -> str:
    parts = [f"{k} {row[k]}" for k in ("model", "task") if not is_missing(row.get(k))]
    parts.append(freq_label(row.get("freq_applied_mhz")))
    if not is_missing(row.get("batch_size")):
        parts.append(f"batch {row['batch_size']}")
    return ", ".join(parts)


def repetition_headline(table: pd.DataFrame, *, ratio_threshold: float = 1.25) -> dict[str, Any]:
    """The ``repetition`` block of metrics.json: how many configurations were flagged, and the
    largest rep-0 ratio among them (``worst_*``; null when nothing was flagged)."""
    out: dict[str, Any] = {"n_configs_tested": 0, "n_configs_flagged": 0}
    out |= dict.fromkeys(("worst_metric", "worst_ratio", "worst_config"))
    out["ratio_threshold"] = ratio_threshold
    if table is None or table.empty:
        return out
    keys = list(CONFIG_KEYS)
    flagged = table[table["flagged"].fillna(False).astype(bool)]
    out["n_configs_tested"] = int(table.groupby(keys, dropna=False).ngroups)
    if flagged.empty:
        return out
    out["n_configs_flagged"] = int(flagged.groupby(keys, dropna=False).ngroups)
    ratio = pd.to_numeric(flagged["ratio"], errors="coerce")
    spread = np.maximum(ratio, 1.0 / ratio)
    worst = flagged.loc[spread.idxmax()]
    out.update(
        worst_metric=worst["metric"],
        worst_ratio=float(worst["ratio"]),
        worst_config=_config_text(worst),
    )
    return json_clean(out)
