"""Pure text metrics against hand-computed values (no model, no network)."""

from __future__ import annotations

import math
import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"

import pytest

from llm_energy.quality import squad as sq
from llm_energy.quality import textmetrics as tm

# --- ROUGE ------------------------------------------------------------------------------------


def test_rouge_tokenisation_is_rouge_score_default() -> None:
    # lowercase, every non-[a-z0-9] run splits: "state-of-the-art" is four tokens, and
    # non-ASCII letters are separators ("café" -> "caf")
    one = tm.rouge_scores("State-of-the-art, 3.5%", "state of the art 3 5", rouge_types=["rouge1"])
    assert one["rouge1"].fmeasure == 1.0
    assert tm.rouge_scores("café", "caf", rouge_types=["rouge1"])["rouge1"].fmeasure == 1.0


def test_rouge1_hand_computed() -> None:
    # pred {the, cat, sat} vs ref {the, cat, was, sitting}: 2 hits, P=2/3, R=2/4, F=4/7
    s = tm.rouge_scores("the cat sat", "the cat was sitting", rouge_types=["rouge1"])["rouge1"]
    assert s.precision == pytest.approx(2 / 3)
    assert s.recall == pytest.approx(1 / 2)
    assert s.fmeasure == pytest.approx(4 / 7)


def test_rouge2_hand_computed() -> None:
    # bigrams pred {the cat, cat sat}, ref {the cat, cat was, was sitting}: 1 hit -> F = 2/5
    s = tm.rouge_scores("the cat sat", "the cat was sitting", rouge_types=["rouge2"])["rouge2"]
    assert (s.precision, s.recall) == pytest.approx((1 / 2, 1 / 3))
    assert s.fmeasure == pytest.approx(2 / 5)


def test_rouge_n_clips_repeated_ngrams() -> None:
    # "the the the" vs "the cat": only one "the" can match -> P=1/3, R=1/2, F=2/5
    s = tm.rouge_scores("the the the", "the cat", rouge_types=["rouge1"])["rouge1"]
    assert s.fmeasure == pytest.approx(2 / 5)


def test_rougeL_uses_longest_common_subsequence() -> None:
    # same unigrams (rouge1 = 1) but LCS("cat the sat", "the cat sat") = 2 -> P=R=F=2/3
    scores = tm.rouge_scores("cat the sat", "the cat sat", rouge_types=["rouge1", "rougeL"])
    assert scores["rouge1"].fmeasure == pytest.approx(1.0)
    assert scores["rougeL"].fmeasure == pytest.approx(2 / 3)


def test_rougeLsum_is_summary_level_union_lcs() -> None:
    # pred sentences [cat sat], [the cat]; ref [the cat sat]. Union LCS covers the, cat, sat
    # -> hits 3, P = 3/4 (4 predicted tokens), R = 3/3, F = 6/7. Flat rougeL: LCS 2 -> F = 4/7.
    scores = tm.rouge_scores("cat sat\nthe cat", "the cat sat", rouge_types=["rougeL", "rougeLsum"])
    assert scores["rougeLsum"].precision == pytest.approx(3 / 4)
    assert scores["rougeLsum"].recall == pytest.approx(1.0)
    assert scores["rougeLsum"].fmeasure == pytest.approx(6 / 7)
    assert scores["rougeL"].fmeasure == pytest.approx(4 / 7)


def test_rouge_multiple_references_take_the_best_per_type() -> None:
    scores = tm.rouge_scores("the cat sat", ["a dog ran", "the cat was sitting"])
    assert scores["rouge1"].fmeasure == pytest.approx(4 / 7)
    assert scores["rouge2"].fmeasure == pytest.approx(2 / 5)
    assert tm.rouge_scores("the cat sat", ["x", "the cat sat"])["rougeL"].fmeasure == 1.0


def test_rouge_empty_inputs_score_zero() -> None:
    for pred, refs in [("", ["the cat"]), ("the cat", [""]), ("the cat", [])]:
        assert all(s.fmeasure == 0.0 for s in tm.rouge_scores(pred, refs).values())


def test_rouge_stemming_is_opt_in_and_nltk_porter() -> None:
    pred, ref = "the cats are running", "the cat is run"
    plain = tm.rouge_scores(pred, ref, rouge_types=["rouge1"])["rouge1"].fmeasure
    stemmed = tm.rouge_scores(pred, ref, rouge_types=["rouge1"], use_stemmer=True)
    assert plain == pytest.approx(1 / 4)  # only "the"
    assert stemmed["rouge1"].fmeasure == pytest.approx(3 / 4)  # the, cat, run
    # NLTK's Porter (rouge_score's) stems "dying" to "die"; the original 1980 algorithm that
    # used to stand in without NLTK gave "dy"
    s = tm.rouge_scores("dying", "die", rouge_types=["rouge1"], use_stemmer=True)
    assert s["rouge1"].fmeasure == 1.0


def test_rouge_custom_tokenizer_replaces_the_default() -> None:
    # whitespace tokens: "sat." != "sat" and case is kept, as with evaluate's tokenizer=...
    s = tm.rouge_scores("The cat sat.", "the cat sat", rouge_types=["rouge1"], tokenizer=str.split)
    assert s["rouge1"].fmeasure == pytest.approx(1 / 3)


def test_rouge_corpus_mean_and_lists() -> None:
    preds = ["the cat sat", "hello there"]
    refs = [["the cat was sitting"], "hello there"]
    agg = tm.rouge(preds, refs)
    assert list(agg) == ["rouge1", "rouge2", "rougeL", "rougeLsum"]  # evaluate's default types
    assert agg["rouge1"] == pytest.approx((4 / 7 + 1) / 2)
    lists = tm.rouge(preds, refs, rouge_types=["rouge2"], use_aggregator=False)
    assert lists == {"rouge2": pytest.approx([2 / 5, 1.0])}
    with pytest.raises(ValueError, match="predictions"):
        tm.rouge(preds, refs[:1])
    with pytest.raises(ValueError, match="ROUGE type"):
        tm.rouge(preds, refs, rouge_types=["rougeX"])


# --- SQuAD v2 ---------------------------------------------------------------------------------


def test_normalize_answer_official_rules() -> None:
    assert sq.normalize_answer("An apple,  the PEAR.") == "apple pear"
    assert sq.normalize_answer("The Eiffel Tower!") == "eiffel tower"
    assert sq.normalize_answer("theatre") == "theatre"  # articles only as whole words


def test_exact_match_after_normalisation() -> None:
    assert sq.squad_exact("Eiffel Tower", "the Eiffel tower.") == 1.0
    assert sq.squad_exact("Eiffel Tower", "Eiffel") == 0.0


def test_f1_partial_overlap() -> None:
    # gold -> [wooden, jetty, in, village, of, ormsby] (6), pred -> [village, of, ormsby] (3)
    # P = 3/3, R = 3/6, F1 = 2/3
    gold = "the wooden jetty in the village of Ormsby"
    assert sq.squad_f1(gold, "The village of Ormsby") == pytest.approx(2 / 3)
    # gold [late, september], pred [in, late, may]: 1 common -> P=1/3, R=1/2, F1=2/5
    assert sq.squad_f1("late September", "in late May") == pytest.approx(2 / 5)
    assert sq.squad_f1("late September", "1962") == 0.0


def test_item_scores_take_the_best_gold_answer() -> None:
    em, f1 = tm.squad_item_scores("September", ["late September", "September"])
    assert (em, f1) == (1.0, 1.0)
    em, f1 = tm.squad_item_scores("in September", ["late September"])
    assert em == 0.0
    assert f1 == pytest.approx(1 / 2)  # P = 1/2, R = 1/2


@pytest.mark.parametrize(
    "prediction",
    ["", "  ", "Unanswerable.", "No answer", "It is not mentioned in the context.", "I don't know"],
)
def test_unanswerable_accepts_empty_or_no_answer_phrase(prediction: str) -> None:
    assert tm.squad_item_scores(prediction, []) == (1.0, 1.0)


def test_unanswerable_rules() -> None:
    assert tm.squad_item_scores("Paris", []) == (0.0, 0.0)
    # a no-answer phrase to an answerable question is wrong
    assert tm.squad_item_scores("unanswerable", ["1962"]) == (0.0, 0.0)
    # the phrase mapping can be turned off
    assert tm.squad_item_scores("unanswerable", [], no_answer_phrases=()) == (0.0, 0.0)
    # gold answers that normalise to "" count as unanswerable (official script)
    assert tm.squad_item_scores("", ["the", "."]) == (1.0, 1.0)
    # phrases match whole words only
    assert not sq.is_no_answer("the unanswerableness of it")


def test_squad_v2_corpus_with_breakdowns() -> None:
    preds = ["the Eiffel Tower", "village of Ormsby", "unanswerable", "Paris"]
    refs = [["Eiffel Tower"], ["the wooden jetty in the village of Ormsby"], [], []]
    out = sq.squad_v2(preds, refs)
    assert out["total"] == 4
    assert out["exact"] == pytest.approx(100 * (1 + 0 + 1 + 0) / 4)
    assert out["f1"] == pytest.approx(100 * (1 + 2 / 3 + 1 + 0) / 4)
    assert (out["HasAns_total"], out["NoAns_total"]) == (2, 2)
    assert out["HasAns_exact"] == pytest.approx(50.0)
    assert out["HasAns_f1"] == pytest.approx(100 * (1 + 2 / 3) / 2)
    assert out["NoAns_exact"] == out["NoAns_f1"] == pytest.approx(50.0)
    only_has = sq.squad_v2(["1962"], [["1962"]])
    assert "NoAns_exact" not in only_has
    with pytest.raises(ValueError):
        sq.squad_v2([], [])


def test_squad_v2_records_canonical_input() -> None:
    # evaluate's docstring example, key for key
    preds = [{"prediction_text": "1976", "id": "q1", "no_answer_probability": 0.0}]
    refs = [{"answers": {"answer_start": [97], "text": ["1976"]}, "id": "q1"}]
    assert sq.squad_v2_records(preds, refs) == {
        "exact": 100.0,
        "f1": 100.0,
        "total": 1,
        "HasAns_exact": 100.0,
        "HasAns_f1": 100.0,
        "HasAns_total": 1,
        "best_exact": 100.0,
        "best_exact_thresh": 0.0,
        "best_f1": 100.0,
        "best_f1_thresh": 0.0,
    }
    # matched by id, not position; answers also as the SQuAD JSON list of dicts
    preds = [
        {"id": "b", "prediction_text": "", "no_answer_probability": 0.9},
        {"id": "a", "prediction_text": "late May", "no_answer_probability": 0.1},
    ]
    refs = [
        {"id": "a", "answers": [{"text": "late September", "answer_start": 0}]},
        {"id": "b", "answers": {"text": [], "answer_start": []}},
    ]
    out = sq.squad_v2_records(preds, refs)
    assert (out["exact"], out["f1"]) == pytest.approx((50.0, 100 * (0.5 + 1) / 2))
    assert (out["HasAns_total"], out["NoAns_total"]) == (1, 1)
    with pytest.raises(ValueError, match="no prediction"):
        sq.squad_v2_records(preds[:1], refs)
    with pytest.raises(ValueError, match="repeat"):
        sq.squad_v2_records(preds, [refs[0], refs[0]])


def test_squad_v2_no_answer_threshold_and_best_threshold() -> None:
    # official semantics: probability > threshold -> "no answer" (1 if unanswerable, else 0)
    preds, refs, probs = ["Paris", "1962", "Rome"], [[], ["1962"], ["Rome"]], [0.8, 0.2, 0.6]
    kw = {"no_answer_phrases": (), "no_answer_probabilities": probs}
    assert sq.squad_v2(preds, refs, **kw)["exact"] == pytest.approx(200 / 3)
    out = sq.squad_v2(preds, refs, no_answer_threshold=0.5, **kw)
    assert out["exact"] == pytest.approx(200 / 3)  # Paris -> right, Rome -> wrong
    assert out["NoAns_exact"] == 100.0 and out["HasAns_exact"] == 50.0
    # best threshold: start at 1 (all "no answer"), admit 1962 (+1) at 0.2 and Rome (+1) at
    # 0.6, then Paris (-1) at 0.8 -> best 3/3 at 0.6
    assert (out["best_exact"], out["best_exact_thresh"]) == (pytest.approx(100.0), 0.6)
    # no probabilities -> no best_* keys (the official script without --na-prob-file)
    assert "best_exact" not in sq.squad_v2(preds, refs)
    with pytest.raises(ValueError, match="probabilities"):
        sq.squad_v2(preds, refs, no_answer_probabilities=[0.1])


# --- perplexity -------------------------------------------------------------------------------


def test_perplexity_token_weighted() -> None:
    # Σnll = 2 + 4 = 6 nats over 2 + 4 = 6 tokens -> mean 1 nat/token -> ppl = e
    out = tm.perplexity([2.0, 4.0], [2, 4])
    assert out["mean_nll"] == pytest.approx(1.0)
    assert out["perplexity"] == pytest.approx(math.e)
    assert (out["n_items"], out["n_tokens"], out["n_skipped"]) == (2, 6, 0)
    # 5 tokens at probability 1/3 each -> ppl 3
    assert tm.perplexity([5 * math.log(3)], [5])["perplexity"] == pytest.approx(3.0)


def test_perplexity_skips_missing_and_handles_nothing() -> None:
    out = tm.perplexity([2.0, None, float("nan"), 1.0], [2, 3, 4, 0])
    assert (out["n_items"], out["n_skipped"]) == (1, 3)
    assert out["perplexity"] == pytest.approx(math.e)
    empty = tm.perplexity([], [])
    assert math.isnan(empty["perplexity"]) and empty["n_items"] == 0
    with pytest.raises(ValueError):
        tm.perplexity([-1.0], [3])
    with pytest.raises(ValueError):
        tm.perplexity([1.0], [])


# --- per-request scores ------------------------------------------------------------------------


def test_clean_prediction() -> None:
    assert tm.clean_prediction("qa", "  Answer: Blue.\nBecause the text says so.") == "Blue."
    assert tm.clean_prediction("qa", '"1962"') == "1962"
    assert tm.clean_prediction("qa", "Answer:\nEdith Crane") == "Edith Crane"
    assert tm.clean_prediction("qa", "\n\n") == ""
    assert tm.clean_prediction("qa", None) == ""
    assert tm.clean_prediction("summarization", "Summary: A bridge reopened.\n") == (
        "A bridge reopened."
    )
    assert tm.clean_prediction("generation", "  and then it rained. ") == "and then it rained."
    with pytest.raises(ValueError, match="kind"):
        tm.clean_prediction("translation", "x")


def test_score_item_per_kind() -> None:
    qa = tm.score_item(
        "qa", "Answer: the village of Ormsby", ["the wooden jetty in the village of Ormsby"]
    )
    assert qa == {"quality_em": 0.0, "quality_f1": pytest.approx(2 / 3)}
    assert tm.score_item("qa", "Unanswerable.", []) == {"quality_em": 1.0, "quality_f1": 1.0}
    summ = tm.score_item("summarization", "the cat sat", ["the cat was sitting"])
    assert summ == {
        "quality_rouge1": pytest.approx(4 / 7),
        "quality_rouge2": pytest.approx(2 / 5),
        "quality_rougeL": pytest.approx(4 / 7),
    }
    assert tm.score_item("generation", "anything", ["else"]) == {}
    for kind in tm.KINDS:
        out = tm.score_item(kind, "x", ["x"])
        assert tuple(out) == tm.QUALITY_COLUMNS[kind]
