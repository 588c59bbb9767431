"""The analysis functions bound to the study's settings from conf/, once for every test."""

from __future__ import annotations

from functools import partial

from helpers import PARAMS
from llm_energy.analysis.headline import headline_metrics as headline_metrics_
from llm_energy.analysis.regression import energy_ols as energy_ols_
from llm_energy.analysis.repetition import repetition_effect as repetition_effect_
from llm_energy.analysis.significance import frequency_effect as frequency_effect_
from llm_energy.analysis.significance import pairwise_vs_default as pairwise_vs_default_
from llm_energy.analysis.significance import spearman_lengths as spearman_lengths_
from llm_energy.analysis.summary import summarize as summarize_
from llm_energy.analysis.tradeoff import recommend_cap as recommend_cap_
from llm_energy.report.compare import compare_experiments as compare_experiments_

# The study's analysis settings from conf/ (their only home), bound once for every test; a
# test's own keywords override them.
AGGREGATE, STATS = PARAMS["aggregate"], PARAMS["stats"]
summarize = partial(summarize_, ci_level=AGGREGATE["ci_level"])
headline_metrics = partial(headline_metrics_, ci_level=AGGREGATE["ci_level"])
recommend_cap = partial(
    recommend_cap_,
    latency_budget_pct=STATS["latency_budget_pct"],
    alpha=STATS["alpha"],
    ci_level=AGGREGATE["ci_level"],
    min_samples=STATS["min_samples"],
)
energy_ols = partial(energy_ols_, ci_level=AGGREGATE["ci_level"])
frequency_effect = partial(
    frequency_effect_, alpha=STATS["alpha"], min_samples=STATS["min_samples"]
)
pairwise_vs_default = partial(
    pairwise_vs_default_,
    alpha=STATS["alpha"],
    min_samples=STATS["min_samples"],
    ci_level=AGGREGATE["ci_level"],
)
spearman_lengths = partial(spearman_lengths_, min_samples=STATS["min_samples"])
repetition_effect = partial(repetition_effect_, alpha=STATS["alpha"])
compare_experiments = partial(compare_experiments_, latency_budget_pct=STATS["latency_budget_pct"])
