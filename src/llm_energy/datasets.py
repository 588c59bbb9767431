"""Pure dataset logic: task specs, field mapping, row validation, passages and seeded sampling.

Nothing here does I/O; `llm_energy.io.loaders` reads the rows (with `datasets.load_dataset`) and
hands them to these functions. The prepared item format is the one in docs/records.md:
`{"task", "kind", "dataset", "item_id", "fields", "references", "source_row"}`.

Task config shape (conf/task/*.yaml):

    name: qa
    kind: qa                      # generation | qa | summarization
    dataset: {path: json, name: null, split: train, data_files: data/samples/qa.jsonl}
    fields: {id: id, context: context, question: question, answers: answers}

Generation tasks split each passage into a prompt prefix and a reference continuation with
`prompt_words` (int, or a fraction of the passage in (0, 1)) and `reference_words` (int, or null
for "the rest"). Line-based sources (WikiText, WikiExtractor dumps) use `min_words`,
`group_lines` and `doc_markup: wikiextractor`; these may sit at the task top level or in `dataset`.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from llm_energy.errors import UserFacingError

T = TypeVar("T")

KINDS: tuple[str, ...] = ("generation", "qa", "summarization")

# Canonical field names a task kind needs, mapped to source columns by the task's `fields`.
REQUIRED_FIELDS: dict[str, tuple[str, ...]] = {
    "generation": ("text",),
    "qa": ("context", "question", "answers"),
    "summarization": ("document", "summary"),
}
OPTIONAL_FIELDS: tuple[str, ...] = ("id", "title")

DATASET_KEYS: frozenset[str] = frozenset(
    {"path", "name", "split", "data_files", "field", "revision", "label"}
    # documentation-only keys, accepted and ignored
    | {"license", "source", "url", "description"}
)
LINE_OPTIONS: tuple[str, ...] = ("min_words", "group_lines", "doc_markup")
DOC_MARKUPS: tuple[str, ...] = ("wikiextractor",)

DEFAULT_PROMPT_WORDS = 60
DEFAULT_REFERENCE_WORDS = 40


class DatasetError(UserFacingError, ValueError):
    """A task's data cannot be used. The message is one line: task, dataset, problem, remedy."""


class RowError(ValueError):
    """One row cannot be used; `reason` is a short category, `detail` the specifics."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason} ({detail})" if detail else reason)
        self.reason = reason
        self.detail = detail


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
        """The JSON-lines record of data/prepared/<task>.jsonl."""
        return {
            "task": self.task,
            "kind": self.kind,
            "dataset": self.dataset,
            "item_id": self.item_id,
            "fields": dict(self.fields),
            "references": list(self.references),
            "source_row": self.source_row,
        }


@dataclass(frozen=True)
class DatasetSpec:
    """Arguments for `datasets.load_dataset`, plus a short label for the prepared records."""

    path: str
    name: str | None = None
    split: str | None = None
    data_files: str | list[str] | dict[str, str | list[str]] | None = None
    field: str | None = None  # json builder: the key holding the records (SQuAD-style files)
    revision: str | None = None
    label: str = ""


@dataclass(frozen=True)
class TaskSpec:
    name: str
    kind: str
    dataset: DatasetSpec
    fields: dict[str, str | None]
    prompt_words: int | float = DEFAULT_PROMPT_WORDS
    reference_words: int | None = DEFAULT_REFERENCE_WORDS
    min_words: int = 0
    group_lines: bool = False
    doc_markup: str | None = None
    check_spans: bool = True

    @property
    def line_mode(self) -> bool:
        """Rows are lines of running text that are first assembled into passages."""
        return self.kind == "generation" and (self.group_lines or self.doc_markup is not None)

    @property
    def needed_words(self) -> int:
        """Fewest words a generation passage needs (fixed split, or `min_words`)."""
        fixed = 0
        if isinstance(self.prompt_words, int) and self.reference_words is not None:
            fixed = self.prompt_words + self.reference_words
        return max(fixed, self.min_words, 2)


@dataclass
class LoadResult:
    """What a loader produced: the sampled prepared records, the rows it skipped and why.

    `items` are plain dicts in the data/prepared/<task>.jsonl format (JSON-ready);
    `problems` are human-readable lines, one per skipped row ("row 3: field 'text' is empty").
    """

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

    def problem_summary(self, max_examples: int = 3) -> list[str]:
        """One line per kind of problem, with its count and first rows."""
        return summarize_problems(self.row_problems, max_examples=max_examples)


# --------------------------------------------------------------------------------------------
# Task config parsing
# --------------------------------------------------------------------------------------------


def _get(obj: Any, key: str, default: Any = None) -> Any:
    # Works for dicts and OmegaConf DictConfigs alike.
    try:
        return obj.get(key, default)
    except AttributeError:
        return default


def _keys(obj: Any) -> list[str]:
    try:
        return [str(k) for k in obj]
    except TypeError:
        return []


def default_label(spec_path: str, data_files: Any) -> str:
    """A short dataset name for records: the hub id's last part, or `<folder>_<stem>` of a file.

    No slashes, so the label is safe in file names and plot labels downstream.
    """
    first: Any = data_files
    while isinstance(first, Mapping | list | tuple) and first:
        first = next(iter(first.values())) if isinstance(first, Mapping) else first[0]
    if isinstance(first, str) and first:
        parts = re.split(r"[\\/]", first)
        stem = parts[-1].split(".")[0] or parts[-1]
        return f"{parts[-2]}_{stem}" if len(parts) > 1 and parts[-2] else stem
    return spec_path.rstrip("/").split("/")[-1]


def parse_task(task: Mapping[str, Any]) -> TaskSpec:
    """Validate a task config section (dict or DictConfig) into a TaskSpec; DatasetError if bad."""
    name = str(_get(task, "name") or "?")
    where = f"task '{name}'"
    kind = _get(task, "kind")
    if kind not in KINDS:
        raise DatasetError(
            f"{where}: unknown kind {kind!r}; set `kind` to one of {', '.join(KINDS)}"
        )
    ds = _get(task, "dataset")
    if ds is None or not _keys(ds) or not _get(ds, "path"):
        raise DatasetError(
            f"{where}: no dataset path; set `dataset.path` (a hub id like rajpurkar/squad_v2, "
            "or json/text with `dataset.data_files`)"
        )
    unknown = sorted(set(_keys(ds)) - DATASET_KEYS - set(LINE_OPTIONS))
    if unknown:
        raise DatasetError(
            f"{where}: unknown dataset key(s) {unknown}; allowed: "
            f"{', '.join(sorted(DATASET_KEYS | set(LINE_OPTIONS)))}"
        )
    data_files = _plain(_get(ds, "data_files"))
    path = str(_get(ds, "path"))
    dspec = DatasetSpec(
        path=path,
        name=_opt_str(_get(ds, "name")),
        split=_opt_str(_get(ds, "split")),
        data_files=data_files,
        field=_opt_str(_get(ds, "field")),
        revision=_opt_str(_get(ds, "revision")),
        label=str(_get(ds, "label") or default_label(path, data_files)),
    )
    where = f"task '{name}', dataset '{dspec.label}'"

    allowed = REQUIRED_FIELDS[kind] + OPTIONAL_FIELDS
    raw_fields = _get(task, "fields") or {}
    bad = sorted(set(_keys(raw_fields)) - set(allowed))
    if bad:
        raise DatasetError(
            f"{where}: unknown field name(s) {bad} for kind '{kind}'; "
            f"`fields` maps {', '.join(allowed)} to dataset columns"
        )
    fields: dict[str, str | None] = {f: f for f in allowed}
    for key in _keys(raw_fields):
        value = _get(raw_fields, key)
        fields[key] = None if value is None else str(value)
    missing = [f for f in REQUIRED_FIELDS[kind] if not fields.get(f)]
    if missing:
        raise DatasetError(f"{where}: `fields.{missing[0]}` must name a dataset column")

    options = _get(task, "options") or {}

    def opt(key: str, default: Any) -> Any:
        # Options may sit at the task top level, under `options`, or (line options) in `dataset`.
        for source in (task, options, ds):
            value = _get(source, key)
            if value is not None:
                return value
        return default

    prompt_words = opt("prompt_words", DEFAULT_PROMPT_WORDS)
    # An explicit `reference_words: null` means "the rest of the passage".
    reference_words = DEFAULT_REFERENCE_WORDS
    for source in (options, task):
        if "reference_words" in _keys(source):
            reference_words = _get(source, "reference_words")
    min_words = opt("min_words", 0)
    doc_markup = opt("doc_markup", None)
    try:
        prompt_words = _check_prompt_words(prompt_words)
        if reference_words is not None:
            reference_words = _positive_int(reference_words, "reference_words")
        min_words = _positive_int(min_words, "min_words", allow_zero=True)
    except ValueError as exc:
        raise DatasetError(f"{where}: {exc}") from None
    if doc_markup is not None and doc_markup not in DOC_MARKUPS:
        raise DatasetError(
            f"{where}: unknown doc_markup {doc_markup!r}; use {', '.join(DOC_MARKUPS)} or null"
        )
    return TaskSpec(
        name=name,
        kind=kind,
        dataset=dspec,
        fields=fields,
        prompt_words=prompt_words,
        reference_words=reference_words,
        min_words=min_words,
        group_lines=bool(opt("group_lines", False)),
        doc_markup=doc_markup,
        check_spans=bool(opt("check_spans", True)),
    )


def _plain(value: Any) -> Any:
    """DictConfig/ListConfig → plain dict/list (load_dataset wants real containers)."""
    if value is None or isinstance(value, str):
        return value
    if hasattr(value, "items"):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, Iterable):
        return [_plain(v) for v in value]
    return value


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _positive_int(value: Any, key: str, *, allow_zero: bool = False) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < (0 if allow_zero else 1):
        raise ValueError(
            f"`{key}` must be a {'non-negative' if allow_zero else 'positive'} integer"
        )
    return value


def _check_prompt_words(value: Any) -> int | float:
    if isinstance(value, float) and 0 < value < 1:
        return value
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    raise ValueError("`prompt_words` must be a positive integer or a fraction in (0, 1)")


def missing_columns(spec: TaskSpec, column_names: Iterable[str]) -> dict[str, str]:
    """Required canonical fields whose mapped column the dataset lacks: {field: column}."""
    columns = set(column_names)
    return {
        f: str(spec.fields[f]) for f in REQUIRED_FIELDS[spec.kind] if spec.fields[f] not in columns
    }


# --------------------------------------------------------------------------------------------
# Row validation
# --------------------------------------------------------------------------------------------


def stable_id(*parts: str) -> str:
    """A short id that depends only on the content (for datasets without an id column)."""
    return hashlib.sha1("\x1f".join(parts).encode("utf-8")).hexdigest()[:16]


def _text(row: Mapping[str, Any], spec: TaskSpec, name: str) -> str:
    column = str(spec.fields[name])
    if column not in row:
        raise RowError(f"missing field '{name}'", f"column '{column}'")
    value = row[column]
    if value is None:
        raise RowError(f"missing field '{name}'", f"column '{column}' is null")
    if not isinstance(value, str):
        raise RowError(f"field '{name}' is not text", f"got {type(value).__name__}")
    if not value.strip():
        raise RowError(f"field '{name}' is empty")
    return value


def _row_id(row: Mapping[str, Any], spec: TaskSpec, *content: str) -> str:
    column = spec.fields.get("id")
    value = row.get(column) if column else None
    if isinstance(value, bool) or not isinstance(value, str | int) or str(value).strip() == "":
        return stable_id(*content)
    return str(value).strip()


def parse_answers(value: Any) -> tuple[list[str], list[int] | None]:
    """Answer texts (and starts, if given) from a SQuAD dict, a list of strings or one string.

    SQuAD shape: {"text": [...], "answer_start": [...]}; empty lists = unanswerable.
    """
    if isinstance(value, str):
        return ([value] if value.strip() else []), None
    if isinstance(value, Mapping):
        texts = value.get("text")
        starts = value.get("answer_start")
        if texts is None:
            raise RowError("malformed answers", "no 'text' list")
    elif isinstance(value, list | tuple):
        texts, starts = value, None
    else:
        raise RowError("malformed answers", f"got {type(value).__name__}")
    if not isinstance(texts, list | tuple) or not all(isinstance(t, str) for t in texts):
        raise RowError("malformed answers", "answer texts must be a list of strings")
    if starts is not None:
        if not isinstance(starts, list | tuple) or len(starts) != len(texts):
            raise RowError("malformed answers", "answer_start must list one start per answer")
        if not all(isinstance(s, int) and not isinstance(s, bool) for s in starts):
            raise RowError("malformed answers", "answer_start must be integers")
        starts = list(starts)
    if any(not t.strip() for t in texts):
        raise RowError("malformed answers", "an answer text is empty")
    return list(texts), starts


def _unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))


def row_to_item(row: Mapping[str, Any], *, row_index: int, spec: TaskSpec) -> PreparedItem:
    """Validate one dataset row and turn it into a prepared item; RowError if unusable."""
    if spec.kind == "qa":
        context = _text(row, spec, "context")
        question = _text(row, spec, "question")
        if str(spec.fields["answers"]) not in row or row[str(spec.fields["answers"])] is None:
            raise RowError("missing field 'answers'", f"column '{spec.fields['answers']}'")
        texts, starts = parse_answers(row[str(spec.fields["answers"])])
        if spec.check_spans and starts is not None:
            for text, start in zip(texts, starts, strict=True):
                if context[start : start + len(text)] != text:
                    raise RowError("answer span mismatch", f"{text!r} is not at offset {start}")
        elif spec.check_spans:
            # Without offsets, an answer must at least occur in the context to be extractive.
            absent = [t for t in texts if t not in context]
            if absent:
                raise RowError("answer not in context", repr(absent[0]))
        fields = {"context": context, "question": question}
        references = _unique(texts)
        item_id = _row_id(row, spec, context, question)
    elif spec.kind == "summarization":
        document = _text(row, spec, "document")
        summary = _text(row, spec, "summary")
        fields, references = {"document": document}, [summary]
        item_id = _row_id(row, spec, document)
    else:
        text = _text(row, spec, "text")
        prompt, reference = _split_or_raise(text, spec)
        fields, references = {"text": prompt}, [reference]
        item_id = _row_id(row, spec, text)
    return PreparedItem(
        task=spec.name,
        kind=spec.kind,
        dataset=spec.dataset.label,
        item_id=item_id,
        fields=fields,
        references=references,
        source_row=row_index,
    )


def _split_or_raise(text: str, spec: TaskSpec) -> tuple[str, str]:
    n_words = len(text.split())
    if n_words < spec.needed_words:
        raise RowError("passage too short", f"{n_words} words, needs {spec.needed_words}")
    try:
        return split_passage(
            text, prompt_words=spec.prompt_words, reference_words=spec.reference_words
        )
    except ValueError as exc:
        raise RowError("passage too short", str(exc)) from None


# --------------------------------------------------------------------------------------------
# Passages
# --------------------------------------------------------------------------------------------

_WORD = re.compile(r"\S+")


def split_passage(
    text: str,
    *,
    prompt_words: int | float = DEFAULT_PROMPT_WORDS,
    reference_words: int | None = DEFAULT_REFERENCE_WORDS,
) -> tuple[str, str]:
    """Split a passage into (prompt prefix, reference continuation) at a word boundary.

    `prompt_words` is a word count or a fraction in (0, 1) of the passage; `reference_words`
    the continuation's word count (None = the rest). Original spacing inside each part is kept;
    the continuation follows the prompt after whitespace. ValueError if the passage is too short.
    """
    words = list(_WORD.finditer(text))
    if isinstance(prompt_words, float):
        if not 0 < prompt_words < 1:
            raise ValueError("a fractional prompt_words must be in (0, 1)")
        n_prompt = min(max(1, round(len(words) * prompt_words)), len(words) - 1)
    else:
        n_prompt = prompt_words
    if n_prompt < 1:
        raise ValueError("prompt_words must be at least 1")
    n_ref = len(words) - n_prompt if reference_words is None else reference_words
    if n_ref < 1 or len(words) < n_prompt + n_ref:
        raise ValueError(f"{len(words)} words, needs {n_prompt} + {max(n_ref, 1)}")
    prompt = text[: words[n_prompt - 1].end()].strip()
    reference = text[words[n_prompt].start() : words[n_prompt + n_ref - 1].end()]
    return prompt, reference


@dataclass(frozen=True)
class Passage:
    text: str
    source_row: int  # index of the passage's first line in the dataset
    doc_id: str | None = None
    index_in_doc: int = 0


_HEADING = re.compile(r"^\s*(=+)\s.*\s\1\s*$")  # WikiText "= Title =", "= = Section = ="
_DOC_OPEN = re.compile(r"^\s*<doc\b([^>]*)>\s*$")
_DOC_CLOSE = re.compile(r"^\s*</doc>\s*$")
_ATTR = re.compile(r'(\w+)="([^"]*)"')


def build_passages(
    lines: Sequence[Any],
    *,
    group_lines: bool = False,
    min_words: int = 0,
    doc_markup: str | None = None,
) -> tuple[list[Passage], list[RowProblem]]:
    """Assemble line rows (WikiText, WikiExtractor dumps) into passages.

    Blank lines, WikiText headings and `<doc>` markup are structure, not problems. A heading
    or a document boundary always ends a passage. With `group_lines`, consecutive paragraphs
    are joined (with newlines) until a passage has `min_words` words; otherwise every
    paragraph line is its own passage. Passages under `min_words` are reported as problems.
    """
    passages: list[Passage] = []
    problems: list[RowProblem] = []
    buf: list[str] = []
    buf_start = 0
    doc_id: str | None = None
    doc_title: str | None = None
    expect_title = False
    n_in_doc = 0

    buf_words = 0

    def flush() -> None:
        nonlocal buf, buf_words, n_in_doc
        if buf:
            text = "\n".join(buf)
            n = buf_words
            if n < min_words:
                problems.append(
                    RowProblem(buf_start, "passage too short", f"{n} words, needs {min_words}")
                )
            else:
                passages.append(Passage(text, buf_start, doc_id, n_in_doc))
                n_in_doc += 1
        buf, buf_words = [], 0

    for i, line in enumerate(lines):
        if line is None or not isinstance(line, str):
            problems.append(RowProblem(i, "line is not text", type(line).__name__))
            continue
        stripped = line.strip()
        if doc_markup == "wikiextractor":
            opened = _DOC_OPEN.match(line)
            if opened:
                flush()
                attrs = dict(_ATTR.findall(opened.group(1)))
                doc_id, doc_title, expect_title, n_in_doc = (
                    attrs.get("id"),
                    attrs.get("title"),
                    True,
                    0,
                )
                continue
            if _DOC_CLOSE.match(line):
                flush()
                doc_id = None
                continue
            if expect_title and stripped:
                expect_title = False
                if doc_title is None or stripped == doc_title.strip():
                    continue  # WikiExtractor repeats the title as the first line
        if not stripped:
            if not group_lines:
                flush()
            continue
        if _HEADING.match(line):
            flush()
            continue
        if not group_lines:
            flush()
        if not buf:
            buf_start = i
        buf.append(stripped)
        buf_words += len(stripped.split())
        if group_lines and min_words and buf_words >= min_words:
            flush()
    flush()
    return passages, problems


def passage_to_item(passage: Passage, spec: TaskSpec) -> PreparedItem:
    """A generation item from an assembled passage; RowError if it cannot be split."""
    prompt, reference = _split_or_raise(passage.text, spec)
    item_id = (
        f"{passage.doc_id}-{passage.index_in_doc}"
        if passage.doc_id is not None
        else stable_id(passage.text)
    )
    return PreparedItem(
        task=spec.name,
        kind=spec.kind,
        dataset=spec.dataset.label,
        item_id=item_id,
        fields={"text": prompt},
        references=[reference],
        source_row=passage.source_row,
    )


# --------------------------------------------------------------------------------------------
# Collecting and sampling
# --------------------------------------------------------------------------------------------


def collect_items(
    rows: Iterable[Mapping[str, Any]], spec: TaskSpec
) -> tuple[list[PreparedItem], list[RowProblem], int]:
    """Validate every row in order: (usable items, problems, number of rows read).

    A repeated item_id keeps the first row, so sampling never sees duplicates.
    """
    items: list[PreparedItem] = []
    problems: list[RowProblem] = []
    seen: set[str] = set()
    n_rows = 0
    if spec.line_mode:
        column = str(spec.fields["text"])
        lines = [row.get(column) for row in rows]
        n_rows = len(lines)
        passages, problems = build_passages(
            lines,
            group_lines=spec.group_lines,
            min_words=spec.needed_words if spec.group_lines else spec.min_words,
            doc_markup=spec.doc_markup,
        )
        candidates: Iterable[tuple[int, Any]] = ((p.source_row, p) for p in passages)
    else:
        candidates = enumerate(rows)
    for index, candidate in candidates:
        n_rows = n_rows if spec.line_mode else index + 1
        try:
            if spec.line_mode:
                item = passage_to_item(candidate, spec)
            elif not isinstance(candidate, Mapping):
                raise RowError("row is not an object", type(candidate).__name__)
            else:
                item = row_to_item(candidate, row_index=index, spec=spec)
        except RowError as exc:
            problems.append(RowProblem(index, exc.reason, exc.detail))
            continue
        if item.item_id in seen:
            problems.append(RowProblem(index, "duplicate item_id", item.item_id))
            continue
        seen.add(item.item_id)
        items.append(item)
    problems.sort(key=lambda p: p.row)
    return items, problems, n_rows


def seeded_sample(items: Sequence[T], n: int, seed: int) -> list[T]:
    """`n` items in a seeded random order (all of them if there are fewer).

    The order is a prefix of one seeded permutation, so a larger `n` extends a smaller one.
    """
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
