"""The project's evaluate metric scripts load offline and give the hand-computed values."""

from __future__ import annotations

import math
import os
import re

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("HF_EVALUATE_OFFLINE", "1")

from typing import Any

import pytest

from llm_energy.quality import metrics


@pytest.fixture(scope="module")
def evaluate() -> Any:
    return pytest.importorskip("evaluate")


@pytest.fixture(scope="module")
def loaded(evaluate: Any) -> dict[str, Any]:
    # Loaded straight from the folders, as `evaluate.load(path)` would be by any user.
    return {name: evaluate.load(str(metrics.metric_path(name))) for name in metrics.NAMES}


def test_scripts_have_evaluate_layout_and_one_import_per_line() -> None:
    for name in metrics.NAMES:
        script = metrics.metric_path(name) / f"{name}.py"
        assert script.is_file()
        for line in script.read_text(encoding="utf-8").splitlines():
            # evaluate's import parser cannot read "import a, b"
            assert not re.match(r"^import\s+\S+\s*,", line), line
    with pytest.raises(ValueError, match="unknown metric"):
        metrics.metric_path("bleu")


def test_evaluate_finds_only_installed_libraries(evaluate: Any) -> None:
    from evaluate.loading import get_imports

    for name in metrics.NAMES:
        imports = get_imports(str(metrics.metric_path(name) / f"{name}.py"))
        libs = {imp[1] for imp in imports if imp[0] == "library"}
        assert libs == {"datasets", "evaluate", "llm_energy"}
        assert all(imp[0] == "library" for imp in imports)


def test_rouge_script(loaded: dict[str, Any]) -> None:
    rouge = loaded["rouge"]
    out = rouge.compute(predictions=["the cat sat"], references=[["the cat was sitting"]])
    assert out == {  # evaluate's default types, rougeLsum included
        "rouge1": pytest.approx(4 / 7),
        "rouge2": pytest.approx(2 / 5),
        "rougeL": pytest.approx(4 / 7),
        "rougeLsum": pytest.approx(4 / 7),
    }
    # plain string references, Lsum, per-item lists
    out = rouge.compute(
        predictions=["cat sat\nthe cat", "cat the sat"],
        references=["the cat sat", "the cat sat"],
        rouge_types=["rougeL", "rougeLsum"],
        use_aggregator=False,
    )
    assert out["rougeLsum"][0] == pytest.approx(6 / 7)
    assert out["rougeL"] == pytest.approx([4 / 7, 2 / 3])
    # several references: best one per item
    out = rouge.compute(predictions=["the cat sat"], references=[["a dog", "the cat sat"]])
    assert out["rouge1"] == pytest.approx(1.0)
    # evaluate's options: stemming (NLTK Porter) and a custom tokenizer
    stem = rouge.compute(
        predictions=["cats running"],
        references=["cat run"],
        rouge_types=["rouge1"],
        use_stemmer=True,
    )
    assert stem == {"rouge1": pytest.approx(1.0)}
    split = rouge.compute(
        predictions=["The cat"], references=["the cat"], rouge_types=["rouge1"], tokenizer=str.split
    )
    assert split == {"rouge1": pytest.approx(1 / 2)}


def test_squad_v2_script(loaded: dict[str, Any]) -> None:
    squad = loaded["squad_v2"]
    preds = ["the Eiffel Tower", "village of Ormsby", "unanswerable", "Paris"]
    refs = [["Eiffel Tower"], ["the wooden jetty in the village of Ormsby"], [], []]
    out = squad.compute(predictions=preds, references=refs)
    assert out["exact"] == pytest.approx(50.0)
    assert out["f1"] == pytest.approx(100 * (1 + 2 / 3 + 1 + 0) / 4)
    assert out["HasAns_f1"] == pytest.approx(100 * (1 + 2 / 3) / 2)
    assert (out["NoAns_exact"], out["NoAns_total"]) == (pytest.approx(50.0), 2)
    strict = squad.compute(predictions=preds, references=refs, no_answer_phrases=[])
    assert strict["NoAns_exact"] == pytest.approx(0.0)


def test_squad_v2_script_takes_evaluates_canonical_format(loaded: dict[str, Any]) -> None:
    # code written for evaluate.load("squad_v2") runs unchanged and gets evaluate's keys
    squad = loaded["squad_v2"]
    preds = [
        {"id": "q1", "prediction_text": "1976", "no_answer_probability": 0.0},
        {"id": "q2", "prediction_text": "in late May", "no_answer_probability": 0.25},
        {"id": "q3", "prediction_text": "", "no_answer_probability": 0.5},
        {"id": "q4", "prediction_text": "unanswerable", "no_answer_probability": 0.75},
    ]
    refs = [
        {"id": "q1", "answers": {"text": ["1976"], "answer_start": [97]}},
        {"id": "q2", "answers": {"text": ["late September", "September"], "answer_start": [3, 8]}},
        {"id": "q3", "answers": {"text": [], "answer_start": []}},
        {"id": "q4", "answers": {"text": [], "answer_start": []}},
    ]
    out = squad.compute(predictions=preds, references=refs)
    assert set(out) == {
        *(f"{p}{k}" for p in ("", "HasAns_", "NoAns_") for k in ("exact", "f1", "total")),
        *("best_exact", "best_exact_thresh", "best_f1", "best_f1_thresh"),
    }
    # q2: gold [late, september] vs [in, late, may] -> F1 2/5; q4 is wrong without phrase mapping
    assert out["exact"] == pytest.approx(50.0)
    assert out["f1"] == pytest.approx(100 * (1 + 2 / 5 + 1 + 0) / 4)
    assert (out["HasAns_total"], out["NoAns_total"]) == (2, 2)
    # best threshold: from 2 (all "no answer"), q1 at 0.0 adds 1, q2 0, q3 0, q4 -1 -> 3/4 at 0.0
    assert (out["best_exact"], out["best_exact_thresh"]) == (pytest.approx(75.0), 0.0)
    assert squad.compute(predictions=preds, references=refs, no_answer_threshold=0.6)[
        "NoAns_exact"
    ] == pytest.approx(100.0)


def test_perplexity_script(loaded: dict[str, Any]) -> None:
    ppl = loaded["perplexity"]
    out = ppl.compute(ref_nll_sum=[2.0, 4.0, None], ref_tokens=[2, 4, 5])
    assert out["perplexity"] == pytest.approx(math.e)
    assert out["mean_nll"] == pytest.approx(1.0)
    assert (out["n_items"], out["n_tokens"], out["n_skipped"]) == (2, 6, 1)
    out = ppl.compute(ref_nll_sum=[5 * math.log(3)], ref_tokens=[5])
    assert out["perplexity"] == pytest.approx(3.0)


def test_package_helpers(evaluate: Any) -> None:
    module = metrics.load("squad_v2")
    assert module.compute(predictions=["1962"], references=[["1962"]])["exact"] == 100.0
    assert (
        metrics.compute_for_kind("qa", predictions=["Blue"], references=[["blue"]])["f1"] == 100.0
    )
    canonical = metrics.compute_for_kind(
        "qa",
        predictions=[{"id": "1", "prediction_text": "Blue", "no_answer_probability": 0.0}],
        references=[{"id": "1", "answers": {"text": ["blue"], "answer_start": [0]}}],
    )
    assert canonical["exact"] == 100.0
    summ = metrics.compute_for_kind(
        "summarization", predictions=["the cat sat"], references=["the cat was sitting"]
    )
    assert summ["rouge1"] == pytest.approx(4 / 7)
    gen = metrics.compute_for_kind("generation", ref_nll_sum=[3.0], ref_tokens=[3])
    assert gen["perplexity"] == pytest.approx(math.e)
    with pytest.raises(ValueError, match="ref_nll_sum"):
        metrics.compute_for_kind("generation", predictions=["x"], references=[["x"]])
    with pytest.raises(ValueError, match="kind"):
        metrics.compute_for_kind("translation", predictions=["x"], references=[["x"]])
    assert set(metrics.METRIC_FOR_KIND) == {"generation", "qa", "summarization"}
