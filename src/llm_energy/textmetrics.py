"""Pure text-quality metrics: ROUGE, SQuAD v2 exact match / F1, perplexity, per-request scores.

One implementation for the aggregate stage, the evaluate metric scripts under
`llm_energy/metrics/*/` (which only delegate here) and the tests. ROUGE is google-research's
`rouge_score` (what evaluate's own `rouge` wraps), so scores match it exactly; SQuAD v2 follows
the official v2.0 evaluation script.

Scales: `score_item` and `rouge` return fractions in [0, 1]; `squad_v2` returns percentages
(0-100) like the official SQuAD v2 script and `evaluate`'s squad_v2, so published numbers compare.
"""

from __future__ import annotations

import functools
import math
import re
import string
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

KINDS: tuple[str, ...] = ("generation", "qa", "summarization")

# Per-request quality columns written into the aggregate tables, by task kind.
QUALITY_COLUMNS: dict[str, tuple[str, ...]] = {
    "qa": ("quality_em", "quality_f1"),
    "summarization": ("quality_rouge1", "quality_rouge2", "quality_rougeL"),
    "generation": (),  # perplexity is a corpus metric, see `perplexity`
}


# --------------------------------------------------------------------------------------------
# Prediction clean-up
# --------------------------------------------------------------------------------------------

# Chat models like to label their answer; the label is not part of the answer.
_ANSWER_PREFIX = re.compile(r"^\s*(?:final\s+answer|answer|a)\s*[:\-]\s*", re.IGNORECASE)
_SUMMARY_PREFIX = re.compile(r"^\s*(?:one-sentence\s+)?summary\s*[:\-]\s*", re.IGNORECASE)
_QUOTES = "\"'`“”‘’"


def clean_prediction(kind: str, text: str | None) -> str:
    """Turn raw generated text into the string that is scored.

    qa: first non-empty line, without an "Answer:" label or wrapping quotes (the SQuAD
    normalisation removes the rest of the punctuation). summarization: stripped, without a
    "Summary:" label; newlines are kept because ROUGE-Lsum splits sentences on them.
    generation: stripped.
    """
    _check_kind(kind)
    if text is None:
        return ""
    text = str(text)
    if kind == "qa":
        lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
        if not lines:
            return ""
        first = _ANSWER_PREFIX.sub("", lines[0], count=1)
        if not first and len(lines) > 1:  # "Answer:\nParis"
            first = lines[1]
        return first.strip().strip(_QUOTES).strip()
    if kind == "summarization":
        return _SUMMARY_PREFIX.sub("", text.strip(), count=1).strip()
    return text.strip()


# --------------------------------------------------------------------------------------------
# ROUGE (google-research rouge_score, the package behind evaluate's own `rouge` metric)
# --------------------------------------------------------------------------------------------

# evaluate's default set; the per-request columns use the first three (see QUALITY_COLUMNS).
ROUGE_TYPES: tuple[str, ...] = ("rouge1", "rouge2", "rougeL", "rougeLsum")
REQUEST_ROUGE_TYPES: tuple[str, ...] = ("rouge1", "rouge2", "rougeL")

Tokenizer = Callable[[str], list[str]]


class RougeScore(Protocol):
    """What rouge_score returns per type (its `scoring.Score` named tuple)."""

    @property
    def precision(self) -> float: ...
    @property
    def recall(self) -> float: ...
    @property
    def fmeasure(self) -> float: ...


def _check_rouge_types(rouge_types: Sequence[str]) -> tuple[str, ...]:
    # rouge_score only complains when it scores, so an empty corpus would hide a typo.
    types = (rouge_types,) if isinstance(rouge_types, str) else tuple(rouge_types)
    bad = [t for t in types if not re.fullmatch(r"rouge(?:[1-9]|L|Lsum)", t)]
    if bad or not types:
        raise ValueError(f"unknown ROUGE type(s) {bad}; use rouge1..rouge9, rougeL or rougeLsum")
    return types


class _CallableTokenizer:
    """Wraps a callable as the object with `.tokenize` that rouge_score expects (as evaluate does)."""

    def __init__(self, func: Tokenizer) -> None:
        self.tokenize = func


@functools.lru_cache(maxsize=16)
def _default_scorer(rouge_types: tuple[str, ...], use_stemmer: bool) -> Any:
    # Imported here: rouge_score pulls in nltk (~1 s), which qa and generation never need.
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(list(rouge_types), use_stemmer=use_stemmer)


def _scorer(rouge_types: tuple[str, ...], use_stemmer: bool, tokenizer: Tokenizer | None) -> Any:
    if tokenizer is None:
        return _default_scorer(rouge_types, use_stemmer)
    from rouge_score import rouge_scorer

    # Like evaluate: a custom tokenizer replaces the default one, so use_stemmer has no effect.
    return rouge_scorer.RougeScorer(list(rouge_types), tokenizer=_CallableTokenizer(tokenizer))


def rouge_scores(
    prediction: str,
    references: str | Sequence[str],
    *,
    rouge_types: Sequence[str] = REQUEST_ROUGE_TYPES,
    use_stemmer: bool = False,
    tokenizer: Tokenizer | None = None,
) -> dict[str, RougeScore]:
    """rouge_score's Score (precision, recall, fmeasure) per type for one prediction.

    Tokenisation and stemming are rouge_score's defaults (lowercase, non-[a-z0-9] runs split,
    NLTK Porter stemming of tokens longer than 3 characters with `use_stemmer`); rougeLsum splits
    sentences on newlines. With several references each type keeps the best F-measure
    (`score_multi`); with none every score is 0.
    """
    types = _check_rouge_types(rouge_types)
    scorer = _scorer(types, use_stemmer, tokenizer)
    if isinstance(references, str):
        return dict(scorer.score(references, prediction))
    refs = list(references)
    if not refs:  # score_multi cannot take an empty list (np.argmax of nothing)
        from rouge_score import scoring

        return dict.fromkeys(types, scoring.Score(precision=0.0, recall=0.0, fmeasure=0.0))
    return dict(scorer.score_multi(refs, prediction))


def rouge(
    predictions: Sequence[str],
    references: Sequence[str | Sequence[str]],
    *,
    rouge_types: Sequence[str] | None = None,
    use_stemmer: bool = False,
    use_aggregator: bool = True,
    tokenizer: Tokenizer | None = None,
) -> dict[str, float | list[float]]:
    """Corpus ROUGE F-measures with evaluate's `rouge` options (default types: ROUGE_TYPES).

    use_aggregator=True gives the plain mean over items; evaluate reports the median of a
    bootstrap of means instead, which is unseeded, so its numbers move between runs.
    use_aggregator=False gives one list of per-item F-measures per type.
    """
    types = _check_rouge_types(ROUGE_TYPES if rouge_types is None else rouge_types)
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    per_item = [
        rouge_scores(p, r, rouge_types=types, use_stemmer=use_stemmer, tokenizer=tokenizer)
        for p, r in zip(predictions, references, strict=True)
    ]
    lists = {t: [float(s[t].fmeasure) for s in per_item] for t in types}
    if not use_aggregator:
        return dict(lists)
    return {t: (math.fsum(v) / len(v) if v else math.nan) for t, v in lists.items()}


# --------------------------------------------------------------------------------------------
# SQuAD v2 exact match / F1 (official evaluation script semantics)
# --------------------------------------------------------------------------------------------

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
    """(exact match, F1) in [0, 1] of one prediction against its gold answers.

    Gold answers that normalise to "" are dropped; none left means unanswerable, where the
    only correct prediction is "" (or a no-answer phrase).
    """
    gold = [a for a in answers if normalize_answer(a)] or [""]
    pred = "" if is_no_answer(prediction, no_answer_phrases) else prediction
    return (
        max(squad_exact(a, pred) for a in gold),
        max(squad_f1(a, pred) for a in gold),
    )


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
    """Corpus SQuAD v2 scores in percent, keyed and computed like the official v2.0 script.

    exact, f1, total, HasAns_/NoAns_ breakdowns (only where such questions exist; a question
    with no gold answers at all is NoAns). A prediction whose no-answer probability exceeds
    `no_answer_threshold` counts as "no answer". With `no_answer_probabilities`, also
    best_exact/best_f1 and their thresholds (the official script's --na-prob-file output).
    Predictions containing a no-answer phrase count as ""; `no_answer_phrases=()` is strict.
    """
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
            scores = [s[i] for s in raw]
            out[f"best_{key}"], out[f"best_{key}_thresh"] = _best_threshold(
                scores, has_ans, answered, probs
            )
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
    """`squad_v2` on evaluate's canonical input, matched by id.

    predictions: {"id", "prediction_text", "no_answer_probability"}; references: {"id",
    "answers": {"text": [...], "answer_start": [...]}}. Predictions for unknown ids are ignored
    (as officially). No phrase mapping by default, so the numbers are evaluate's.
    """
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


# --------------------------------------------------------------------------------------------
# Perplexity from per-request teacher-forced NLL
# --------------------------------------------------------------------------------------------


def perplexity(
    nll_sums: Iterable[float | None], token_counts: Iterable[int | None]
) -> dict[str, float]:
    """Token-weighted corpus perplexity exp(Σ nll / Σ tokens) from per-item sums in nats.

    Items with a missing value (failed requests) or zero tokens are left out and counted in
    `n_skipped`; with nothing left, perplexity and mean_nll are NaN.
    """
    nll_list, tok_list = list(nll_sums), list(token_counts)
    if len(nll_list) != len(tok_list):
        raise ValueError(f"{len(nll_list)} NLL sums but {len(tok_list)} token counts")
    total_nll, total_tokens, n_items, n_skipped = 0.0, 0, 0, 0
    for nll, tokens in zip(nll_list, tok_list, strict=True):
        if nll is None or tokens is None or not math.isfinite(float(nll)) or int(tokens) == 0:
            n_skipped += 1
            continue
        if float(nll) < 0 or int(tokens) < 0:
            raise ValueError(f"negative NLL sum ({nll}) or token count ({tokens})")
        total_nll += float(nll)
        total_tokens += int(tokens)
        n_items += 1
    mean_nll = total_nll / total_tokens if total_tokens else math.nan
    return {
        "perplexity": math.exp(mean_nll) if total_tokens else math.nan,
        "mean_nll": mean_nll,
        "n_items": n_items,
        "n_tokens": total_tokens,
        "n_skipped": n_skipped,
    }


# --------------------------------------------------------------------------------------------
# Per-request scores
# --------------------------------------------------------------------------------------------


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown task kind {kind!r}; expected one of {', '.join(KINDS)}")


def score_item(
    kind: str,
    prediction: str | None,
    references: Sequence[str],
    *,
    clean: bool = True,
    no_answer_phrases: Iterable[str] = DEFAULT_NO_ANSWER_PHRASES,
    use_stemmer: bool = False,
) -> dict[str, float]:
    """Quality scores of one request, keyed by the column names in QUALITY_COLUMNS (0-1 scale).

    qa: quality_em, quality_f1 (SQuAD v2, [] references = unanswerable); summarization:
    quality_rouge1/2/L F-measures (best reference); generation: {} (see `perplexity`).
    """
    _check_kind(kind)
    text = clean_prediction(kind, prediction) if clean else (prediction or "")
    refs = [references] if isinstance(references, str) else list(references)
    if kind == "qa":
        em, f1 = squad_item_scores(text, refs, no_answer_phrases=no_answer_phrases)
        return {"quality_em": em, "quality_f1": f1}
    if kind == "summarization":
        scores = rouge_scores(text, refs, rouge_types=REQUEST_ROUGE_TYPES, use_stemmer=use_stemmer)
        return {f"quality_{t}": float(s.fmeasure) for t, s in scores.items()}
    return {}
