"""Every stats table of one study. The `stats` stage and benchmarks/stats_calibration.py call
this one function, so the calibration measures the code that writes reports/stats/."""

from __future__ import annotations

from typing import Any

import pandas as pd

from llm_energy.analysis.phase_clocks import phase_clock_estimate
from llm_energy.analysis.records import PHASE_METRICS
from llm_energy.analysis.regression import energy_ols
from llm_energy.analysis.repetition import repetition_effect
from llm_energy.analysis.significance import (
    PAIRWISE_COLUMNS,
    frequency_effect,
    level_items,
    pairwise_vs_default,
    spearman_lengths,
)
from llm_energy.analysis.tradeoff import pareto_frontier, recommend_cap
from llm_energy.analysis.windows import window_table


def stats_tables(
    requests: pd.DataFrame,
    summary: pd.DataFrame,
    *,
    alpha: float,
    min_samples: int,
    latency_budget_pct: float,
    ci_level: float,
) -> tuple[dict[str, pd.DataFrame], dict[str, Any]]:
    """Every table of reports/stats/ (name → frame) and the regression's fit information."""
    windows = window_table(requests)  # made once for every table that reads windows
    coef, ols_info = energy_ols(requests, ci_level=ci_level, windows=windows)
    items = level_items(requests, windows)  # every test's item values, pooled once
    tests = {"alpha": alpha, "min_samples": min_samples, "items": items}
    tables = {
        "frequency_effect": frequency_effect(requests, **tests),
        "pairwise": pairwise_vs_default(requests, ci_level=ci_level, **tests),
        "spearman": spearman_lengths(
            requests, min_samples=min_samples, alpha=alpha, windows=windows
        ),
        "regression": coef,
        "pareto": pareto_frontier(summary),
        "recommendation": recommend_cap(
            requests, latency_budget_pct=latency_budget_pct, ci_level=ci_level, **tests
        ),
        "repetition": repetition_effect(requests, alpha=alpha, windows=windows),
        "phases": phase_response(requests, ci_level=ci_level, **tests),
        "phase_clocks": phase_clock_estimate(
            requests, latency_budget_pct=latency_budget_pct, ci_level=ci_level, items=items
        ),
    }
    return tables, ols_info


def phase_response(
    requests: pd.DataFrame,
    *,
    alpha: float,
    min_samples: int,
    ci_level: float,
    items: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """How each phase's energy and time respond to the clock: every cap vs the default clock on
    the same items, per phase metric (`pairwise_vs_default`; Holm within each metric's
    stratum). Empty without phase records."""
    if "prefill_energy_j" not in requests or requests["prefill_energy_j"].isna().all():
        return pd.DataFrame(columns=PAIRWISE_COLUMNS)
    tables = [
        pairwise_vs_default(
            requests, metric=m, alpha=alpha, min_samples=min_samples, ci_level=ci_level, items=items
        )
        for m in PHASE_METRICS
    ]
    return pd.concat(tables, ignore_index=True)
