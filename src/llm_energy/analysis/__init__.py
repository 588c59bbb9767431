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

# No eager imports: each stage imports only the modules it runs, and DVC lists exactly those
# as its dependencies (tests/test_dvc_yaml.py checks this), so a figure edit re-runs only `plots`.
