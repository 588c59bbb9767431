"""Statistical analysis layer: pure functions over the per-request records (docs/records.md).

Modules take and return pandas DataFrames, dicts, strings, matplotlib Figures or bytes; they
never read or write files, touch hardware, or import DVC / Hydra. The stage scripts do I/O.

- :mod:`.records`: configuration keys, energy kinds, frequency levels, exclusion reasons
- :mod:`.windows`: one row per measurement window, one row per item (the unit; J/token = Σ/Σ)
- :mod:`.estimators`: small-sample intervals over items (delta method, paired ratios, medians)
- :mod:`.summary`: per-configuration summary (summary.csv)
- :mod:`.headline`: headline metrics (metrics.json), JSON helpers
- :mod:`.designs`: which test and why (RM ANOVA / mixed model / Welch / Kruskal / ANOVA)
- :mod:`.significance`: frequency effect, paired ratios vs default, Spearman per task, over items
- :mod:`.regression`: OLS of window energy with item-clustered errors
- :mod:`.selection`: the family-wise rule for claiming a cap's saving
- :mod:`.study`: every stats table from the records (the stage and the calibration call it)
- :mod:`.tradeoff`: Pareto frontier, recommended cap within a latency budget
- :mod:`.repetition`: first repetition vs the rest (cold start)
- :mod:`.experiments`: ``dvc exp show --json`` → one row per experiment

Figures, sentences, tables and the report built from these numbers live in `llm_energy.report`.
"""

# No eager imports: each stage imports only the modules it runs, and DVC lists exactly those
# as its dependencies (tests/pipeline/test_dvc_yaml.py checks this), so a figure edit re-runs only `plots`.
