"""Regression tests for numbers that were once wrong (see the commit that added this file)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd

from llm_energy.analysis.significance import pairwise_vs_default
from llm_energy.analysis.summary import exclusion_reasons
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


def test_power_cap_events_do_not_thin_the_default_baseline() -> None:
    df = _batched({None: [1.0], 1200.0: [1.0]}, batch=1)
    df["clock_event_reasons"] = 0x4  # SW power cap
    reasons = exclusion_reasons(df)
    assert reasons.iloc[0] == ""  # default clocks: the power cap is how the driver runs
    assert "throttled" in reasons.iloc[1]  # under a cap: the cap was not what limited the clock
    df["clock_event_reasons"] = 0x40  # HW thermal: always excluded
    assert all("throttled" in r for r in exclusion_reasons(df))


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
        "status": "ok",
        "prediction": "x",
        "references": [],
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
