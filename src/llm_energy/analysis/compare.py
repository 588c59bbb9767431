"""Compare DVC experiments: parse ``dvc exp show --json`` and rank frequency caps across runs.

Pure: takes the already-parsed JSON (list or dict); running DVC is the caller's business.

DVC 3.x prints a list of commit entries ``{"rev", "name", "data": {...}, "error",
"experiments": [{"name", "executor", "revs": [{"rev", "name", "data": {...}}]}]}`` where
``data`` holds ``"metrics": {"<file>": {"data": {...}}}`` and ``"params": {"<file>": {"data":
{...}}}``. The parser is defensive: it also walks DVC 2.x's dict-of-revisions layout and looks
for ``metrics`` / ``params`` sections recursively.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from llm_energy.analysis.figures import _finish, _new_figure, _no_data
from llm_energy.analysis.summary import _is_missing, flatten_dict, freq_label
from llm_energy.analysis.tradeoff import choose_within_budget, pareto_mask

META_COLUMNS: list[str] = [
    "experiment",
    "rev",
    "parent_rev",
    "kind",
    "status",
    "error",
    "timestamp",
]
DEFAULT_GROUP_COLUMNS: tuple[str, ...] = (
    "config.model",
    "config.task",
    "config.engine",
    "config.batch_size",
    "config.input_tokens_target",
    "config.output_tokens_target",
    "energy.kind",
)
COMPARE_COLUMNS: list[str] = [
    "experiment",
    "rev",
    "freq_mhz",
    "label",
    "is_baseline",
    "energy",
    "latency",
    "saving_pct",
    "latency_change_pct",
    "within_budget",
    "on_frontier",
    "best_within_budget",
    "note",
]


# --- parsing -----------------------------------------------------------------------------------------


def _find_section(node: Any, key: str, depth: int = 0) -> Mapping[str, Any] | None:
    """First dict value under ``key`` found breadth-first (not inside nested experiments)."""
    if depth > 6 or not isinstance(node, Mapping):
        return None
    value = node.get(key)
    if isinstance(value, Mapping):
        return value
    for sub_key, sub in node.items():
        if sub_key in ("experiments", "revs"):
            continue
        if isinstance(sub, Mapping):
            found = _find_section(sub, key, depth + 1)
            if found is not None:
                return found
    return None


def _files_data(section: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """``{"file": {"data": {...}}}`` → ``{"file": {flattened...}}``; errors are skipped."""
    out: dict[str, dict[str, Any]] = {}
    if not section:
        return out
    for file, content in section.items():
        if not isinstance(content, Mapping):
            continue
        if "data" in content and isinstance(content["data"], Mapping):
            data = content["data"]
        elif "error" in content and len(content) <= 2:
            continue
        else:
            data = content
        out[str(file)] = flatten_dict(data)
    return out


def _merge_files(files: Mapping[str, Mapping[str, Any]], taken: set[str]) -> dict[str, Any]:
    """Flatten several files' dicts; a key present in several files (or already taken) gets a
    ``"<file>:"`` prefix."""
    counts: dict[str, int] = {}
    for data in files.values():
        for k in data:
            counts[k] = counts.get(k, 0) + 1
    out: dict[str, Any] = {}
    for file, data in files.items():
        for k, v in data.items():
            name = f"{file}:{k}" if counts[k] > 1 or k in taken else k
            out[name] = v
    return out


def _state_row(
    state: Mapping[str, Any],
    *,
    kind: str,
    parent_rev: str | None,
    range_info: Mapping[str, Any] | None,
) -> dict[str, Any]:
    data = state.get("data") if isinstance(state.get("data"), Mapping) else state
    rev = state.get("rev") or (data.get("rev") if isinstance(data, Mapping) else None)
    name = (
        state.get("name")
        or (range_info or {}).get("name")
        or (data.get("name") if isinstance(data, Mapping) else None)
    )
    if rev == "workspace":
        kind = "workspace"
    error = state.get("error")
    if isinstance(error, Mapping):
        error = error.get("msg") or error.get("type") or str(error)
    executor = (range_info or {}).get("executor")
    status = None
    if isinstance(executor, Mapping):
        status = executor.get("state")
    elif isinstance(data, Mapping) and data.get("status"):
        status = data.get("status")
    if status is None:
        status = "failed" if error else "success"
    params = _files_data(_find_section(data, "params"))
    metrics = _files_data(_find_section(data, "metrics"))
    flat_params = _merge_files(params, set())
    flat_metrics = _merge_files(metrics, set(flat_params))
    short = str(rev)[:7] if rev else None
    row: dict[str, Any] = {
        "experiment": name or (rev if rev == "workspace" else short),
        "rev": rev,
        "parent_rev": parent_rev,
        "kind": kind,
        "status": status,
        "error": error,
        "timestamp": data.get("timestamp") if isinstance(data, Mapping) else None,
    }
    row.update(flat_params)
    row.update(flat_metrics)
    return row


def _iter_states(node: Any, parent_rev: str | None = None) -> Iterator[dict[str, Any]]:
    if isinstance(node, list):
        for item in node:
            yield from _iter_states(item, parent_rev)
        return
    if not isinstance(node, Mapping):
        return
    if isinstance(node.get("revs"), list):  # an experiment range (DVC 3)
        for state in node["revs"]:
            if isinstance(state, Mapping):
                yield _state_row(state, kind="experiment", parent_rev=parent_rev, range_info=node)
        return
    if "rev" in node or "data" in node:  # a commit / workspace / experiment state
        kind = "experiment" if parent_rev is not None else "baseline"
        yield _state_row(node, kind=kind, parent_rev=parent_rev, range_info=None)
        rev = node.get("rev") or (node.get("data") or {}).get("rev")
        for sub in node.get("experiments") or []:
            yield from _iter_states(sub, parent_rev=str(rev) if rev else "?")
        return
    # DVC 2.x: {"workspace": {"baseline": {"data": ...}}, "<sha>": {"baseline": ..., "<exp>": ...}}
    for rev, entry in node.items():
        if not isinstance(entry, Mapping):
            continue
        if "baseline" in entry:
            base = dict(entry["baseline"]) if isinstance(entry["baseline"], Mapping) else {}
            yield _state_row(
                {"rev": rev, **base, "name": (base.get("data") or {}).get("name")},
                kind="baseline",
                parent_rev=None,
                range_info=None,
            )
            for exp_rev, exp in entry.items():
                if exp_rev == "baseline" or not isinstance(exp, Mapping):
                    continue
                yield _state_row(
                    {"rev": exp_rev, **exp, "name": (exp.get("data") or {}).get("name")},
                    kind="experiment",
                    parent_rev=rev,
                    range_info=None,
                )


def experiments_from_dvc_json(data: list[Any] | dict[str, Any]) -> pd.DataFrame:
    """One row per workspace / commit / experiment of ``dvc exp show --json``.

    Columns: :data:`META_COLUMNS` (``kind`` = workspace | baseline | experiment; ``status``
    from the executor state, e.g. success / queued / failed), then every param and metric
    flattened with dots (``gpu.freq``, ``model.name``, ``energy.j_per_token``). A key present
    in several files is prefixed with its file (``"params.yaml:seed"``).
    """
    rows = list(_iter_states(data))
    frame = pd.DataFrame(rows)
    for col in META_COLUMNS:
        if col not in frame.columns:
            frame[col] = pd.Series(dtype="object")
    rest = [c for c in frame.columns if c not in META_COLUMNS]
    return frame[[*META_COLUMNS, *rest]].reset_index(drop=True)


# --- comparison ------------------------------------------------------------------------------------


def _first_col(frame: pd.DataFrame, candidates: Sequence[str]) -> str | None:
    for c in candidates:
        if c in frame.columns and frame[c].notna().any():
            return c
    return None


def compare_experiments(
    experiments: pd.DataFrame,
    *,
    energy_col: str = "energy.j_per_token",
    latency_col: str = "perf.latency_p50_s",
    freq_cols: Sequence[str] = ("gpu.freq_applied_mhz", "gpu.freq"),
    group_cols: Sequence[str] | None = None,
    latency_budget_pct: float = 5.0,
    drop_duplicates: bool = True,
) -> pd.DataFrame:
    """Energy vs latency per frequency across experiments, with the best cap within budget.

    Each experiment contributes one point (its headline metrics). Experiments are grouped by
    ``group_cols`` (default: those of :data:`DEFAULT_GROUP_COLUMNS` present, i.e. model, task,
    … and energy kind, so kinds never mix). Inside a group the baseline is the experiment at
    default clocks (``gpu.freq_mode == "default"`` or a null frequency), else the highest
    frequency; ``saving_pct`` = 100 × (1 − energy/baseline), ``within_budget`` means p50
    latency ≤ baseline × (1 + budget), ``best_within_budget`` marks the lowest-energy cap
    within budget (the rule of :func:`~llm_energy.analysis.tradeoff.recommend_cap`) and
    ``on_frontier`` the Pareto-optimal points. Experiments that ran several frequencies
    (``gpu.freq_mode == "mixed"``), or lack the energy / latency metric, are left out.
    Identical rows (the workspace repeating an experiment) are kept once.

    Columns: the group columns, then :data:`COMPARE_COLUMNS`.
    """
    frame = experiments.copy()
    if frame.empty or energy_col not in frame.columns or latency_col not in frame.columns:
        return pd.DataFrame(columns=[*(group_cols or []), *COMPARE_COLUMNS])
    for col in META_COLUMNS:
        if col not in frame.columns:
            frame[col] = None
    cols = [c for c in (group_cols or DEFAULT_GROUP_COLUMNS) if c in frame.columns]
    freq_col = _first_col(frame, freq_cols)
    frame["energy"] = pd.to_numeric(frame[energy_col], errors="coerce")
    frame["latency"] = pd.to_numeric(frame[latency_col], errors="coerce")
    frame = frame[frame["energy"].notna() & frame["latency"].notna()]
    if "gpu.freq_mode" in frame.columns:
        frame = frame[frame["gpu.freq_mode"].astype("object").fillna("") != "mixed"]
    if drop_duplicates and not frame.empty:
        value_cols = [c for c in frame.columns if c not in META_COLUMNS]
        order = frame["kind"].map({"experiment": 0, "baseline": 1, "workspace": 2}).fillna(3)
        frame = frame.assign(_order=order.to_numpy()).sort_values("_order", kind="stable")
        key = pd.Series(
            [repr(t) for t in frame[value_cols].itertuples(index=False, name=None)],
            index=frame.index,
        )
        frame = frame[~key.duplicated().to_numpy()].drop(columns="_order")
    if frame.empty:
        return pd.DataFrame(columns=[*cols, *COMPARE_COLUMNS])
    frame["freq_mhz"] = pd.to_numeric(frame[freq_col], errors="coerce") if freq_col else np.nan
    default = frame["freq_mhz"].isna()
    if "gpu.freq_mode" in frame.columns:
        mode = frame["gpu.freq_mode"].astype("object")
        default = (mode == "default") | (mode.isna() & default)
    frame["_default"] = default.to_numpy()
    frame["label"] = [
        "default" if d else freq_label(f)
        for d, f in zip(frame["_default"], frame["freq_mhz"], strict=True)
    ]
    out_rows: list[pd.DataFrame] = []
    grouped = frame.groupby(cols, dropna=False, sort=True) if cols else [((), frame)]
    for _, group in grouped:
        g = group.reset_index(drop=True).copy()
        if g["_default"].any():
            b = int(np.flatnonzero(g["_default"].to_numpy())[0])
        elif g["freq_mhz"].notna().any():
            b = int(g["freq_mhz"].idxmax())
        else:
            b = 0
        e = g["energy"].to_numpy(dtype=float)
        lat = g["latency"].to_numpy(dtype=float)
        best, within = choose_within_budget(e, lat, b, latency_budget_pct)
        g["is_baseline"] = [i == b for i in range(len(g))]
        with np.errstate(divide="ignore", invalid="ignore"):
            g["saving_pct"] = 100.0 * (1.0 - e / e[b]) if e[b] != 0 else math.nan
            g["latency_change_pct"] = 100.0 * (lat / lat[b] - 1.0) if lat[b] > 0 else math.nan
        g["within_budget"] = [i in within for i in range(len(g))]
        g["on_frontier"] = pareto_mask(lat, e)
        g["best_within_budget"] = [
            best is not None and i == best and e[i] < e[b] for i in range(len(g))
        ]
        notes = []
        for i in range(len(g)):
            if i == b:
                notes.append("baseline")
            elif best is not None and i == best:
                notes.append(
                    "best within budget" if e[i] < e[b] else "best within budget, but no saving"
                )
            elif i in within:
                notes.append("within budget")
            else:
                notes.append(f"over the +{latency_budget_pct:g} % latency budget")
        g["note"] = notes
        out_rows.append(g)
    result = pd.concat(out_rows, ignore_index=True)
    result = result.sort_values(
        [*cols, "is_baseline", "freq_mhz"],
        ascending=[True] * len(cols) + [False, False],
        kind="stable",
        na_position="first",
    )
    return result[[*cols, *COMPARE_COLUMNS]].reset_index(drop=True)


def comparison_headline(comparison: pd.DataFrame) -> dict[str, Any]:
    """The best within-budget saving across experiments, JSON-ready (null when none)."""
    best = (
        comparison[comparison["best_within_budget"].astype(bool)]
        if not comparison.empty
        else comparison
    )
    if best.empty:
        return {
            "best_experiment": None,
            "best_saving_pct": None,
            "freq_mhz": None,
            "latency_change_pct": None,
        }
    row = best.loc[best["saving_pct"].idxmax()]
    return {
        "best_experiment": row["experiment"],
        "best_saving_pct": float(row["saving_pct"]),
        "freq_mhz": None if _is_missing(row["freq_mhz"]) else float(row["freq_mhz"]),
        "latency_change_pct": float(row["latency_change_pct"]),
    }


#: the name the CLI uses
comparison_table = compare_experiments


def comparison_figure(comparison: pd.DataFrame, *, title: str | None = None) -> Figure:
    """Energy vs p50 latency per experiment (output of :func:`compare_experiments`): points
    labelled with their clock, the Pareto frontier joined, the best cap within budget starred,
    a banner when the energy is not measured."""
    title = title or "Experiments: energy vs latency"
    fig, (ax,) = _new_figure()
    kinds = (
        list(comparison["energy.kind"].dropna().unique())
        if "energy.kind" in comparison.columns
        else []
    )
    if (
        comparison is None
        or comparison.empty
        or not {"energy", "latency"} <= set(comparison.columns)
    ):
        _no_data(ax)
        return _finish(fig, title, kinds)
    group_cols = [
        c for c in DEFAULT_GROUP_COLUMNS if c in comparison.columns and c != "energy.kind"
    ]
    groups = (
        comparison.groupby(group_cols, dropna=False, sort=True)
        if group_cols
        else [("all", comparison)]
    )
    for name, sub in groups:
        label = ", ".join(
            str(v) for v in (name if isinstance(name, tuple) else (name,)) if not _is_missing(v)
        )
        pts = ax.scatter(sub["latency"], sub["energy"], alpha=0.6, label=label or "experiments")
        color = pts.get_facecolor()[0] if len(pts.get_facecolor()) else None
        front = sub[sub["on_frontier"].astype(bool)].sort_values("latency")
        ax.plot(front["latency"], front["energy"], color=color, linewidth=1.5)
        best = sub[sub["best_within_budget"].astype(bool)]
        if not best.empty:
            ax.scatter(
                best["latency"],
                best["energy"],
                marker="*",
                s=220,
                color=color,
                edgecolor="black",
                zorder=3,
                label=f"{label} best within budget".strip(),
            )
        for x, y, text in zip(sub["latency"], sub["energy"], sub["label"], strict=True):
            ax.annotate(
                str(text).replace(" MHz", ""),
                (x, y),
                textcoords="offset points",
                xytext=(4, 4),
                fontsize=8,
            )
    ax.set_xlabel("p50 latency (s)")
    ax.set_ylabel("energy (J/token)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _finish(fig, title, kinds)
