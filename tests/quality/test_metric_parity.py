"""Parity of the project's metrics with the reference implementations on real public samples.

ROUGE: the project's `rouge` metric (through `evaluate.load(<path>)`) and the per-request scores
against google-research's `rouge_score` called directly, on XSum and CNN/DailyMail references
with lead-sentence candidates. SQuAD v2: against a transcription of the official v2.0
evaluation script (evaluate's `squad_v2` cannot be loaded offline: evaluate ships no scripts).
The samples are read from the shared folder next to the project and skip cleanly without it.
"""

from __future__ import annotations

import collections
import json
import os
import re
import string
from pathlib import Path
from typing import Any

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("HF_EVALUATE_OFFLINE", "1")

import pytest

from llm_energy.quality import metrics
from llm_energy.quality import squad as sq
from llm_energy.quality import textmetrics as tm

SHARED = Path(__file__).resolve().parents[3] / "shared" / "datasets"
TOL = 1e-9
ROUGE_TYPES = ["rouge1", "rouge2", "rougeL", "rougeLsum"]


def _shared(rel: str) -> Path:
    path = SHARED / rel
    if not path.is_file():
        pytest.skip(f"shared public dataset sample not found at {path}")
    return path


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def _sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s]


@pytest.fixture(scope="module")
def summaries() -> list[tuple[str, str]]:
    """(candidate, reference) pairs: XSum lead-1 / lead-3 vs the one-sentence summary, and
    CNN/DailyMail lead-1 / lead-3 (one sentence per line, for rougeLsum) vs the highlights."""
    pairs = []
    for row in _jsonl(_shared("xsum/sample.jsonl")):
        lines = [s for s in row["document"].split("\n") if s.strip()]
        pairs += [(lines[0], row["summary"]), ("\n".join(lines[:3]), row["summary"])]
    for row in _jsonl(_shared("cnn_dailymail/sample.jsonl")):
        sents = _sentences(row["article"])
        pairs += [(sents[0], row["highlights"]), ("\n".join(sents[:3]), row["highlights"])]
    return pairs


@pytest.fixture(scope="module")
def rouge_scorer() -> Any:
    return pytest.importorskip("rouge_score.rouge_scorer")


@pytest.fixture(scope="module")
def rouge_metric() -> Any:
    pytest.importorskip("evaluate")
    return metrics.load("rouge")


def _max_diff(a: list[float], b: list[float]) -> float:
    assert len(a) == len(b)
    return max(abs(x - y) for x, y in zip(a, b, strict=True))


# --- ROUGE ------------------------------------------------------------------------------------


@pytest.mark.parametrize("use_stemmer", [False, True])
def test_rouge_metric_matches_rouge_score(
    summaries: list[tuple[str, str]], rouge_scorer: Any, rouge_metric: Any, use_stemmer: bool
) -> None:
    scorer = rouge_scorer.RougeScorer(ROUGE_TYPES, use_stemmer=use_stemmer)
    direct = [scorer.score(ref, cand) for cand, ref in summaries]
    preds, refs = [c for c, _ in summaries], [r for _, r in summaries]
    per_item = rouge_metric.compute(
        predictions=preds, references=refs, use_stemmer=use_stemmer, use_aggregator=False
    )
    mean = rouge_metric.compute(predictions=preds, references=refs, use_stemmer=use_stemmer)
    assert set(per_item) == set(mean) == set(ROUGE_TYPES)  # evaluate's default types
    for t in ROUGE_TYPES:
        want = [d[t].fmeasure for d in direct]
        assert _max_diff(per_item[t], want) <= TOL, t
        assert mean[t] == pytest.approx(sum(want) / len(want), abs=TOL), t
    # the pairs are not trivial: partial overlaps, and multi-line (Lsum) differs from L
    assert 0.05 < mean["rouge1"] < 0.6
    assert any(abs(d["rougeL"].fmeasure - d["rougeLsum"].fmeasure) > 0.01 for d in direct)


@pytest.mark.parametrize("use_stemmer", [False, True])
def test_rouge_precision_recall_and_best_reference_match(
    summaries: list[tuple[str, str]], rouge_scorer: Any, use_stemmer: bool
) -> None:
    # precision and recall separately, so a swapped prediction/target would show
    scorer = rouge_scorer.RougeScorer(ROUGE_TYPES, use_stemmer=use_stemmer)
    for cand, ref in summaries:
        ours = tm.rouge_scores(cand, ref, rouge_types=ROUGE_TYPES, use_stemmer=use_stemmer)
        theirs = scorer.score(ref, cand)
        for t in ROUGE_TYPES:
            assert tuple(ours[t]) == pytest.approx(tuple(theirs[t]), abs=TOL), (t, cand)
    # several references: rouge_score's score_multi (best F-measure per type)
    refs = [r for _, r in summaries]
    for i, (cand, ref) in enumerate(summaries):
        others = [refs[(i + 7) % len(refs)], ref, refs[(i + 3) % len(refs)]]
        ours = tm.rouge_scores(cand, others, rouge_types=ROUGE_TYPES, use_stemmer=use_stemmer)
        theirs = scorer.score_multi(others, cand)
        for t in ROUGE_TYPES:
            assert tuple(ours[t]) == pytest.approx(tuple(theirs[t]), abs=TOL), (t, cand)


def test_per_request_rouge_columns_match_rouge_score(
    summaries: list[tuple[str, str]], rouge_scorer: Any
) -> None:
    # what the aggregate stage writes per request (quality_rouge1/2/L)
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"])
    for cand, ref in summaries:
        ours = tm.score_item("summarization", cand, [ref], clean=False)
        theirs = scorer.score(ref, cand)
        assert list(ours) == ["quality_rouge1", "quality_rouge2", "quality_rougeL"]
        for t in ("rouge1", "rouge2", "rougeL"):
            assert abs(ours[f"quality_{t}"] - theirs[t].fmeasure) <= TOL


# --- SQuAD v2: the official v2.0 evaluation script, transcribed -----------------------------


def _ref_normalize(s: str) -> str:
    s = s.lower()
    s = "".join(ch for ch in s if ch not in set(string.punctuation))
    s = re.sub(re.compile(r"\b(a|an|the)\b", re.UNICODE), " ", s)
    return " ".join(s.split())


def _ref_tokens(s: str) -> list[str]:
    return _ref_normalize(s).split() if s else []


def _ref_f1(gold: str, pred: str) -> float:
    g, p = _ref_tokens(gold), _ref_tokens(pred)
    same = sum((collections.Counter(g) & collections.Counter(p)).values())
    if not g or not p:
        return float(g == p)
    if same == 0:
        return 0.0
    precision, recall = same / len(p), same / len(g)
    return 2 * precision * recall / (precision + recall)


def _ref_squad_v2(
    predictions: list[dict[str, Any]], references: list[dict[str, Any]], thresh: float = 1.0
) -> tuple[dict[str, float], dict[str, float], dict[str, float]]:
    """evaluate's squad_v2 `_compute` with the official script's functions inlined."""
    na_probs = {p["id"]: p["no_answer_probability"] for p in predictions}
    preds = {p["id"]: p["prediction_text"] for p in predictions}
    has_ans = {r["id"]: bool(r["answers"]["text"]) for r in references}
    exact_raw, f1_raw = {}, {}
    for r in references:
        gold = [t for t in r["answers"]["text"] if _ref_normalize(t)] or [""]
        pred = preds[r["id"]]
        exact_raw[r["id"]] = max(float(_ref_normalize(a) == _ref_normalize(pred)) for a in gold)
        f1_raw[r["id"]] = max(_ref_f1(a, pred) for a in gold)

    def threshold(scores: dict[str, float]) -> dict[str, float]:
        return {q: float(not has_ans[q]) if na_probs[q] > thresh else s for q, s in scores.items()}

    def block(exact: dict[str, float], f1: dict[str, float], qids: list[str]) -> dict[str, float]:
        total = len(qids)
        return {
            "exact": 100.0 * sum(exact[q] for q in qids) / total,
            "f1": 100.0 * sum(f1[q] for q in qids) / total,
            "total": total,
        }

    def best(scores: dict[str, float]) -> tuple[float, float]:
        cur = best_score = sum(1 for q in has_ans if not has_ans[q])
        best_thresh = 0.0
        for q in sorted(na_probs, key=lambda k: na_probs[k]):
            if q not in scores:
                continue
            cur += scores[q] if has_ans[q] else (-1 if preds[q] else 0)
            if cur > best_score:
                best_score, best_thresh = cur, na_probs[q]
        return 100.0 * best_score / len(scores), best_thresh

    exact_t, f1_t = threshold(exact_raw), threshold(f1_raw)
    out = block(exact_t, f1_t, list(exact_t))
    for prefix, want in (("HasAns", True), ("NoAns", False)):
        qids = [q for q, h in has_ans.items() if h == want]
        if qids:
            out |= {f"{prefix}_{k}": v for k, v in block(exact_t, f1_t, qids).items()}
    out["best_exact"], out["best_exact_thresh"] = best(exact_raw)
    out["best_f1"], out["best_f1_thresh"] = best(f1_raw)
    return out, exact_raw, f1_raw


@pytest.fixture(scope="module")
def squad_case() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The SQuAD v2 sample with right, partial, wrong and no-answer predictions."""
    data = json.loads(_shared("squad_v2/sample.json").read_text(encoding="utf-8"))["data"]
    refs = [{"id": r["id"], "answers": r["answers"]} for r in data]
    golds = [r["answers"]["text"] for r in data]
    answerable = [g[0] for g in golds if g]
    preds = []
    for i, gold in enumerate(golds):
        if gold:
            words = gold[-1].split()
            text = [
                f"The {gold[0].upper()}.",  # right after normalisation
                " ".join(words[: max(1, len(words) // 2)]),  # partial: the first half
                f"{gold[-1]} and more",  # partial: too long
                answerable[(i + 3) % len(answerable)],  # wrong: another question's answer
                "",  # abstains on an answerable question
            ][i % 5]
        else:
            text = ["", "unanswerable", answerable[i % len(answerable)]][i % 3]
        # probabilities exact in float32 (evaluate stores them so), with ties on purpose
        preds.append(
            {"id": data[i]["id"], "prediction_text": text, "no_answer_probability": (i % 6) / 8}
        )
    preds.reverse()  # order differs from the references: matched by id
    return preds, refs


@pytest.mark.parametrize("thresh", [1.0, 0.3])
def test_squad_v2_matches_official_script(
    squad_case: tuple[list[dict[str, Any]], list[dict[str, Any]]], thresh: float
) -> None:
    preds, refs = squad_case
    want, _, _ = _ref_squad_v2(preds, refs, thresh)
    got = sq.squad_v2_records(preds, refs, no_answer_threshold=thresh)
    assert list(got) == list(want)
    assert max(abs(got[k] - want[k]) for k in want) <= TOL
    # a real mix: neither all right nor all wrong, and both kinds of question
    assert 0 < want["exact"] < want["f1"] < 100
    assert (want["HasAns_total"], want["NoAns_total"]) == (8, 6)


def test_squad_v2_metric_script_matches_official_script(
    squad_case: tuple[list[dict[str, Any]], list[dict[str, Any]]],
) -> None:
    pytest.importorskip("evaluate")
    preds, refs = squad_case
    want, _, _ = _ref_squad_v2(preds, refs)
    got = metrics.load("squad_v2").compute(predictions=preds, references=refs)
    assert set(got) == set(want)
    assert max(abs(got[k] - want[k]) for k in want) <= TOL


def test_squad_plain_texts_and_per_request_scores_match_official_script(
    squad_case: tuple[list[dict[str, Any]], list[dict[str, Any]]],
) -> None:
    preds, refs = squad_case
    by_id = {p["id"]: p["prediction_text"] for p in preds}
    texts = [by_id[r["id"]] for r in refs]
    answers = [r["answers"]["text"] for r in refs]
    # the official script without a no-answer probability file: every probability 0
    zero = [{**p, "no_answer_probability": 0.0} for p in preds]
    want, exact_raw, f1_raw = _ref_squad_v2(zero, refs)
    got = sq.squad_v2(texts, answers, no_answer_phrases=())
    assert set(got) == {k for k in want if not k.startswith("best_")}
    assert max(abs(got[k] - want[k]) for k in got) <= TOL
    # per request, as the aggregate stage scores (EM/F1 in [0, 1])
    for r, text in zip(refs, texts, strict=True):
        item = tm.score_item("qa", text, r["answers"]["text"], clean=False, no_answer_phrases=())
        assert item["quality_em"] == exact_raw[r["id"]]
        assert abs(item["quality_f1"] - f1_raw[r["id"]]) <= TOL
