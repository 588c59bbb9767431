"""Pure dataset logic (llm_energy.datasets) and the embedded sample files."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"

import pytest

from llm_energy import datasets as D
from llm_energy.errors import UserFacingError

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "data" / "samples"


def task(kind: str = "qa", **extra: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": f"t_{kind}",
        "kind": kind,
        "dataset": {"path": "json", "split": "train", "data_files": f"data/samples/{kind}.jsonl"},
    }
    spec.update(extra)
    return spec


# --- config parsing ---------------------------------------------------------------------------


def test_parse_task_defaults_and_label() -> None:
    spec = D.parse_task(task("qa"))
    assert spec.kind == "qa"
    assert spec.fields == {
        "context": "context",
        "question": "question",
        "answers": "answers",
        "id": "id",
        "title": "title",
    }
    assert spec.dataset.label == "samples_qa"
    hub = D.parse_task({"name": "x", "kind": "qa", "dataset": {"path": "rajpurkar/squad_v2"}})
    assert hub.dataset.label == "squad_v2"
    labelled = task("qa")
    labelled["dataset"]["label"] = "my_qa"
    assert D.parse_task(labelled).dataset.label == "my_qa"


def test_parse_task_options_anywhere() -> None:
    nested = D.parse_task(
        task("generation", options={"prompt_words": 0.5, "reference_words": None})
    )
    assert (nested.prompt_words, nested.reference_words) == (0.5, None)
    flat = D.parse_task(task("generation", prompt_words=80, reference_words=40, min_words=10))
    assert (flat.prompt_words, flat.reference_words, flat.min_words) == (80, 40, 10)
    assert flat.needed_words == 120
    lines = D.parse_task(
        {
            "name": "w",
            "kind": "generation",
            "dataset": {"path": "text", "data_files": "x.txt", "doc_markup": "wikiextractor"},
            "group_lines": True,
        }
    )
    assert lines.line_mode and lines.doc_markup == "wikiextractor"
    # extra task keys (prompt settings etc.) belong to other modules and are ignored
    D.parse_task(task("qa", output_tokens=16, output_mode="natural"))


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        (task("translation"), "unknown kind"),
        ({"name": "q", "kind": "qa"}, "dataset.path"),
        (task("qa", fields={"contxt": "c"}), "unknown field name"),
        (task("qa", fields={"context": None}), "fields.context"),
        (task("generation", prompt_words=1.5), "prompt_words"),
        (task("generation", reference_words=0), "reference_words"),
        (task("generation", doc_markup="mediawiki"), "doc_markup"),
        ({"name": "q", "kind": "qa", "dataset": {"path": "json", "data_file": "x"}}, "data_file"),
    ],
)
def test_parse_task_errors_are_one_line(spec: dict[str, Any], match: str) -> None:
    with pytest.raises(D.DatasetError, match=match) as info:
        D.parse_task(spec)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("task '")
    assert isinstance(info.value, UserFacingError)


# --- rows -------------------------------------------------------------------------------------


def test_qa_row_to_item() -> None:
    spec = D.parse_task(task("qa"))
    row = {
        "id": "q1",
        "context": "The door is blue. The door is blue.",
        "question": "What colour is the door?",
        "answers": {"text": ["blue", "blue"], "answer_start": [12, 30]},
    }
    item = D.row_to_item(row, row_index=7, spec=spec)
    assert item.to_record() == {
        "task": "t_qa",
        "kind": "qa",
        "dataset": "samples_qa",
        "item_id": "q1",
        "fields": {"context": row["context"], "question": row["question"]},
        "references": ["blue"],  # duplicates collapse
        "source_row": 7,
    }
    unanswerable = dict(row, answers={"text": [], "answer_start": []})
    assert D.row_to_item(unanswerable, row_index=0, spec=spec).references == []
    # plain lists of answers are accepted too (checked against the context)
    assert D.row_to_item(dict(row, answers=["blue"]), row_index=0, spec=spec).references == ["blue"]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"answers": {"text": ["blue"], "answer_start": [3]}}, "answer span mismatch"),
        ({"answers": ["red"]}, "answer not in context"),
        ({"answers": {"text": ["blue"], "answer_start": []}}, "malformed answers"),
        ({"answers": 5}, "malformed answers"),
        ({"answers": None}, "missing field 'answers'"),
        ({"context": ""}, "field 'context' is empty"),
        ({"question": 3}, "field 'question' is not text"),
        ({"question": None}, "missing field 'question'"),
    ],
)
def test_bad_qa_rows(change: dict[str, Any], reason: str) -> None:
    spec = D.parse_task(task("qa"))
    row = {
        "context": "The door is blue.",
        "question": "What colour?",
        "answers": {"text": ["blue"], "answer_start": [12]},
    }
    with pytest.raises(D.RowError) as info:
        D.row_to_item({**row, **change}, row_index=0, spec=spec)
    assert info.value.reason == reason


def test_span_check_can_be_disabled() -> None:
    spec = D.parse_task(task("qa", check_spans=False))
    row = {"context": "c", "question": "q", "answers": {"text": ["x"], "answer_start": [99]}}
    assert D.row_to_item(row, row_index=0, spec=spec).references == ["x"]


def test_summarization_row_and_stable_hash_id() -> None:
    spec = D.parse_task(task("summarization"))
    row = {"document": "A long story.", "summary": "Short."}
    item = D.row_to_item(row, row_index=2, spec=spec)
    assert item.fields == {"document": "A long story."} and item.references == ["Short."]
    assert item.item_id == D.stable_id("A long story.")  # no id column -> content hash
    assert len(item.item_id) == 16
    assert D.row_to_item(dict(row, id=17), row_index=2, spec=spec).item_id == "17"
    cnn = D.parse_task(
        task("summarization", fields={"document": "article", "summary": "highlights"})
    )
    item = D.row_to_item({"article": "a", "highlights": "h", "id": "x"}, row_index=0, spec=cnn)
    assert (item.fields["document"], item.references, item.item_id) == ("a", ["h"], "x")


def test_generation_row_split() -> None:
    spec = D.parse_task(task("generation", prompt_words=3, reference_words=2))
    item = D.row_to_item({"text": "one two three four five six"}, row_index=0, spec=spec)
    assert item.fields == {"text": "one two three"}
    assert item.references == ["four five"]
    with pytest.raises(D.RowError, match="passage too short"):
        D.row_to_item({"text": "one two three four"}, row_index=0, spec=spec)


# --- passages ---------------------------------------------------------------------------------


def test_split_passage() -> None:
    text = "Alpha  beta\ngamma delta epsilon zeta."
    assert D.split_passage(text, prompt_words=2, reference_words=3) == (
        "Alpha  beta",
        "gamma delta epsilon",
    )
    assert D.split_passage(text, prompt_words=0.5, reference_words=None) == (
        "Alpha  beta\ngamma",
        "delta epsilon zeta.",
    )
    assert D.split_passage(text, prompt_words=5, reference_words=None) == (
        "Alpha  beta\ngamma delta epsilon",
        "zeta.",
    )
    with pytest.raises(ValueError, match="needs"):
        D.split_passage(text, prompt_words=5, reference_words=2)
    with pytest.raises(ValueError):
        D.split_passage("one", prompt_words=0.5, reference_words=None)


WIKITEXT_LINES = [
    "",
    " = Valley Railway = \n",
    "",
    " The valley railway opened in 1880 and carried coal . \n",
    "",
    " It closed in 1965 after the mines shut . \n",
    "",
    " = = History = = \n",
    "",
    " Passenger trains ran four times a day . \n",
    " Goods trains ran at night . \n",
    "",
]


def test_build_passages_wikitext_lines() -> None:
    # blank lines and headings are structure, not problems; each paragraph is a passage
    passages, problems = D.build_passages(WIKITEXT_LINES, min_words=7)
    assert [p.source_row for p in passages] == [3, 5, 9]
    assert passages[0].text == "The valley railway opened in 1880 and carried coal ."
    assert problems == [D.RowProblem(10, "passage too short", "6 words, needs 7")]
    grouped, problems = D.build_passages(WIKITEXT_LINES, group_lines=True, min_words=15)
    # headings end passages: the first section joins two paragraphs, the second is too short
    assert len(grouped) == 1 and grouped[0].source_row == 3
    assert grouped[0].text.count("\n") == 1
    assert [p.reason for p in problems] == ["passage too short"]
    assert problems[0].row == 9


def test_build_passages_wikiextractor_markup() -> None:
    lines = [
        '<doc id="7" url="https://example.org/?curid=7" title="Kites">',
        "Kites",
        "",
        "A kite is flown on a line.",
        "",
        "Kites need wind.",
        "</doc>",
        '<doc id="8" url="https://example.org/?curid=8" title="Tea">',
        "Tea",
        "",
        "Tea is a drink.",
        "</doc>",
    ]
    passages, problems = D.build_passages(lines, doc_markup="wikiextractor")
    assert [(p.doc_id, p.index_in_doc, p.text) for p in passages] == [
        ("7", 0, "A kite is flown on a line."),
        ("7", 1, "Kites need wind."),
        ("8", 0, "Tea is a drink."),
    ]
    assert problems == []
    grouped, _ = D.build_passages(
        lines, doc_markup="wikiextractor", group_lines=True, min_words=100
    )
    # too short for 100 words: nothing kept, but documents never merge across </doc>
    assert grouped == []
    grouped, _ = D.build_passages(lines, doc_markup="wikiextractor", group_lines=True)
    assert [p.text for p in grouped] == [
        "A kite is flown on a line.\nKites need wind.",
        "Tea is a drink.",
    ]


def test_collect_items_counts_problems_and_duplicates() -> None:
    spec = D.parse_task(task("summarization"))
    rows = [
        {"id": "a", "document": "doc a", "summary": "sum a"},
        {"id": "b", "document": "", "summary": "sum b"},
        {"id": "a", "document": "doc a again", "summary": "sum"},
        {"id": "c", "document": ["x"], "summary": "sum"},
        {"id": "d", "document": "doc d", "summary": None},
    ]
    items, problems, n_rows = D.collect_items(rows, spec)
    assert [i.item_id for i in items] == ["a"]
    assert n_rows == 5
    assert [str(p) for p in problems] == [
        "row 1: field 'document' is empty",
        "row 2: duplicate item_id (a)",
        "row 3: field 'document' is not text (got list)",
        "row 4: missing field 'summary' (column 'summary' is null)",
    ]
    summary = D.summarize_problems([*problems, D.RowProblem(9, "field 'document' is empty")])
    assert summary[0] == "2 row(s): field 'document' is empty: row 1; row 9"


def test_seeded_sample() -> None:
    items = list(range(50))
    a = D.seeded_sample(items, 10, seed=1)
    assert a == D.seeded_sample(items, 10, seed=1)
    assert a != D.seeded_sample(items, 10, seed=2)
    assert len(set(a)) == 10
    assert D.seeded_sample(items, 20, seed=1)[:10] == a  # larger samples extend smaller ones
    assert sorted(D.seeded_sample(items, 500, seed=1)) == items
    with pytest.raises(ValueError):
        D.seeded_sample(items, 0, seed=1)


# --- embedded samples -------------------------------------------------------------------------


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def test_embedded_qa_sample() -> None:
    rows = read_jsonl(SAMPLES / "qa.jsonl")
    assert len(rows) >= 16
    assert len({r["id"] for r in rows}) == len(rows)
    unanswerable = 0
    for r in rows:
        assert set(r) == {"id", "title", "context", "question", "answers"}
        assert 60 <= len(r["context"].split()) <= 120
        texts, starts = r["answers"]["text"], r["answers"]["answer_start"]
        assert len(texts) == len(starts)
        unanswerable += not texts
        for text, start in zip(texts, starts, strict=True):
            assert r["context"][start : start + len(text)] == text, r["id"]
    assert 3 <= unanswerable <= 4


def test_embedded_summarization_sample() -> None:
    rows = read_jsonl(SAMPLES / "summarization.jsonl")
    assert len(rows) >= 16
    assert len({r["id"] for r in rows}) == len(rows)
    for r in rows:
        assert set(r) == {"id", "document", "summary"}
        assert 120 <= len(r["document"].split()) <= 220
        assert r["summary"].count(". ") == 0 and r["summary"].endswith(".")


def test_embedded_generation_sample() -> None:
    rows = read_jsonl(SAMPLES / "generation.jsonl")
    assert len(rows) >= 16
    assert len({r["id"] for r in rows}) == len(rows)
    spec = D.parse_task(task("generation", prompt_words=80, reference_words=40))
    for i, r in enumerate(rows):
        assert set(r) == {"id", "text"}
        assert 120 <= len(r["text"].split()) <= 200
        item = D.row_to_item(r, row_index=i, spec=spec)
        assert len(item.fields["text"].split()) == 80
        assert len(item.references[0].split()) == 40
        assert r["text"].startswith(item.fields["text"])
