"""The `task` section: one typed entry per task, its dataset, field mapping and options by kind.
Each kind has its own classes, so a typo such as `options: {prompt_wrds: 80}` fails here, once."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from llm_energy.config.schema import (
    ConfigError,
    boolean,
    checked,
    checked_by,
    choice,
    field_names,
    integer,
    is_int,
    name_like,
    optional,
    parse_section,
    reworded,
    section,
    text,
)
from llm_energy.config.sections import OUTPUT_MODES

TASK_KINDS = ("generation", "qa", "summarization")
DOC_MARKUPS = ("wikiextractor",)


def column(key: str, value: Any) -> str:
    """A dataset column name."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(key, value, "expected the name of a dataset column")
    return value


def words_or_fraction(key: str, value: Any) -> int | float:
    if isinstance(value, float) and 0 < value < 1:
        return value
    if is_int(value) and value >= 1:
        return int(value)
    raise ConfigError(key, value, "expected a word count (integer >= 1) or a fraction in (0, 1)")


def data_file_paths(key: str, value: Any) -> str | list[str] | dict[str, str | list[str]] | None:
    """What `datasets.load_dataset(data_files=...)` takes: a path, a list, or split -> path(s)."""

    def paths(k: str, v: Any) -> str | list[str]:
        if isinstance(v, list | tuple) and v:
            return [text(f"{k}[{i}]", p) for i, p in enumerate(v)]
        return text(k, v)

    if value is None:
        return None
    if isinstance(value, Mapping) and value:
        return {str(split): paths(f"{key}.{split}", v) for split, v in value.items()}
    expected = "expected null, a path, a list of paths or a mapping split -> path(s)"
    return reworded(paths, expected)(key, value)


@dataclass(frozen=True)
class DatasetConfig:
    """Arguments for `datasets.load_dataset`, plus the label the prepared records carry."""

    path: str = checked(text)  # a hub id, or a builder such as json/text with data_files
    name: str | None = checked(optional(name_like))
    split: str | None = checked(optional(name_like))
    # (RUF009: checked() returns a dataclasses.field, not a shared default)
    data_files: str | list[str] | dict[str, str | list[str]] | None = checked(data_file_paths)  # noqa: RUF009
    field: str | None = checked(optional(text))  # json builder: the key holding the records
    revision: str | None = checked(optional(name_like))
    label: str | None = checked(optional(text))  # null: derived from data_files or path

    def validate(self, key: str) -> None:
        if self.label is not None and ("/" in self.label or "\\" in self.label):
            raise ConfigError(f"{key}.label", self.label, "expected a name without slashes")


# Canonical item fields per kind, mapped to dataset columns. `id: null` = content-hash ids.
@dataclass(frozen=True)
class GenerationFields:
    id: str | None = checked(optional(column))
    text: str = checked(column)


@dataclass(frozen=True)
class QaFields:
    id: str | None = checked(optional(column))
    context: str = checked(column)
    question: str = checked(column)
    answers: str = checked(column)


@dataclass(frozen=True)
class SummarizationFields:
    id: str | None = checked(optional(column))
    document: str = checked(column)
    summary: str = checked(column)


@dataclass(frozen=True)
class GenerationOptions:
    """How passages become (prompt, reference continuation) pairs."""

    prompt_words: int | float = checked(words_or_fraction)  # words, or a fraction of the passage
    reference_words: int | None = checked(optional(integer(1)))  # null: the rest of the passage
    min_words: int = checked(integer(0))  # shortest usable passage
    group_lines: bool = checked(boolean)  # join consecutive lines until min_words
    doc_markup: str | None = checked(optional(choice(DOC_MARKUPS)))  # <doc> markup in the lines


@dataclass(frozen=True)
class QaOptions:
    check_spans: bool = checked(boolean)  # answers must sit in the context (at their offsets)


@dataclass(frozen=True)
class SummarizationOptions:
    pass


FIELDS_BY_KIND: dict[str, type] = {
    "generation": GenerationFields,
    "qa": QaFields,
    "summarization": SummarizationFields,
}
OPTIONS_BY_KIND: dict[str, type] = {
    "generation": GenerationOptions,
    "qa": QaOptions,
    "summarization": SummarizationOptions,
}
_BY_KIND_FIELDS = {kind: section(cls) for kind, cls in FIELDS_BY_KIND.items()}
_BY_KIND_OPTIONS = {kind: section(cls) for kind, cls in OPTIONS_BY_KIND.items()}
TaskFields = GenerationFields | QaFields | SummarizationFields
TaskOptions = GenerationOptions | QaOptions | SummarizationOptions


def required_fields(kind: str) -> tuple[str, ...]:
    """The canonical fields a kind's items need (every mapped field but `id`)."""
    return tuple(f for f in field_names(FIELDS_BY_KIND[kind]) if f != "id")


@dataclass(frozen=True)
class TaskConfig:
    name: str = checked(text)
    kind: str = checked(choice(TASK_KINDS))
    dataset: DatasetConfig = checked(section(DatasetConfig))  # noqa: RUF009
    fields: TaskFields = checked_by("kind", _BY_KIND_FIELDS)  # noqa: RUF009
    options: TaskOptions = checked_by("kind", _BY_KIND_OPTIONS)  # noqa: RUF009
    output_tokens: int = checked(integer(1))
    output_mode: str = checked(choice(OUTPUT_MODES))

    def field_map(self) -> dict[str, str | None]:
        """Canonical field -> dataset column (None: not mapped)."""
        return asdict(self.fields)

    @classmethod
    def parse(cls, key: str, raw: Any) -> TaskConfig:
        return parse_section(cls, key, raw)


def parse_tasks(raw: Any) -> tuple[TaskConfig, ...]:
    if not isinstance(raw, Mapping) or not raw:
        raise ConfigError("task", raw, "expected at least one task (generation, qa, summarization)")
    return tuple(TaskConfig.parse(f"task.{name}", spec) for name, spec in raw.items())
