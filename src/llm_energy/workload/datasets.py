"""Pure dataset logic, part 1: task specs, prepared records, problems and seeded sampling.
The prepared item format is in docs/records.md; `llm_energy.io.loaders` reads the rows."""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any, TypeVar

from llm_energy.config.settings import TaskConfig
from llm_energy.config.tasks import (
    TASK_KINDS,
    GenerationOptions,
    QaOptions,
    SummarizationOptions,
    required_fields,
)
from llm_energy.errors import UserFacingError

T = TypeVar("T")

# Canonical field names a task kind needs, mapped to source columns by the task's `fields`.
REQUIRED_FIELDS: dict[str, tuple[str, ...]] = {kind: required_fields(kind) for kind in TASK_KINDS}


class DatasetError(UserFacingError, ValueError):
    """A task's data cannot be used. The message is one line: task, dataset, problem, remedy."""


class RowError(ValueError):
    """One row cannot be used; `reason` is a short category, `detail` the specifics."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason} ({detail})" if detail else reason)
        self.reason, self.detail = reason, detail


@dataclass(frozen=True)
class RowProblem:
    row: int
    reason: str
    detail: str = ""

    def __str__(self) -> str:
        return f"row {self.row}: {self.reason}" + (f" ({self.detail})" if self.detail else "")


@dataclass(frozen=True)
class PreparedItem:
    task: str
    kind: str
    dataset: str
    item_id: str
    fields: dict[str, str]
    references: list[str]
    source_row: int

    def to_record(self) -> dict[str, Any]:
        """The JSON-lines record of data/prepared/<task>.jsonl (fields and references copied)."""
        return asdict(self)


@dataclass(frozen=True)
class DatasetSpec:
    """Arguments for `datasets.load_dataset`, plus a short label for the prepared records."""

    path: str
    name: str | None
    split: str | None
    data_files: str | list[str] | dict[str, str | list[str]] | None
    field: str | None  # json builder: the key holding the records (SQuAD-style files)
    revision: str | None
    label: str


@dataclass(frozen=True)
class TaskSpec:
    """What loading a task needs: its dataset, field -> column map and its kind's options."""

    name: str
    kind: str
    dataset: DatasetSpec
    fields: dict[str, str | None]
    options: GenerationOptions | QaOptions | SummarizationOptions

    @property
    def generation(self) -> GenerationOptions:
        if not isinstance(self.options, GenerationOptions):
            raise TypeError(f"task {self.name} is a {self.kind} task, not generation")
        return self.options

    @property
    def check_spans(self) -> bool:
        return isinstance(self.options, QaOptions) and self.options.check_spans

    @property
    def line_mode(self) -> bool:
        """Rows are lines of running text that are first assembled into passages."""
        opts = self.options
        return isinstance(opts, GenerationOptions) and (
            opts.group_lines or opts.doc_markup is not None
        )

    @property
    def needed_words(self) -> int:
        """Fewest words a generation passage needs (fixed split, or `min_words`)."""
        opts = self.generation
        fixed = 0
        if isinstance(opts.prompt_words, int) and opts.reference_words is not None:
            fixed = opts.prompt_words + opts.reference_words
        return max(fixed, opts.min_words, 2)


@dataclass
class LoadResult:
    """What a loader produced: the sampled records (JSON-ready) and the rows it skipped, and why."""

    task: str
    dataset: str
    items: list[dict[str, Any]]
    row_problems: list[RowProblem] = field(default_factory=list)
    n_rows: int = 0  # rows read from the dataset split
    n_usable: int = 0  # usable items before sampling
    notes: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        return [str(p) for p in self.row_problems]

    @property
    def n_skipped(self) -> int:
        return len(self.row_problems)


def default_label(spec_path: str, data_files: Any) -> str:
    """A short dataset name without slashes: the hub id's last part, or `<folder>_<stem>`."""
    first: Any = data_files
    while isinstance(first, Mapping | list | tuple) and first:
        first = next(iter(first.values())) if isinstance(first, Mapping) else first[0]
    if isinstance(first, str) and first:
        parts = re.split(r"[\\/]", first)
        stem = parts[-1].split(".")[0] or parts[-1]
        return f"{parts[-2]}_{stem}" if len(parts) > 1 and parts[-2] else stem
    return spec_path.rstrip("/").split("/")[-1]


def task_spec(task: TaskConfig) -> TaskSpec:
    """The loading view of a validated task: dataset label resolved, fields as a mapping."""
    ds = task.dataset  # a config.tasks.DatasetConfig: the same fields, label maybe unset
    values = {f.name: getattr(ds, f.name) for f in fields(DatasetSpec)}
    values["label"] = ds.label or default_label(ds.path, ds.data_files)
    return TaskSpec(task.name, task.kind, DatasetSpec(**values), task.field_map(), task.options)


def missing_columns(spec: TaskSpec, column_names: Iterable[str]) -> dict[str, str]:
    """Required canonical fields whose mapped column the dataset lacks: {field: column}."""
    columns = set(column_names)
    return {
        f: str(spec.fields[f]) for f in REQUIRED_FIELDS[spec.kind] if spec.fields[f] not in columns
    }


def seeded_sample(items: Sequence[T], n: int, seed: int) -> list[T]:
    """`n` items in a seeded order: a prefix of one permutation (a larger `n` extends a smaller)."""
    if n < 1:
        raise ValueError("n must be at least 1")
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)  # Random(int) is stable across Python versions
    return [items[i] for i in order[:n]]


def summarize_problems(problems: Sequence[RowProblem], *, max_examples: int = 3) -> list[str]:
    """One line per kind of problem: count, reason and the first few rows."""
    counts = Counter(p.reason for p in problems)
    lines = []
    for reason, count in counts.most_common():
        examples = [p for p in problems if p.reason == reason][:max_examples]
        shown = "; ".join(f"row {p.row}" + (f" ({p.detail})" if p.detail else "") for p in examples)
        more = ", ..." if count > len(examples) else ""
        lines.append(f"{count} row(s): {reason}: {shown}{more}")
    return lines
