"""Statistical analysis layer: pure functions over the per-request records (docs/records.md).

Modules take and return pandas DataFrames, dicts, strings, matplotlib Figures or bytes; they
never read or write files, touch hardware, or import DVC / Hydra. The stage scripts do I/O.

- :mod:`.summary`: exclusion reasons, per-configuration summary (summary.csv), headline metrics
- :mod:`.significance`: frequency effect (ANOVA / Kruskal–Wallis), pairwise vs default, Spearman
- :mod:`.regression`: OLS of energy with HC3 errors
- :mod:`.tradeoff`: Pareto frontier, recommended cap within a latency budget
- :mod:`.figures`: matplotlib Figures, PNG bytes
- :mod:`.report`: markdown findings and a self-contained HTML page
- :mod:`.compare`: ``dvc exp show --json`` → comparison across experiments
"""

from llm_energy.analysis.compare import compare_experiments, experiments_from_dvc_json
from llm_energy.analysis.regression import energy_ols
from llm_energy.analysis.significance import (
    frequency_effect,
    pairwise_vs_default,
    spearman_lengths,
)
from llm_energy.analysis.summary import (
    exclusion_reasons,
    headline_metrics,
    summarize,
)
from llm_energy.analysis.tradeoff import pareto_frontier, recommend_cap, savings_headline

__all__ = [
    "compare_experiments",
    "energy_ols",
    "exclusion_reasons",
    "experiments_from_dvc_json",
    "frequency_effect",
    "headline_metrics",
    "pairwise_vs_default",
    "pareto_frontier",
    "recommend_cap",
    "savings_headline",
    "spearman_lengths",
    "summarize",
]
