"""Task loaders on the embedded samples, on real public samples and on malformed files.

The public samples are read from the shared folder next to the project (never copied into it);
those tests skip cleanly where the folder is missing.
"""

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
from llm_energy.io.loaders import load_task_items, resolve_data_files
from llm_energy.workload.datasets import DatasetError, summarize_problems

ROOT = Path(__file__).resolve().parents[2]
SHARED = Path(__file__).resolve().parents[3] / "shared" / "datasets"
RECORD_KEYS = {"task", "kind", "dataset", "item_id", "fields", "references", "source_row"}


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # A private datasets cache: tests never touch ~/.cache and always rebuild from the files.
    return tmp_path_factory.mktemp("hf_datasets_cache")


@pytest.fixture(scope="module")
def shared() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"shared public dataset samples not found at {SHARED}")
    return SHARED


def load(spec: dict[str, Any], cache_dir: Path, *, n: int = 100, seed: int = 0, root: Path = ROOT):
    # `spec` patches conf/task/<kind>.yaml (helpers.task_config): tests state only what differs.
    return load_task_items(task_config(spec), n_items=n, seed=seed, root=root, cache_dir=cache_dir)


def local(kind: str, path: str | Path, name: str = "t", **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "kind": kind,
        "dataset": {"path": "json", "split": "train", "data_files": str(path)},
        **extra,
    }


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


# --- embedded samples (what conf/task/{generation,qa,summarization}.yaml point at) --------------


def test_embedded_samples_load(cache_dir: Path) -> None:
    qa = load(local("qa", "data/samples/qa.jsonl", name="qa"), cache_dir)
    assert qa.n_rows == qa.n_usable == len(qa.items) >= 16
    assert qa.problems == []
    assert not any("content hashes" in note for note in qa.notes)
    assert all(set(r) == RECORD_KEYS for r in qa.items)
    assert {r["dataset"] for r in qa.items} == {"samples_qa"}
    assert 3 <= sum(r["references"] == [] for r in qa.items) <= 4
    for r in qa.items:
        assert all(ref in r["fields"]["context"] for ref in r["references"])

    summ = load(local("summarization", "data/samples/summarization.jsonl"), cache_dir, n=5)
    assert len(summ.items) == 5 and summ.n_usable >= 16
    assert all(set(r["fields"]) == {"document"} and len(r["references"]) == 1 for r in summ.items)

    gen = load(
        local(
            "generation",
            "data/samples/generation.jsonl",
            options={"prompt_words": 80, "reference_words": 40},
        ),
        cache_dir,
    )
    assert gen.n_usable >= 16 and gen.problems == []
    for r in gen.items:
        assert len(r["fields"]["text"].split()) == 80
        assert len(r["references"][0].split()) == 40
        assert r["item_id"].startswith("gen-")


def test_composed_task_config_loads(cache_dir: Path) -> None:
    # What the prepare stage passes: the validated task of the composed config, as it is.
    task = load_config(compose("task=[qa]")).task("qa")
    result = load_task_items(task, n_items=4, seed=0, root=ROOT, cache_dir=cache_dir)
    assert len(result.items) == 4 and result.task == "qa" and result.dataset == "samples_qa"


def test_sampling_is_seeded_and_deterministic(cache_dir: Path) -> None:
    spec = local("summarization", "data/samples/summarization.jsonl")
    ids = lambda seed, n=8: [r["item_id"] for r in load(spec, cache_dir, n=n, seed=seed).items]  # noqa: E731
    assert ids(1) == ids(1)
    assert ids(1) != ids(2)
    assert ids(1, n=12)[:8] == ids(1)
    result = load(spec, cache_dir, n=1000)
    assert len(result.items) == result.n_usable
    assert any("only" in note for note in result.notes)


def test_relative_data_files_resolve_against_root(tmp_path: Path) -> None:
    assert resolve_data_files("a/b.jsonl", tmp_path) == str(tmp_path / "a/b.jsonl")
    assert resolve_data_files({"train": ["x.json"]}, tmp_path) == {
        "train": [str(tmp_path / "x.json")]
    }
    assert resolve_data_files("/abs/x.json", tmp_path) == "/abs/x.json"
    assert resolve_data_files(None, tmp_path) is None


# --- real public samples (read from the shared folder) -----------------------------------------


def test_squad_v2_sample(shared: Path, cache_dir: Path) -> None:
    spec = {
        "name": "squad_v2",
        "kind": "qa",
        "dataset": {
            "path": "json",
            "split": "train",
            "data_files": str(shared / "squad_v2/sample.json"),
            "field": "data",
        },
        "fields": {"id": "id", "context": "context", "question": "question", "answers": "answers"},
    }
    result = load(spec, cache_dir)
    assert (result.n_rows, result.n_usable, result.problems) == (14, 14, [])
    assert sum(r["references"] == [] for r in result.items) == 6
    assert result.dataset == "squad_v2_sample"
    normans = next(r for r in result.items if r["item_id"] == "56ddde6b9a695914005b9629")
    assert normans["references"] == ["10th and 11th centuries", "in the 10th and 11th centuries"]


def test_xsum_sample_gets_stable_hash_ids(shared: Path, cache_dir: Path) -> None:
    spec = local("summarization", shared / "xsum/sample.jsonl", name="xsum")
    first, second = load(spec, cache_dir), load(spec, cache_dir, seed=5)
    assert first.n_usable == 10
    assert {r["item_id"] for r in first.items} == {r["item_id"] for r in second.items}
    assert all(len(r["item_id"]) == 16 for r in first.items)
    assert any("content hashes" in note for note in first.notes)


def test_cnn_dailymail_sample(shared: Path, cache_dir: Path) -> None:
    spec = local(
        "summarization",
        shared / "cnn_dailymail/sample.jsonl",
        name="cnn_dailymail",
        fields={"id": "id", "document": "article", "summary": "highlights"},
    )
    result = load(spec, cache_dir)
    assert result.n_usable == 20 and result.problems == []
    radcliffe = next(
        r for r in result.items if r["item_id"] == "42c027e4ff9730fbb3de84c1af0d2c506e41c3e4"
    )
    assert "Daniel Radcliffe" in radcliffe["references"][0]
    assert "\n" in radcliffe["references"][0]  # one highlight per line, for ROUGE-Lsum


def test_wikiextractor_text_sample(shared: Path, cache_dir: Path) -> None:
    spec = {
        "name": "wikitext",
        "kind": "generation",
        "dataset": {
            "path": "text",
            "split": "train",
            "data_files": str(shared / "wikitext/wiki_00.txt"),
        },
        "fields": {"text": "text"},
        "options": {
            "doc_markup": "wikiextractor",
            "group_lines": True,
            "prompt_words": 60,
            "reference_words": 40,
        },
    }
    result = load(spec, cache_dir, n=1000)
    assert result.n_rows == 251
    assert result.n_usable >= 40
    doc_ids = {r["item_id"].split("-")[0] for r in result.items}
    assert doc_ids == {"12", "25"}
    for r in result.items:
        text = r["fields"]["text"]
        assert "<doc" not in text and "</doc>" not in text
        assert not text.startswith(("Anarchism\n", "Autism\n"))  # title lines are dropped
        assert len(text.split()) == 60 and len(r["references"][0].split()) == 40
    # the same file one paragraph per passage: fewer passages are long enough
    spec["options"] = {**spec["options"], "group_lines": False}
    per_line = load(spec, cache_dir, n=1000)
    assert 0 < per_line.n_usable < result.n_usable
    assert any("passage too short" in line for line in summarize_problems(per_line.row_problems))


# --- malformed data and clear errors ----------------------------------------------------------


def test_malformed_rows_are_skipped_and_listed(tmp_path: Path, cache_dir: Path) -> None:
    path = write_jsonl(
        tmp_path / "bad.jsonl",
        [
            {"id": "ok1", "document": "A fine document.", "summary": "Fine."},
            {"id": "empty", "document": "   ", "summary": "x"},
            {"id": "missing", "summary": "no document"},
            {"id": "number", "document": 42, "summary": "x"},
            {"id": "ok2", "document": "Another document.", "summary": "Also fine."},
        ],
    )
    result = load(local("summarization", path, name="bad"), cache_dir)
    assert sorted(r["item_id"] for r in result.items) == ["ok1", "ok2"]
    assert result.n_rows == 5 and result.n_skipped == 3
    assert result.problems == [
        "row 1: field 'document' is empty",
        "row 2: missing field 'document' (column 'document' is null)",
        "row 3: field 'document' is not text (got int)",
    ]


def test_all_bad_rows_raise(tmp_path: Path, cache_dir: Path) -> None:
    path = write_jsonl(
        tmp_path / "allbad.jsonl", [{"text": ""}, {"text": "too short"}, {"text": None}]
    )
    with pytest.raises(DatasetError) as info:
        load(local("generation", path, name="gen_bad"), cache_dir)
    message = str(info.value)
    assert "\n" not in message
    assert "task 'gen_bad'" in message and "no usable rows out of 3" in message
    assert "field 'text' is empty" in message


def test_column_missing_everywhere_raises(tmp_path: Path, cache_dir: Path) -> None:
    path = write_jsonl(tmp_path / "nocol.jsonl", [{"body": "x", "summary": "y"}])
    with pytest.raises(DatasetError, match=r"no row has column 'document'.*fields\.document"):
        load(local("summarization", path, name="nocol"), cache_dir)


def test_config_and_file_errors(tmp_path: Path, cache_dir: Path) -> None:
    with pytest.raises(ConfigError, match=r"task\.t\.kind = 'poetry'"):
        load(local("poetry", "data/samples/qa.jsonl"), cache_dir)
    with pytest.raises(DatasetError, match="not found"):
        load(local("qa", "data/samples/nope.jsonl"), cache_dir)
    with pytest.raises(DatasetError, match="n_items"):
        load(local("qa", "data/samples/qa.jsonl"), cache_dir, n=0)
    spec = local("qa", "data/samples/qa.jsonl")
    spec["dataset"]["split"] = "validation"
    with pytest.raises(DatasetError, match=r"dataset\.split"):
        load(spec, cache_dir)


def test_hub_dataset_offline_error(cache_dir: Path) -> None:
    import datasets

    if not datasets.config.HF_HUB_OFFLINE:
        pytest.skip("datasets was imported before offline mode was set")
    spec = {
        "name": "squad_v2",
        "kind": "qa",
        "dataset": {"path": "rajpurkar/squad_v2", "split": "validation", "data_files": None},
    }
    with pytest.raises(DatasetError) as info:
        load(spec, cache_dir)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("task 'squad_v2', dataset 'squad_v2'")
    assert "offline" in message and "data/samples" in message
