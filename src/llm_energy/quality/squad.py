"""SQuAD v2 exact match / F1, following the official v2.0 evaluation script (percentages, like
it and `evaluate`'s squad_v2); per-item scores in [0, 1]. Re-exported by `quality.textmetrics`."""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

# Phrases a model may use instead of the empty answer; after normalisation they count as "".
DEFAULT_NO_ANSWER_PHRASES: tuple[str, ...] = (
    "unanswerable",
    "no answer",
    "not answerable",
    "cannot be answered",
    "can't be answered",
    "cannot answer",
    "not in the context",
    "not in the text",
    "not in the passage",
    "not mentioned",
    "not stated",
    "not provided",
    "not specified",
    "no information",
    "i don't know",
    "i do not know",
)

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCT = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """Official SQuAD normalisation: lowercase, drop punctuation and articles, squeeze spaces."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def answer_tokens(text: str) -> list[str]:
    return normalize_answer(text).split() if text else []


def is_no_answer(prediction: str, phrases: Iterable[str] = DEFAULT_NO_ANSWER_PHRASES) -> bool:
    """True if the prediction is empty or contains a no-answer phrase as whole words."""
    norm = normalize_answer(prediction)
    if not norm:
        return True
    padded = f" {norm} "
    return any(f" {p} " in padded for p in map(normalize_answer, phrases) if p)


def squad_exact(gold: str, prediction: str) -> float:
    return float(normalize_answer(gold) == normalize_answer(prediction))


def squad_f1(gold: str, prediction: str) -> float:
    """Token-level F1 after normalisation; two empty answers score 1, one empty scores 0."""
    gold_toks, pred_toks = answer_tokens(gold), answer_tokens(prediction)
    if not gold_toks or not pred_toks:
        return float(gold_toks == pred_toks)
    same = sum((Counter(gold_toks) & Counter(pred_toks)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred_toks), same / len(gold_toks)
    return 2 * precision * recall / (precision + recall)


def squad_item_scores(
    prediction: str,
    answers: Sequence[str],
    *,
    no_answer_phrases: Iterable[str] = DEFAULT_NO_ANSWER_PHRASES,
) -> tuple[float, float]:
    """(exact match, F1) in [0, 1] of one prediction against its gold answers; with none left
    after normalising, only "" (or a no-answer phrase) is correct."""
    gold = [a for a in answers if normalize_answer(a)] or [""]
    pred = "" if is_no_answer(prediction, no_answer_phrases) else prediction
    return (max(squad_exact(a, pred) for a in gold), max(squad_f1(a, pred) for a in gold))


def _eval_block(exact: list[float], f1: list[float], prefix: str = "") -> dict[str, float]:
    total = len(exact)
    return {
        f"{prefix}exact": 100.0 * sum(exact) / total,
        f"{prefix}f1": 100.0 * sum(f1) / total,
        f"{prefix}total": total,
    }


def _best_threshold(
    scores: Sequence[float],
    has_ans: Sequence[bool],
    answered: Sequence[bool],
    probs: Sequence[float],
) -> tuple[float, float]:
    # The official find_best_thresh: start with every question answered "no answer", then
    # admit answers in order of rising no-answer probability (a stable sort, as there).
    cur = best = float(sum(not h for h in has_ans))
    best_thresh = 0.0
    for i in sorted(range(len(probs)), key=lambda k: probs[k]):
        cur += scores[i] if has_ans[i] else (-1.0 if answered[i] else 0.0)
        if cur > best:
            best, best_thresh = cur, probs[i]
    return 100.0 * best / len(scores), best_thresh


def squad_v2(
    predictions: Sequence[str],
    references: Sequence[Sequence[str]],
    *,
    no_answer_phrases: Iterable[str] = DEFAULT_NO_ANSWER_PHRASES,
    no_answer_probabilities: Sequence[float] | None = None,
    no_answer_threshold: float = 1.0,
) -> dict[str, float]:
    """Corpus SQuAD v2 scores in percent, keyed and computed like the official v2.0 script
    (with `no_answer_probabilities`, also its --na-prob-file best_exact/best_f1). Predictions
    containing a no-answer phrase count as ""; `no_answer_phrases=()` is strict."""
    n = len(predictions)
    if len(references) != n:
        raise ValueError(f"{n} predictions but {len(references)} references")
    if not predictions:
        raise ValueError("squad_v2 needs at least one prediction")
    probs = [0.0] * n if no_answer_probabilities is None else list(no_answer_probabilities)
    if len(probs) != n:
        raise ValueError(f"{n} predictions but {len(probs)} no-answer probabilities")
    phrases = tuple(no_answer_phrases)
    refs = [[r] if isinstance(r, str) else list(r) for r in references]
    # With phrases off a prediction stays as written, as in the official script.
    preds = [("" if phrases and is_no_answer(p, phrases) else p) for p in predictions]
    raw = [squad_item_scores(p, r, no_answer_phrases=()) for p, r in zip(preds, refs, strict=True)]
    has_ans = [bool(r) for r in refs]  # official: any gold answer, even one normalising to ""
    # apply_no_ans_threshold: a confident "no answer" scores 1 exactly when there is none.
    scored = [
        (float(not h),) * 2 if p > no_answer_threshold else s
        for s, h, p in zip(raw, has_ans, probs, strict=True)
    ]
    out = _eval_block([s[0] for s in scored], [s[1] for s in scored])
    for prefix, want in (("HasAns_", True), ("NoAns_", False)):
        group = [s for s, h in zip(scored, has_ans, strict=True) if h == want]
        if group:  # the official script omits a breakdown with no questions
            out |= _eval_block([s[0] for s in group], [s[1] for s in group], prefix)
    if no_answer_probabilities is not None:
        answered = [bool(p) for p in preds]
        for i, key in enumerate(("exact", "f1")):
            best = _best_threshold([s[i] for s in raw], has_ans, answered, probs)
            out[f"best_{key}"], out[f"best_{key}_thresh"] = best
    return out


def _answer_texts(answers: Any) -> list[str]:
    # evaluate/datasets give {"text": [...], "answer_start": [...]}; SQuAD JSON a list of dicts.
    if isinstance(answers, Mapping):
        return [str(t) for t in answers.get("text", [])]
    return [str(a["text"]) for a in answers]


def squad_v2_records(
    predictions: Sequence[Mapping[str, Any]],
    references: Sequence[Mapping[str, Any]],
    *,
    no_answer_threshold: float = 1.0,
    no_answer_phrases: Iterable[str] = (),
) -> dict[str, float]:
    """`squad_v2` on evaluate's canonical input dicts, matched by id (unknown ids ignored, as
    officially). No phrase mapping by default, so the numbers are evaluate's."""
    by_id = {str(p["id"]): p for p in predictions}
    ids = [str(r["id"]) for r in references]
    if len(set(ids)) != len(ids):
        raise ValueError("squad_v2 references repeat an id")
    missing = [i for i in ids if i not in by_id]
    if missing:
        raise ValueError(f"no prediction for {len(missing)} reference id(s), e.g. {missing[0]!r}")
    answers = {i: _answer_texts(r["answers"]) for i, r in zip(ids, references, strict=True)}
    # Prediction order, as the official tie-break among equal probabilities follows it.
    order = [i for i in by_id if i in answers]
    return squad_v2(
        [str(by_id[i]["prediction_text"]) for i in order],
        [answers[i] for i in order],
        no_answer_phrases=no_answer_phrases,
        no_answer_probabilities=[float(by_id[i]["no_answer_probability"]) for i in order],
        no_answer_threshold=no_answer_threshold,
    )
