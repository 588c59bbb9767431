"""Pure dataset logic (llm_energy.workload.datasets, dataset_rows, passages), task options and the samples."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"

import pytest

from helpers import compose, task_config
from llm_energy.config.settings import ConfigError, load_config
from llm_energy.config.tasks import GenerationOptions
from llm_energy.workload import datasets as D
from llm_energy.workload import passages as P
from llm_energy.workload import rows as R

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "data" / "samples"


def task(kind: str = "qa", **extra: Any) -> dict[str, Any]:
    """A patch over conf/task/<kind>.yaml (helpers.task_config)."""
    spec: dict[str, Any] = {
        "name": f"t_{kind}",
        "kind": kind,
        "dataset": {"path": "json", "split": "train", "data_files": f"data/samples/{kind}.jsonl"},
    }
    spec.update(extra)
    return spec


def spec_of(patch: dict[str, Any]) -> D.TaskSpec:
    return D.task_spec(task_config(patch))


# --- task config -> spec ----------------------------------------------------------------------


def test_task_spec_fields_and_label() -> None:
    spec = spec_of(task("qa"))
    assert spec.kind == "qa"
    assert spec.fields == {
        "id": "id",
        "context": "context",
        "question": "question",
        "answers": "answers",
    }
    assert spec.dataset.label == "samples_qa"
    hub = spec_of(
        {"name": "x", "kind": "qa", "dataset": {"path": "rajpurkar/squad_v2", "data_files": None}}
    )
    assert hub.dataset.label == "squad_v2"
    labelled = task("qa")
    labelled["dataset"]["label"] = "my_qa"
    assert spec_of(labelled).dataset.label == "my_qa"


def test_task_options_come_from_the_kind() -> None:
    nested = spec_of(task("generation", options={"prompt_words": 0.5, "reference_words": None}))
    assert (nested.generation.prompt_words, nested.generation.reference_words) == (0.5, None)
    fixed = spec_of(task("generation", options={"prompt_words": 80, "min_words": 10}))
    assert fixed.needed_words == 80 + 40  # reference_words 40 from conf/task/generation.yaml
    lines = spec_of(
        task("generation", options={"doc_markup": "wikiextractor", "group_lines": True})
    )
    assert lines.line_mode and lines.generation.doc_markup == "wikiextractor"
    assert spec_of(task("qa", options={"check_spans": False})).check_spans is False
    with pytest.raises(TypeError):
        _ = spec_of(task("qa")).generation


def test_conf_task_options_are_what_the_specs_use() -> None:
    """The values in conf/task/*.yaml reach the spec unchanged (no second set of defaults)."""
    cfg = load_config(compose("task=[generation,wikitext,qa,summarization]"))
    gen, wiki = D.task_spec(cfg.task("generation")), D.task_spec(cfg.task("wikitext"))
    assert gen.options == GenerationOptions(80, 40, 0, False, None)
    assert wiki.options == GenerationOptions(200, 60, 120, True, None) and wiki.line_mode
    assert D.task_spec(cfg.task("qa")).check_spans is True


def test_options_typo_fails_naming_the_key_and_the_allowed_ones() -> None:
    with pytest.raises(ConfigError) as info:
        task_config(task("generation", name="generation", options={"prompt_wrds": 80}))
    message = str(info.value)
    assert message.startswith("params: task.generation.options.prompt_wrds = 80")
    assert "prompt_words, reference_words, min_words, group_lines, doc_markup" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("patch", "key", "fragment"),
    [
        (task("translation"), "task.t_translation.kind", "generation|qa|summarization"),
        ({"name": "q", "kind": "qa", "dataset": None}, "task.q.dataset", "mapping"),
        (task("qa", fields={"contxt": "c"}), "task.t_qa.fields.contxt", "unknown key"),
        (task("qa", fields={"title": "t"}), "task.t_qa.fields.title", "unknown key"),
        (task("qa", fields={"context": None}), "task.t_qa.fields.context", "dataset column"),
        (task("qa", options={"prompt_words": 3}), "task.t_qa.options.prompt_words", "check_spans"),
        (task("summarization", options={"check_spans": True}), "options.check_spans", "none"),
        (task("generation", options={"prompt_words": 1.5}), "options.prompt_words", "fraction"),
        (task("generation", options={"prompt_words": True}), "options.prompt_words", "fraction"),
        (task("generation", options={"reference_words": 0}), "options.reference_words", "least 1"),
        (task("generation", options={"min_words": -1}), "options.min_words", "least 0"),
        (task("generation", options={"group_lines": "yes"}), "options.group_lines", "true or"),
        (task("generation", options={"doc_markup": "mediawiki"}), "doc_markup", "wikiextractor"),
        (task("qa", dataset={"data_file": "x"}), "task.t_qa.dataset.data_file", "unknown key"),
        (task("qa", dataset={"label": "a/b"}), "task.t_qa.dataset.label", "without slashes"),
        (task("qa", dataset={"data_files": 3}), "task.t_qa.dataset.data_files", "list of paths"),
        (task("qa", output_mode="eos"), "task.t_qa.output_mode", "fixed|natural"),
    ],
)
def test_task_config_errors_are_one_line(patch: dict[str, Any], key: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        task_config(patch)
    message = str(info.value)
    assert "\n" not in message and key in info.value.key and fragment in message


def test_a_missing_task_option_fails() -> None:
    cfg = compose("task=[wikitext]")
    del cfg["task"]["wikitext"]["options"]["min_words"]
    with pytest.raises(ConfigError, match=r"task\.wikitext\.options\.min_words = \(missing\)"):
        load_config(cfg)


# --- rows -------------------------------------------------------------------------------------


def test_qa_row_to_item() -> None:
    spec = spec_of(task("qa"))
    row = {
        "id": "q1",
        "context": "The door is blue. The door is blue.",
        "question": "What colour is the door?",
        "answers": {"text": ["blue", "blue"], "answer_start": [12, 30]},
    }
    item = R.row_to_item(row, row_index=7, spec=spec)
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
    assert R.row_to_item(unanswerable, row_index=0, spec=spec).references == []
    # plain lists of answers are accepted too (checked against the context)
    assert R.row_to_item(dict(row, answers=["blue"]), row_index=0, spec=spec).references == ["blue"]


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
    spec = spec_of(task("qa"))
    row = {
        "context": "The door is blue.",
        "question": "What colour?",
        "answers": {"text": ["blue"], "answer_start": [12]},
    }
    with pytest.raises(D.RowError) as info:
        R.row_to_item({**row, **change}, row_index=0, spec=spec)
    assert info.value.reason == reason


def test_span_check_can_be_disabled() -> None:
    spec = spec_of(task("qa", options={"check_spans": False}))
    row = {"context": "c", "question": "q", "answers": {"text": ["x"], "answer_start": [99]}}
    assert R.row_to_item(row, row_index=0, spec=spec).references == ["x"]


def test_summarization_row_and_stable_hash_id() -> None:
    spec = spec_of(task("summarization"))
    row = {"document": "A long story.", "summary": "Short."}
    item = R.row_to_item(row, row_index=2, spec=spec)
    assert item.fields == {"document": "A long story."} and item.references == ["Short."]
    assert item.item_id == R.stable_id("A long story.")  # no id column -> content hash
    assert len(item.item_id) == 16
    assert R.row_to_item(dict(row, id=17), row_index=2, spec=spec).item_id == "17"
    cnn = spec_of(task("summarization", fields={"document": "article", "summary": "highlights"}))
    item = R.row_to_item({"article": "a", "highlights": "h", "id": "x"}, row_index=0, spec=cnn)
    assert (item.fields["document"], item.references, item.item_id) == ("a", ["h"], "x")


def test_generation_row_split() -> None:
    spec = spec_of(task("generation", options={"prompt_words": 3, "reference_words": 2}))
    item = R.row_to_item({"text": "one two three four five six"}, row_index=0, spec=spec)
    assert item.fields == {"text": "one two three"}
    assert item.references == ["four five"]
    with pytest.raises(D.RowError, match="passage too short"):
        R.row_to_item({"text": "one two three four"}, row_index=0, spec=spec)


# --- passages ---------------------------------------------------------------------------------


def test_split_passage() -> None:
    text = "Alpha  beta\ngamma delta epsilon zeta."
    assert P.split_passage(text, prompt_words=2, reference_words=3) == (
        "Alpha  beta",
        "gamma delta epsilon",
    )
    assert P.split_passage(text, prompt_words=0.5, reference_words=None) == (
        "Alpha  beta\ngamma",
        "delta epsilon zeta.",
    )
    assert P.split_passage(text, prompt_words=5, reference_words=None) == (
        "Alpha  beta\ngamma delta epsilon",
        "zeta.",
    )
    with pytest.raises(ValueError, match="needs"):
        P.split_passage(text, prompt_words=5, reference_words=2)
    with pytest.raises(ValueError):
        P.split_passage("one", prompt_words=0.5, reference_words=None)


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
    passages, problems = P.build_passages(
        WIKITEXT_LINES, group_lines=False, min_words=7, doc_markup=None
    )
    assert [p.source_row for p in passages] == [3, 5, 9]
    assert passages[0].text == "The valley railway opened in 1880 and carried coal ."
    assert problems == [D.RowProblem(10, "passage too short", "6 words, needs 7")]
    grouped, problems = P.build_passages(
        WIKITEXT_LINES, group_lines=True, min_words=15, doc_markup=None
    )
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
    passages, problems = P.build_passages(
        lines, doc_markup="wikiextractor", group_lines=False, min_words=0
    )
    assert [(p.doc_id, p.index_in_doc, p.text) for p in passages] == [
        ("7", 0, "A kite is flown on a line."),
        ("7", 1, "Kites need wind."),
        ("8", 0, "Tea is a drink."),
    ]
    assert problems == []
    grouped, _ = P.build_passages(
        lines, doc_markup="wikiextractor", group_lines=True, min_words=100
    )
    # too short for 100 words: nothing kept, but documents never merge across </doc>
    assert grouped == []
    grouped, _ = P.build_passages(lines, doc_markup="wikiextractor", group_lines=True, min_words=0)
    assert [p.text for p in grouped] == [
        "A kite is flown on a line.\nKites need wind.",
        "Tea is a drink.",
    ]


def test_collect_items_counts_problems_and_duplicates() -> None:
    spec = spec_of(task("summarization"))
    rows = [
        {"id": "a", "document": "doc a", "summary": "sum a"},
        {"id": "b", "document": "", "summary": "sum b"},
        {"id": "a", "document": "doc a again", "summary": "sum"},
        {"id": "c", "document": ["x"], "summary": "sum"},
        {"id": "d", "document": "doc d", "summary": None},
    ]
    items, problems, n_rows = R.collect_items(rows, spec)
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
    spec = spec_of(task("generation", options={"prompt_words": 80, "reference_words": 40}))
    for i, r in enumerate(rows):
        assert set(r) == {"id", "text"}
        assert 120 <= len(r["text"].split()) <= 200
        item = R.row_to_item(r, row_index=i, spec=spec)
        assert len(item.fields["text"].split()) == 80
        assert len(item.references[0].split()) == 40
        assert r["text"].startswith(item.fields["text"])
