"""Quality of the generated text: per-request and corpus-level scores (pure), keyed as summary.csv
(`CONFIG_KEYS`) so the two files join. Random weights produce noise: quality n/a (NaN)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from llm_energy.analysis.records import CONFIG_KEYS, prepare_requests
from llm_energy.quality.textmetrics import clean_prediction, score_item

ComputeFn = Callable[
    [str, Sequence[str], Sequence[Sequence[str]], Mapping[str, Any]], Mapping[str, float]
]


def score_requests(requests: pd.DataFrame) -> pd.DataFrame:
    """Add per-request `quality_*` columns (NaN where not applicable) and `quality_applicable`."""
    out = requests.copy()
    scores: list[dict[str, float]] = []
    applicable = []
    for row in out.to_dict(orient="records"):
        ok = row.get("status") == "ok" and row.get("weights") != "random"
        applicable.append(ok)
        refs = row.get("references")
        refs = list(refs) if isinstance(refs, list | tuple | np.ndarray) else []
        scores.append(score_item(row["task_kind"], row.get("prediction"), refs) if ok else {})
    out["quality_applicable"] = applicable
    score_df = pd.DataFrame(scores, index=out.index)
    for col in score_df.columns:
        out[col] = score_df[col].astype(float)
    if "ref_nll_sum" in out.columns:
        # Perplexity of random weights is ~vocab size: meaningless, so it is masked like the rest.
        out.loc[~out["quality_applicable"], ["ref_nll_sum", "ref_tokens"]] = np.nan
    return out


def corpus_quality(scored: pd.DataFrame, compute: ComputeFn) -> pd.DataFrame:
    """One row per configuration (as in summary.csv) and metric: its task kind's corpus scores."""
    ok = (
        scored[scored["quality_applicable"].astype(bool)]
        if "quality_applicable" in scored
        else scored.iloc[0:0]
    )
    keys = list(CONFIG_KEYS)
    rows = []
    if ok.empty:
        return pd.DataFrame(columns=[*keys, "metric", "value", "n"])
    for key, group in prepare_requests(ok).groupby(keys, dropna=False, sort=True):
        kind = group["task_kind"].iloc[0]
        preds = [
            clean_prediction(kind, p if isinstance(p, str) else "") for p in group["prediction"]
        ]
        refs = [
            list(r) if isinstance(r, list | tuple | np.ndarray) else [] for r in group["references"]
        ]
        extra = {c: group[c].tolist() for c in ("ref_nll_sum", "ref_tokens") if c in group}
        config = dict(zip(keys, key if isinstance(key, tuple) else (key,), strict=True))
        for metric, value in compute(kind, preds, refs, extra).items():
            rows.append({**config, "metric": metric, "value": value, "n": len(group)})
    return pd.DataFrame(rows)
