"""Task loaders: read a task's dataset with `datasets.load_dataset` and prepare sampled items
(pure work: `llm_energy.workload`); its failures become one-line `DatasetError`s."""

from __future__ import annotations

import glob
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from llm_energy.config.settings import TaskConfig
from llm_energy.errors import one_line, shown
from llm_energy.workload.datasets import (
    DatasetError,
    LoadResult,
    TaskSpec,
    missing_columns,
    seeded_sample,
    summarize_problems,
    task_spec,
)
from llm_energy.workload.rows import collect_items

_GLOB_CHARS = set("*?[")
_COMPRESSED = frozenset({".gz", ".bz2", ".xz", ".zst", ".zip", ".lz4", ".parquet", ".arrow"})


def _where(spec: TaskSpec) -> str:
    return f"task '{spec.name}', dataset '{spec.dataset.label}'"


def resolve_data_files(data_files: Any, root: Path) -> Any:
    """Make relative data_files absolute against `root`, keeping str / list / dict shapes."""
    if data_files is None:
        return None
    if isinstance(data_files, str | os.PathLike):
        path = Path(data_files)
        return str(path if path.is_absolute() or "://" in str(data_files) else root / path)
    if isinstance(data_files, Mapping):
        return {str(k): resolve_data_files(v, root) for k, v in data_files.items()}
    return [resolve_data_files(v, root) for v in data_files]


def _flat_files(data_files: Any) -> list[str]:
    flat: list[str] = []
    stack = [data_files]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            flat.append(value)
        elif isinstance(value, Mapping):
            stack.extend(value.values())
        elif value is not None:
            stack.extend(value)
    return flat


def _local_files(data_files: Any) -> list[Path]:
    """The local files behind `data_files` (globs expanded, URLs left out)."""
    found: list[Path] = []
    for path in _flat_files(data_files):
        if "://" not in path:
            names = sorted(glob.glob(path)) if _GLOB_CHARS & set(path) else [path]
            found += [Path(n) for n in names if Path(n).is_file()]
    return found


def _first_bad_utf8(files: list[Path]) -> tuple[Path, int, int] | None:
    """(file, line, byte) of the first byte that is not UTF-8, scanning plain-text files only."""
    for path in files:
        if path.suffix in _COMPRESSED:
            continue
        with path.open("rb") as fh:
            for number, raw in enumerate(fh, 1):
                try:
                    raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    return path, number, raw[exc.start]
    return None


def _not_utf8(spec: TaskSpec, root: Path) -> DatasetError:
    bad = _first_bad_utf8(_local_files(resolve_data_files(spec.dataset.data_files, root)))
    where = f"{shown(bad[0])} line {bad[1]} (byte 0x{bad[2]:02x})" if bad else "a data file"
    return DatasetError(
        f"{_where(spec)}: {where} is not valid UTF-8; re-save the file as UTF-8 "
        "(e.g. `iconv -f latin1 -t utf-8`) or restore it (`git checkout <file>` for a tracked one)"
    )


def _check_files_exist(spec: TaskSpec, data_files: Any, root: Path) -> None:
    for path in _flat_files(data_files):
        if "://" in path:
            continue
        found = glob.glob(path) if _GLOB_CHARS & set(path) else Path(path).exists()
        if not found:
            raise DatasetError(
                f"{_where(spec)}: data file {path} not found; fix `dataset.data_files` "
                f"(relative paths are resolved against {root})"
            )


def _offline() -> bool:
    flags = (os.environ.get(k, "") for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))
    return any(f.strip().upper() in {"1", "ON", "YES", "TRUE"} for f in flags)


def load_rows(
    spec: TaskSpec, *, root: Path, cache_dir: str | os.PathLike[str] | None = None
) -> Any:
    """The task's split as a `datasets.Dataset`; DatasetError with a remedy if it cannot load."""
    import datasets  # heavy import: only when data is actually read

    ds = spec.dataset
    data_files = resolve_data_files(ds.data_files, Path(root))
    _check_files_exist(spec, data_files, Path(root))
    split = ds.split
    if split is None and isinstance(data_files, str | list):
        split = "train"  # local files without a split mapping load as "train"
    if split is None:
        raise DatasetError(f"{_where(spec)}: no split given; set `dataset.split` (e.g. validation)")

    # each only when set (`field`: only the json builder accepts it)
    extra = {"data_files": data_files, "field": ds.field, "revision": ds.revision}
    extra["cache_dir"] = None if cache_dir is None else str(cache_dir)
    kwargs = {"split": split, **{k: v for k, v in extra.items() if v is not None}}
    try:
        loaded = datasets.load_dataset(ds.path, ds.name, **kwargs)
    except Exception as exc:  # the library raises many types; all become one actionable line
        if _caused_by(exc, UnicodeDecodeError):
            raise _not_utf8(spec, Path(root)) from exc
        raise DatasetError(f"{_where(spec)}: {_load_failure(exc, spec)}") from exc
    if not isinstance(loaded, datasets.Dataset):
        raise DatasetError(
            f"{_where(spec)}: split '{split}' did not load as a single table "
            f"({type(loaded).__name__}); set `dataset.split` to one split name"
        )
    return loaded


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    seen: BaseException | None = exc
    for _ in range(10):  # causes chain through the library's wrappers
        if seen is None:
            return False
        if isinstance(seen, kind):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _load_failure(exc: Exception, spec: TaskSpec) -> str:
    message = one_line(f"{type(exc).__name__}: {exc}", 300)
    hub = spec.dataset.data_files is None
    text = str(exc)
    if "split" in text.lower() and "unknown split" in text.lower():
        return f"{message}; set `dataset.split` to one of the listed splits"
    if hub and (isinstance(exc, ConnectionError | FileNotFoundError) or "offline" in text.lower()):
        remedy = (
            "it is not in the local Hugging Face cache and offline mode is on "
            "(HF_HUB_OFFLINE/HF_DATASETS_OFFLINE)"
            if _offline()
            else "the Hub could not be reached or the dataset id/config is wrong"
        )
        return (
            f"cannot load {spec.dataset.path!r} ({message}): {remedy}; run prepare once online "
            f"to cache it, or use the embedded samples (data/samples/{spec.kind}.jsonl)"
        )
    return f"cannot load the data ({message}); check `dataset` in the task config"


def load_task_items(
    task: TaskConfig,
    *,
    n_items: int,
    seed: int,
    root: Path,
    cache_dir: str | os.PathLike[str] | None = None,
) -> LoadResult:
    """Load, validate and sample one task's items (docs/records.md); unusable rows are listed in
    `problems`. DatasetError when the dataset cannot load, lacks a mapped column or a usable row."""
    spec = task_spec(task)
    if isinstance(n_items, bool) or not isinstance(n_items, int) or n_items < 1:
        raise DatasetError(f"{_where(spec)}: n_items must be a positive integer, got {n_items!r}")
    table = load_rows(spec, root=Path(root), cache_dir=cache_dir)

    missing = missing_columns(spec, table.column_names)
    if missing:
        field_name, column = next(iter(missing.items()))
        raise DatasetError(
            f"{_where(spec)}: no row has column '{column}' (mapped from field '{field_name}'); "
            f"columns are {table.column_names}; fix `fields.{field_name}` in the task config"
        )
    notes: list[str] = []
    id_column = spec.fields.get("id")
    if not spec.line_mode and (not id_column or id_column not in table.column_names):
        notes.append("no id column: item ids are content hashes")
    mapped = dict.fromkeys(v for v in spec.fields.values() if v)  # distinct, in field order
    wanted = [c for c in mapped if c in table.column_names]
    try:
        rows = table.select_columns(wanted).to_list()
    except UnicodeDecodeError:  # arrow keeps raw bytes; they fail only when turned into str
        raise _not_utf8(spec, Path(root)) from None

    items, problems, n_rows = collect_items(rows, spec)
    if not items:
        detail = (
            " | ".join(summarize_problems(problems, max_examples=2)[:2]) or "the split is empty"
        )
        raise DatasetError(
            f"{_where(spec)}: no usable rows out of {n_rows} ({detail}); "
            "fix the data or the task's `fields` mapping"
        )
    sample = seeded_sample(items, n_items, seed)
    if len(items) < n_items:
        notes.append(f"asked for {n_items} items, only {len(items)} usable: using all of them")
    records = [item.to_record() for item in sample]
    return LoadResult(spec.name, spec.dataset.label, records, problems, n_rows, len(items), notes)
