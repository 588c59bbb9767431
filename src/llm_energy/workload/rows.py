"""Pure dataset logic, part 3: rows to prepared items (`RowError` with a short reason for a row
that cannot be used; a repeated item_id keeps the first)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

from llm_energy.workload.datasets import PreparedItem, RowError, RowProblem, TaskSpec
from llm_energy.workload.passages import Passage, build_passages, split_passage


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
    """Answer texts (and starts) from a SQuAD dict, a list or one string; [] = unanswerable."""
    if isinstance(value, str):
        return ([value] if value.strip() else []), None
    if isinstance(value, Mapping):
        texts, starts = value.get("text"), value.get("answer_start")
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
        references = list(dict.fromkeys(texts))
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
        spec.name, spec.kind, spec.dataset.label, item_id, fields, references, row_index
    )


def _split_or_raise(text: str, spec: TaskSpec) -> tuple[str, str]:
    n_words = len(text.split())
    if n_words < spec.needed_words:
        raise RowError("passage too short", f"{n_words} words, needs {spec.needed_words}")
    opts = spec.generation
    try:
        return split_passage(
            text, prompt_words=opts.prompt_words, reference_words=opts.reference_words
        )
    except ValueError as exc:
        raise RowError("passage too short", str(exc)) from None


def passage_to_item(passage: Passage, spec: TaskSpec) -> PreparedItem:
    """A generation item from an assembled passage; RowError if it cannot be split."""
    prompt, reference = _split_or_raise(passage.text, spec)
    doc = passage.doc_id
    item_id = f"{doc}-{passage.index_in_doc}" if doc is not None else stable_id(passage.text)
    fields, source = {"text": prompt}, passage.source_row
    return PreparedItem(
        spec.name, spec.kind, spec.dataset.label, item_id, fields, [reference], source
    )


def collect_items(
    rows: Iterable[Mapping[str, Any]], spec: TaskSpec
) -> tuple[list[PreparedItem], list[RowProblem], int]:
    """Every row validated in order: (usable items, problems, rows read); a repeated id: first."""
    items: list[PreparedItem] = []
    problems: list[RowProblem] = []
    seen: set[str] = set()
    n_rows = 0
    if spec.line_mode:
        column = str(spec.fields["text"])
        lines = [row.get(column) for row in rows]
        n_rows = len(lines)
        opts = spec.generation
        passages, problems = build_passages(
            lines,
            group_lines=opts.group_lines,
            min_words=spec.needed_words if opts.group_lines else opts.min_words,
            doc_markup=opts.doc_markup,
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
