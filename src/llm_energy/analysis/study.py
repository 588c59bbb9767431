"""Every stats table of one study. The `stats` stage and benchmarks/stats_calibration.py call
this one function, so the calibration measures the code that writes reports/stats/."""

from __future__ import annotations

from typing import Any

import pandas as pd

from llm_energy.analysis.regression import energy_ols
from llm_energy.analysis.repetition import repetition_effect
from llm_energy.analysis.significance import frequency_effect, pairwise_vs_default, spearman_lengths
from llm_energy.analysis.tradeoff import pareto_frontier, recommend_cap


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
    coef, ols_info = energy_ols(requests, ci_level=ci_level)
    tables = {
        "frequency_effect": frequency_effect(requests, alpha=alpha, min_samples=min_samples),
        "pairwise": pairwise_vs_default(
            requests, alpha=alpha, min_samples=min_samples, ci_level=ci_level
        ),
        "spearman": spearman_lengths(requests, min_samples=min_samples, alpha=alpha),
        "regression": coef,
        "pareto": pareto_frontier(summary),
        "recommendation": recommend_cap(
            requests,
            latency_budget_pct=latency_budget_pct,
            alpha=alpha,
            ci_level=ci_level,
            min_samples=min_samples,
        ),
        "repetition": repetition_effect(requests, alpha=alpha),
    }
    return tables, ols_info
