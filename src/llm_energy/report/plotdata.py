"""Tables behind the DVC plot definitions in dvc.yaml (pure), so `dvc plots diff` can overlay runs."""

from __future__ import annotations

import pandas as pd


def _label(row: pd.Series) -> str:
    freq = row.get("freq_applied_mhz")
    clock = "default clocks" if pd.isna(freq) else f"{int(freq)} MHz"
    return f"{row['model']} / {row['task']} / b{row['batch_size']} / {clock} [{row.get('energy_kind', '?')}]"


def by_freq(summary: pd.DataFrame) -> pd.DataFrame:
    """J/token and p50 latency per model x task x frequency (blank freq = driver default clocks)."""
    cols = {
        "j_per_token_mean": "j_per_token",
        "latency_p50_s": "latency_p50_s",
        "tokens_per_s_mean": "tokens_per_s",
    }
    out = summary[["model", "task", "energy_kind", "freq_applied_mhz", *cols]].rename(
        columns={**cols, "freq_applied_mhz": "freq_mhz"}
    )
    out = out.sort_values(["model", "task", "freq_mhz"], na_position="first")
    return out.reset_index(drop=True)


def by_config(summary: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame(
        {"config": summary.apply(_label, axis=1), "j_per_token": summary["j_per_token_mean"]}
    )
    return out.reset_index(drop=True)
