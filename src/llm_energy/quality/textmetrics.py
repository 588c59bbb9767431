"""Pure text-quality metrics: ROUGE (google-research's `rouge_score`, as evaluate's `rouge`),
SQuAD v2 EM / F1 (the official v2.0 script's rules, in percent), perplexity, per-request scores."""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

from llm_energy.quality.squad import DEFAULT_NO_ANSWER_PHRASES, squad_item_scores

KINDS: tuple[str, ...] = ("generation", "qa", "summarization")

# Per-request quality columns written into the aggregate tables, by task kind.
QUALITY_COLUMNS: dict[str, tuple[str, ...]] = {
    "qa": ("quality_em", "quality_f1"),
    "summarization": ("quality_rouge1", "quality_rouge2", "quality_rougeL"),
    "generation": (),  # perplexity is a corpus metric, see `perplexity`
}


# Chat models like to label their answer; the label is not part of the answer.
_ANSWER_PREFIX = re.compile(r"^\s*(?:final\s+answer|answer|a)\s*[:\-]\s*", re.IGNORECASE)
_SUMMARY_PREFIX = re.compile(r"^\s*(?:one-sentence\s+)?summary\s*[:\-]\s*", re.IGNORECASE)
_QUOTES = "\"'`“”‘’"


def clean_prediction(kind: str, text: str | None) -> str:
    """Raw generated text as scored: qa, its first non-empty line without an "Answer:" label or
    wrapping quotes; summarization, without a "Summary:" label (newlines kept: ROUGE-Lsum splits
    sentences on them); otherwise stripped."""
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
    """rouge_score's Score per type for one prediction, with its default tokenisation; with
    several references each type keeps the best F-measure, with none every score is 0."""
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
    """Corpus ROUGE F-measures with evaluate's `rouge` options. use_aggregator=True gives the
    plain mean (evaluate's unseeded bootstrap median moves between runs); False, per-item lists."""
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


def perplexity(
    nll_sums: Iterable[float | None], token_counts: Iterable[int | None]
) -> dict[str, float]:
    """Token-weighted corpus perplexity exp(Σ nll / Σ tokens) from per-item sums in nats; items
    missing a value or with zero tokens are counted in `n_skipped` (none left: NaN)."""
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
    """Request scores by QUALITY_COLUMNS (0-1; [] references: unanswerable); none for generation."""
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
