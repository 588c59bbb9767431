"""Parse ``dvc exp show --json`` (DVC 3.x's list of commit entries, defensively 2.x's dict of
revisions) into one row per workspace / commit / experiment with its metrics and params."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from typing import Any

import pandas as pd

from llm_energy.analysis.headline import flatten_dict

META_COLUMNS: list[str] = ("experiment rev parent_rev kind status error timestamp").split()


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
    """One row per workspace / commit / experiment: :data:`META_COLUMNS`, then every param and
    metric flattened with dots; a key present in several files gets its file as prefix
    (``"params.yaml:seed"``)."""
    rows = list(_iter_states(data))
    frame = pd.DataFrame(rows)
    for col in META_COLUMNS:
        if col not in frame.columns:
            frame[col] = pd.Series(dtype="object")
    rest = [c for c in frame.columns if c not in META_COLUMNS]
    return frame[[*META_COLUMNS, *rest]].reset_index(drop=True)


# --- one row per (experiment, configuration, clock) ------------------------------------------------

#: ``by_clock`` field → column of :func:`clock_rows` (the names the headline metrics use)
CLOCK_FIELD_COLUMNS: dict[str, str] = {
    "model": "config.model",
    "task": "config.task",
    "engine": "config.engine",
    "batch_size": "config.batch_size",
    "input_tokens_target": "config.input_tokens_target",
    "output_tokens_target": "config.output_tokens_target",
    "energy_kind": "energy.kind",
    "energy_source": "energy.source",
    "device": "gpu.name",
}
CLOCK_COLUMNS: list[str] = (
    "freq_mhz default_clocks energy energy_ci_low energy_ci_high latency clock_source"
).split()
_BY_CLOCK = re.compile(r"^(?:.*:)?by_clock\.([^.]+)\.(.+)$")


def _headline_clock(row: Mapping[str, Any]) -> dict[str, Any] | None:
    """The experiment's headline point, for metrics files without ``by_clock`` (one clock)."""
    if str(row.get("gpu.freq_mode") or "") == "mixed":
        return None  # several clocks pooled into one number: not a point on any curve
    freq = pd.to_numeric(pd.Series([row.get("gpu.freq_applied_mhz")]), errors="coerce").iloc[0]
    mode = row.get("gpu.freq_mode")
    return {
        "freq_mhz": freq,
        "default_clocks": mode == "default" or (mode is None and pd.isna(freq)),
        "energy": row.get("energy.j_per_token"),
        "energy_ci_low": row.get("energy.j_per_token_ci_low"),
        "energy_ci_high": row.get("energy.j_per_token_ci_high"),
        "latency": row.get("perf.latency_p50_s"),
        "clock_source": "headline",
    }


def clock_rows(experiments: pd.DataFrame) -> pd.DataFrame:
    """One row per (experiment, configuration, clock) from each experiment's ``by_clock``
    metrics, else its headline point when it ran one clock. Columns: :data:`META_COLUMNS`,
    :data:`CLOCK_FIELD_COLUMNS` values, :data:`CLOCK_COLUMNS`."""
    keep = [*META_COLUMNS, *CLOCK_FIELD_COLUMNS.values()]
    out: list[dict[str, Any]] = []
    for row in experiments.to_dict("records"):
        entries: dict[str, dict[str, Any]] = {}
        for col, value in row.items():
            m = _BY_CLOCK.match(str(col))
            if m and not _missing(value):
                entries.setdefault(m.group(1), {})[m.group(2)] = value
        base = {c: row.get(c) for c in keep}
        if not entries:
            point = _headline_clock(row)
            if point is not None:
                out.append({**base, **point})
            continue
        for _, entry in sorted(entries.items()):
            rec = dict(base)
            for field, col in CLOCK_FIELD_COLUMNS.items():
                if field in entry:
                    rec[col] = entry[field]
                elif field not in ("energy_kind", "energy_source", "device"):
                    rec[col] = None  # config fields are the entry's own, not the headline's "mixed"
            freq = entry.get("freq_mhz")
            rec.update(
                freq_mhz=float(freq) if not _missing(freq) else math.nan,
                default_clocks=bool(entry.get("default_clocks", _missing(freq))),
                energy=entry.get("j_per_token"),
                energy_ci_low=entry.get("j_per_token_ci_low"),
                energy_ci_high=entry.get("j_per_token_ci_high"),
                latency=entry.get("latency_p50_s"),
                clock_source="by_clock",
            )
            out.append(rec)
    frame = pd.DataFrame(out, columns=[*keep, *CLOCK_COLUMNS])
    for col in ("freq_mhz", "energy", "energy_ci_low", "energy_ci_high", "latency"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce")
    return frame


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))
