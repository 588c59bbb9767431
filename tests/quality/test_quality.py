"""quality.csv is keyed like summary.csv: every corpus-quality row joins a configuration."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from analysis_fixtures import as_records, sweep_requests
from analysis_settings import summarize
from llm_energy.analysis.records import CONFIG_KEYS
from llm_energy.quality.scores import corpus_quality, score_requests


def _count(
    kind: str, preds: Sequence[str], refs: Sequence[Sequence[str]], extra: Mapping[str, Any]
) -> dict[str, float]:
    return {"n_preds": float(len(preds))}


def test_every_quality_row_joins_a_summary_row(tmp_path: Path) -> None:
    # Default clocks (null frequency) and two tasks: the keys that are easiest to get wrong.
    requests = sweep_requests((None, 1200.0), n_per_freq=4, tasks=("qa", "generation"))
    requests["weights"] = "pretrained"  # random weights have no quality to score
    scored = score_requests(requests)
    # Through CSV, as the aggregate stage writes them and a reader joins them.
    summarize(scored).to_csv(tmp_path / "summary.csv", index=False)
    corpus_quality(scored, _count).to_csv(tmp_path / "quality.csv", index=False)
    summary = pd.read_csv(tmp_path / "summary.csv")
    quality = pd.read_csv(tmp_path / "quality.csv")

    keys = list(CONFIG_KEYS)
    assert list(quality.columns) == [*keys, "metric", "value", "n"]
    assert len(quality) == len(summary) == 4
    joined = quality.merge(summary[keys], on=keys, how="left", indicator=True)
    assert (joined["_merge"] == "both").all()
    assert (quality["value"] == quality["n"]).all()  # each configuration scored on its own rows


# Numbers that were once wrong: the statistical unit is the window.
def test_corpus_quality_scores_the_cleaned_answer() -> None:
    df = as_records(
        pd.DataFrame(
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
