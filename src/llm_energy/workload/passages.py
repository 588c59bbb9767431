"""Pure dataset logic, part 2: line sources (WikiText, WikiExtractor dumps) assembled into
passages, and a passage split into a prompt prefix and a reference continuation."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from llm_energy.workload.datasets import RowProblem

_WORD = re.compile(r"\S+")


def split_passage(
    text: str, *, prompt_words: int | float, reference_words: int | None
) -> tuple[str, str]:
    """Split a passage into (prompt prefix, reference continuation) at a word boundary, keeping
    the spacing inside each part. ValueError if the passage is too short."""
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
    lines: Sequence[Any], *, group_lines: bool, min_words: int, doc_markup: str | None
) -> tuple[list[Passage], list[RowProblem]]:
    """Assemble line rows into passages. Headings and document boundaries end a passage; with
    `group_lines`, paragraphs are joined until `min_words`, else each line is a passage.
    Passages under `min_words` are reported as problems."""
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
        if buf and buf_words < min_words:
            why = f"{buf_words} words, needs {min_words}"
            problems.append(RowProblem(buf_start, "passage too short", why))
        elif buf:
            passages.append(Passage("\n".join(buf), buf_start, doc_id, n_in_doc))
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
                doc_id, doc_title = attrs.get("id"), attrs.get("title")
                expect_title, n_in_doc = True, 0
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
