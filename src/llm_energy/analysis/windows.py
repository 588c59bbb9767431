"""One row per measurement window, and one per item (docs/statistics.md, "The unit is the
item"). Inside a window J/token is Σ energy / Σ tokens (as zeus and optimum-benchmark report
it); other metrics are the mean over its requests. Records without a ``window_id`` are one
window each."""

from __future__ import annotations

import numpy as np
import pandas as pd

from llm_energy.analysis.records import (
    CONFIG_KEYS,
    FREQ_LEVEL_COL,
    METRICS,
    cluster_ids,
    is_missing,
    key_str,
    numeric_column,
    prepare_requests,
    valid_mask,
)

#: window identity column of the window table (run_id:window_id, or a per-request singleton)
WINDOW_KEY_COL = "window_key"
#: the GPU and the items a window ran (gpu_uuid + task + sorted item ids): the same block at
#: every clock is a pairing, and a GPU's constant offset stays inside its blocks
BLOCK_COL = "block"
#: ratio metrics: name → (numerator, denominator) request columns summed per window
RATIO_METRICS: dict[str, tuple[str, str]] = {
    "j_per_token": ("energy_j", "output_tokens"),
    "dynamic_j_per_token": ("dynamic_energy_j", "output_tokens"),
    # where the joules and seconds go: Σ decode / Σ total over the items (infer.phases)
    "decode_share_energy": ("decode_energy_j", "energy_j"),
    "decode_share_time": ("decode_time_s", "latency_s"),
}
#: descriptive columns carried from a window's first request
_CARRIED: tuple[str, ...] = tuple(
    "run_id window_id rep energy_source gpu_uuid model_params_m freq_requested_mhz".split()
)


def window_keys(frame: pd.DataFrame) -> pd.Series:
    """Window identity per request (no window id: its own window). The configuration keys are
    part of it, so runs that reuse ids never merge windows across configurations."""
    ids = cluster_ids(frame)
    if ids is None:
        ids = pd.Series(None, index=frame.index, dtype="object")
    fallback = pd.Series([f"request:{i}" for i in frame.index], index=frame.index, dtype="object")
    window = ids.where(ids.notna(), fallback).tolist()
    config = frame[list(CONFIG_KEYS)].itertuples(index=False)
    keys = [f"{w}|{key_str(tuple(c))}" for w, c in zip(window, config, strict=True)]
    return pd.Series(keys, index=frame.index, dtype="object")


def _block_keys(frame: pd.DataFrame, keys: pd.Series) -> pd.Series:
    """gpu_uuid:task|item ids per window; NaN when the window's records carry no item ids.

    The GPU is part of the block: windows of two GPUs are two blocks, so a constant difference
    between the GPUs is blocked out instead of being read as a clock effect."""
    if frame["item_id"].isna().all():
        return pd.Series(np.nan, index=pd.Index(keys.unique()), dtype="object")
    items = pd.DataFrame(
        {
            "key": keys.to_numpy(),
            "item": [
                None if is_missing(i) else f"{key_str(t)}|{i}"
                for t, i in zip(frame["task"].tolist(), frame["item_id"].tolist(), strict=True)
            ],
        }
    ).dropna(subset=["item"])
    joined = items.sort_values("item", kind="stable").groupby("key", sort=False)["item"]
    items_of = joined.agg(",".join)
    gpu_of = pd.Series(frame["gpu_uuid"].tolist(), index=keys.to_numpy()).groupby(level=0).first()
    blocks = [f"{key_str(gpu_of.get(k))}:{v}" for k, v in items_of.items()]
    return pd.Series(blocks, index=items_of.index, dtype="object")


def window_table(
    requests: pd.DataFrame, *, prepared: bool = False, valid_only: bool = True
) -> pd.DataFrame:
    """One row per window of the (valid) requests: keys and the first request's descriptive
    columns, ``*_sum`` (one execution of the batch), window means of :data:`METRICS`, and the
    ratio metrics as Σ/Σ (sums kept as ``<ratio>_num`` / ``<ratio>_den``)."""
    df = requests if prepared else prepare_requests(requests)
    if valid_only:
        df = df[valid_mask(df).to_numpy()]
    if df.empty:
        sums = [f"{n}_sum" for n in ("energy_j", "input_tokens", "output_tokens")]
        ratios = [f"{r}_{p}" for r in RATIO_METRICS for p in ("num", "den")]
        cols = [*CONFIG_KEYS, FREQ_LEVEL_COL, *_CARRIED, WINDOW_KEY_COL, BLOCK_COL]
        cols += ["n_requests", *sums, "input_tokens", "output_tokens", *METRICS, *ratios]
        return pd.DataFrame(columns=list(dict.fromkeys(cols)))
    keys = window_keys(df)
    num_cols = {c: numeric_column(df, c) for c in ("input_tokens", "output_tokens")}
    work = pd.DataFrame({WINDOW_KEY_COL: keys}, index=df.index)
    for metric in METRICS:
        work[metric] = df[metric]
    for name, series in num_cols.items():
        work[name] = series
    for name, (num, den) in RATIO_METRICS.items():
        n, d = numeric_column(df, num), numeric_column(df, den)
        use = n.notna() & d.notna() & (d > 0)
        work[f"_{name}_num"] = n.where(use)
        work[f"_{name}_den"] = d.where(use)
    grouped = work.groupby(WINDOW_KEY_COL, sort=False)
    means = grouped.mean()
    sums = grouped.sum(min_count=1)
    carried = [*CONFIG_KEYS, FREQ_LEVEL_COL, *_CARRIED]
    first = df[carried].groupby(keys.to_numpy(), sort=False).first()
    out = first.reindex(means.index)
    out[WINDOW_KEY_COL] = means.index
    out[BLOCK_COL] = _block_keys(df, keys).reindex(means.index)
    out["n_requests"] = grouped.size()
    energy = numeric_column(df, "energy_j")
    out["energy_j_sum"] = energy.groupby(keys.to_numpy(), sort=False).sum(min_count=1)
    for name in ("input_tokens", "output_tokens"):
        out[f"{name}_sum"] = sums[name]
        out[name] = means[name]
    for metric in METRICS:
        out[metric] = means[metric]
    for name in RATIO_METRICS:
        out[f"{name}_num"] = sums[f"_{name}_num"]
        out[f"{name}_den"] = sums[f"_{name}_den"]
        out[name] = out[f"{name}_num"] / out[f"{name}_den"].where(out[f"{name}_den"] > 0)
    return out.reset_index(drop=True)


#: the item column of the item table: the window's item block, or the window itself when the
#: records carry no item ids (then windows are the only units there are)
ITEM_COL = "item"


def item_units(windows: pd.DataFrame) -> pd.Series:
    """The independent unit of each window: its item block, else the window itself."""
    block = windows[BLOCK_COL].astype("object")
    return block.where(block.notna(), "window:" + windows[WINDOW_KEY_COL].astype(str))


def item_table(windows: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """One row per ``keys`` × item of a :func:`window_table` over all its windows: sums and
    ratio parts summed (J/token is their ratio), other metrics the mean of its windows."""
    sums = [f"{r}_{p}" for r in RATIO_METRICS for p in ("num", "den")]
    sums += ["energy_j_sum", "input_tokens_sum", "output_tokens_sum"]
    means = [m for m in METRICS if m not in RATIO_METRICS] + ["input_tokens", "output_tokens"]
    if windows.empty:
        cols = [*keys, ITEM_COL, *sums, *means, "n_windows", *RATIO_METRICS]
        return pd.DataFrame(columns=cols, dtype=float)
    work = windows.assign(**{ITEM_COL: item_units(windows)})
    grouped = work.groupby([*keys, ITEM_COL], dropna=False, sort=True)
    out = grouped[sums].sum(min_count=1).join(grouped[means].mean())
    out["n_windows"] = grouped.size()
    for name in RATIO_METRICS:
        den = out[f"{name}_den"]
        out[name] = out[f"{name}_num"] / den.where(den > 0)
    return out.reset_index()
