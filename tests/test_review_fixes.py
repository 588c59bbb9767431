"""Regression tests for numbers that were once wrong (see the commit that added this file)."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from llm_energy.analysis.records import exclusion_flags
from llm_energy.analysis.regression import energy_ols
from llm_energy.analysis.significance import (
    frequency_effect,
    pairwise_vs_default,
    spearman_lengths,
)
from llm_energy.analysis.tradeoff import recommend_cap
from llm_energy.quality import corpus_quality, score_requests

REPO = Path(__file__).resolve().parents[1]


def _batched(levels: dict[float | None, list[float]], batch: int) -> pd.DataFrame:
    rows, window = [], 0
    for freq, window_values in levels.items():
        for value in window_values:
            window += 1
            for _ in range(batch):  # every request of a window shares its reading
                rows.append(
                    {
                        "run_id": "r",
                        "window_id": window,
                        "model": "m",
                        "task": "t",
                        "engine": "eager",
                        "batch_size": batch,
                        "input_tokens_target": None,
                        "output_tokens_target": 8,
                        "freq_requested_mhz": freq,
                        "freq_applied_mhz": freq,
                        "energy_kind": "measured",
                        "status": "ok",
                        "energy_j": value * 8,
                        "output_tokens": 8,
                        "window_trusted": True,
                        "cap_held": True,
                        "latency_s": 1.0,
                    }
                )
    return pd.DataFrame(rows)


def test_pairwise_tests_count_windows_not_requests() -> None:
    df = _batched({None: [1.0, 1.3, 0.9], 1200.0: [1.1, 1.4, 1.2]}, batch=8)
    table = pairwise_vs_default(df, alpha=0.05, min_samples=3)
    row = table[table["freq_mhz"] == 1200.0].iloc[0]
    assert row["n"] == 3 and row["n_baseline"] == 3
    assert row["p_value"] > 0.05  # 3 vs 3 windows: not 24 vs 24 pseudo-replicates


def test_recommendation_needs_windows_not_requests() -> None:
    # one window of 4 requests per clock once gave "saving 25 %, CI [25, 25], saves_energy"
    df = _batched({None: [1.0], 1200.0: [0.75]}, batch=4)
    row = recommend_cap(df, n_boot=200).iloc[0]
    assert not row["saves_energy"] and math.isnan(row["saving_ci_low"])


def test_saving_claim_needs_the_ci_of_the_whole_selection_above_zero() -> None:
    # 5 caps, all alike: the cheapest-looking one is a 3 % "saving" at the point only
    levels = {None: [1.00, 1.05, 0.95, 1.02, 0.98]}
    for j, freq in enumerate((1800.0, 1600.0, 1400.0, 1200.0, 1000.0)):
        levels[freq] = [v * (0.97 + 0.01 * j) for v in levels[None]][::-1]
    row = recommend_cap(_batched(levels, batch=2), n_boot=500).iloc[0]
    assert row["saving_pct"] == pytest.approx(3.0)
    assert not row["saves_energy"] and row["saving_ci_low"] <= 0
    assert row["n_candidates"] == 5 and "not established" in row["note"]


def test_ols_and_spearman_count_windows() -> None:
    df = _batched({None: [1.0, 1.3, 0.9, 1.2], 1200.0: [1.1, 1.4, 1.2, 0.8]}, batch=8)
    df["input_tokens"] = df["window_id"] * 10  # one length per window
    _coef, info = energy_ols(df, predictors=("input_tokens", "freq_applied_mhz"))
    # default-clock rows have no frequency: 32 requests at 1200 MHz in 4 windows
    assert (info["n"], info["n_clusters"]) == (32, 4)
    rho = spearman_lengths(df, variables=("input_tokens",))
    assert (rho["n"] == [8, 8]).all()


def test_unequal_variances_get_welch_anova_not_kruskal() -> None:
    df = _batched({None: [1.0, 1.01, 0.99, 1.0], 1200.0: [0.5, 1.5, 0.7, 1.9]}, batch=1)
    row = frequency_effect(df).iloc[0]
    assert row["test"] == "welch_anova" and "Levene" in row["test_reason"]


def test_power_cap_events_do_not_thin_the_default_baseline() -> None:
    df = _batched({None: [1.0], 1200.0: [1.0]}, batch=1)
    df["clock_event_reasons"] = 0x4  # SW power cap
    throttled = exclusion_flags(df)["throttled"]
    assert not throttled.iloc[0]  # default clocks: the power cap is how the driver runs
    assert throttled.iloc[1]  # under a cap: the cap was not what limited the clock
    df["clock_event_reasons"] = 0x40  # HW thermal: always excluded
    assert exclusion_flags(df)["throttled"].all()


def test_corpus_quality_scores_the_cleaned_answer() -> None:
    df = pd.DataFrame(
        [
            {
                "task": "qa",
                "task_kind": "qa",
                "model": "m",
                "status": "ok",
                "weights": "pretrained",
                "prediction": "Answer: green\n\nContext: x\nAnswer: unanswerable",
                "references": ["green"],
            }
        ]
    )
    scored = score_requests(df)
    assert scored["quality_em"].iloc[0] == 1.0
    seen: list[list[str]] = []

    def compute(
        kind: str, preds: list[str], refs: list[list[str]], extra: dict
    ) -> dict[str, float]:
        seen.append(list(preds))
        return {"n": float(len(preds))}

    corpus_quality(scored, compute)
    assert seen == [["green"]]


def test_aggregate_refuses_records_of_an_unfinished_run(tmp_path: Path) -> None:
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    infer_dir = tmp_path / "data" / "infer"
    infer_dir.mkdir(parents=True)
    row = {
        "run_id": "abc",
        "task": "qa",
        "task_kind": "qa",
        "item_id": "qa-0",
        "status": "ok",
        "prediction": "x",
        "references": [],
        "energy_j": 1.0,
        "latency_s": 0.1,
        "output_tokens": 2,
        "energy_source": "simulated",
    }
    (infer_dir / "requests.jsonl").write_text(json.dumps(row) + "\n")
    env = {**os.environ, "LLM_ENERGY_ROOT": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, str(REPO / "stages" / "aggregate.py")],
        env=env,
        capture_output=True,
        text=True,
    )
    assert (
        proc.returncode == 2 and "did not finish" in proc.stderr and "Traceback" not in proc.stderr
    )
    (infer_dir / "run.json").write_text(json.dumps({"run_id": "other"}))
    proc = subprocess.run(
        [sys.executable, str(REPO / "stages" / "aggregate.py")],
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "does not belong" in proc.stderr
    assert not (tmp_path / "data" / "aggregate").exists()
