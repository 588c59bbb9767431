"""Statistics over the per-request records: pure functions, no files, hardware, DVC or Hydra
(docs/architecture.md; what each number estimates: docs/statistics.md)."""

# No eager imports: each stage imports only the modules it runs, and DVC lists exactly those
# as its dependencies (tests/pipeline/test_dvc_yaml.py checks this), so a figure edit re-runs only `plots`.
