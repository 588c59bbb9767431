"""Pure text-quality metrics: ROUGE, SQuAD v2 exact match / F1, perplexity, per-request scores.

No third-party dependencies, so the same code runs in the aggregate stage, in the evaluate
metric scripts under `llm_energy/metrics/*/` (which only delegate here) and in tests.

Scales: `score_item` and `rouge` return fractions in [0, 1]; `squad_v2` returns percentages
(0-100) like the official SQuAD v2 script and `evaluate`'s squad_v2, so published numbers compare.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

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
# ROUGE (reimplementation of google-research rouge_score, default settings)
# --------------------------------------------------------------------------------------------

ROUGE_TYPES: tuple[str, ...] = ("rouge1", "rouge2", "rougeL", "rougeLsum")
DEFAULT_ROUGE_TYPES: tuple[str, ...] = ("rouge1", "rouge2", "rougeL")

_NON_ALNUM = re.compile(r"[^a-z0-9]+")
_VALID_TOKEN = re.compile(r"^[a-z0-9]+$")


@dataclass(frozen=True)
class Score:
    precision: float
    recall: float
    fmeasure: float


_ZERO = Score(0.0, 0.0, 0.0)


def _fmeasure(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


def _score(hits: int, n_pred: int, n_ref: int) -> Score:
    if n_pred == 0 or n_ref == 0:
        return _ZERO
    precision, recall = hits / n_pred, hits / n_ref
    return Score(precision, recall, _fmeasure(precision, recall))


def rouge_tokenize(text: str, *, use_stemmer: bool = False) -> list[str]:
    """rouge_score's default tokeniser: lowercase, every non-[a-z0-9] run becomes a space.

    With `use_stemmer`, tokens longer than 3 characters are Porter-stemmed (as rouge_score does).
    """
    tokens = _NON_ALNUM.sub(" ", text.lower()).split()
    if use_stemmer:
        stem = _stemmer()
        tokens = [stem(t) if len(t) > 3 else t for t in tokens]
    return [t for t in tokens if _VALID_TOKEN.match(t)]


def _ngrams(tokens: Sequence[str], n: int) -> Counter[tuple[str, ...]]:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def rouge_n(pred_tokens: Sequence[str], ref_tokens: Sequence[str], n: int) -> Score:
    """ROUGE-N: clipped n-gram overlap; P over the prediction's n-grams, R over the reference's."""
    pred, ref = _ngrams(pred_tokens, n), _ngrams(ref_tokens, n)
    hits = sum((pred & ref).values())
    return _score(hits, sum(pred.values()), sum(ref.values()))


def _lcs_table(a: Sequence[str], b: Sequence[str]) -> list[list[int]]:
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        row, prev, ai = table[i], table[i - 1], a[i - 1]
        for j in range(1, len(b) + 1):
            row[j] = prev[j - 1] + 1 if ai == b[j - 1] else max(prev[j], row[j - 1])
    return table


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence of two token lists."""
    return _lcs_table(a, b)[-1][-1]


def rouge_l(pred_tokens: Sequence[str], ref_tokens: Sequence[str]) -> Score:
    """ROUGE-L (sentence level): LCS / len(prediction), LCS / len(reference)."""
    return _score(lcs_length(pred_tokens, ref_tokens), len(pred_tokens), len(ref_tokens))


def _lcs_indices(ref: Sequence[str], cand: Sequence[str]) -> list[int]:
    # Same tie-breaking as rouge_score's _backtrack_norec, so Lsum matches it exactly.
    table = _lcs_table(ref, cand)
    i, j, out = len(ref), len(cand), []
    while i > 0 and j > 0:
        if ref[i - 1] == cand[j - 1]:
            out.append(i - 1)
            i, j = i - 1, j - 1
        elif table[i][j - 1] > table[i - 1][j]:
            j -= 1
        else:
            i -= 1
    return out[::-1]


def rouge_lsum(pred_sents: Sequence[Sequence[str]], ref_sents: Sequence[Sequence[str]]) -> Score:
    """Summary-level ROUGE-L: union LCS of every reference sentence against all predicted ones."""
    m, n = sum(map(len, ref_sents)), sum(map(len, pred_sents))
    if m == 0 or n == 0:
        return _ZERO
    ref_counts: Counter[str] = Counter(t for s in ref_sents for t in s)
    pred_counts: Counter[str] = Counter(t for s in pred_sents for t in s)
    hits = 0
    for ref in ref_sents:
        union = sorted(set().union(*(_lcs_indices(ref, cand) for cand in pred_sents)))
        for token in (ref[i] for i in union):
            # Each token can be credited only as often as it occurs on both sides.
            if pred_counts[token] > 0 and ref_counts[token] > 0:
                hits += 1
                pred_counts[token] -= 1
                ref_counts[token] -= 1
    return _score(hits, n, m)


def _rouge_pair(
    prediction: str, reference: str, rouge_types: Sequence[str], use_stemmer: bool
) -> dict[str, Score]:
    pred = rouge_tokenize(prediction, use_stemmer=use_stemmer)
    ref = rouge_tokenize(reference, use_stemmer=use_stemmer)
    out: dict[str, Score] = {}
    for rouge_type in rouge_types:
        if rouge_type == "rougeL":
            out[rouge_type] = rouge_l(pred, ref)
        elif rouge_type == "rougeLsum":
            # rouge_score splits summaries into sentences on newlines only.
            def sents(text: str) -> list[list[str]]:
                split = (rouge_tokenize(s, use_stemmer=use_stemmer) for s in text.split("\n"))
                return [s for s in split if s]

            out[rouge_type] = rouge_lsum(sents(prediction), sents(reference))
        else:
            out[rouge_type] = rouge_n(pred, ref, int(rouge_type[len("rouge") :]))
    return out


def _check_rouge_types(rouge_types: Sequence[str]) -> tuple[str, ...]:
    if isinstance(rouge_types, str):
        rouge_types = [rouge_types]
    bad = [t for t in rouge_types if not re.fullmatch(r"rouge(?:[1-9]|L|Lsum)", t)]
    if bad or not rouge_types:
        raise ValueError(f"unknown ROUGE type(s) {bad}; use rouge1..rouge9, rougeL or rougeLsum")
    return tuple(rouge_types)


def rouge_scores(
    prediction: str,
    references: str | Sequence[str],
    *,
    rouge_types: Sequence[str] = DEFAULT_ROUGE_TYPES,
    use_stemmer: bool = False,
) -> dict[str, Score]:
    """ROUGE of one prediction; with several references each type takes the best F-measure."""
    types = _check_rouge_types(rouge_types)
    refs = [references] if isinstance(references, str) else list(references)
    if not refs:
        return dict.fromkeys(types, _ZERO)
    per_ref = [_rouge_pair(prediction, ref, types, use_stemmer) for ref in refs]
    # Like rouge_score.score_multi: the first reference wins ties.
    return {t: max((s[t] for s in per_ref), key=lambda s: s.fmeasure) for t in types}


def rouge(
    predictions: Sequence[str],
    references: Sequence[str | Sequence[str]],
    *,
    rouge_types: Sequence[str] = DEFAULT_ROUGE_TYPES,
    use_stemmer: bool = False,
    use_aggregator: bool = True,
) -> dict[str, float | list[float]]:
    """Corpus ROUGE F-measures: the plain mean over items, or per-item lists without aggregation.

    (evaluate's rouge reports a bootstrap median of means; the plain mean is deterministic.)
    """
    types = _check_rouge_types(rouge_types)
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    per_item = [
        rouge_scores(p, r, rouge_types=types, use_stemmer=use_stemmer)
        for p, r in zip(predictions, references, strict=True)
    ]
    lists = {t: [s[t].fmeasure for s in per_item] for t in types}
    if not use_aggregator:
        return dict(lists)
    return {t: (math.fsum(v) / len(v) if v else math.nan) for t, v in lists.items()}


# --- Porter stemmer (original 1980 algorithm) --------------------------------------------------
# rouge_score stems with NLTK's PorterStemmer. NLTK is used when installed; otherwise this
# dependency-free original algorithm stands in (it differs from NLTK's extensions on a few words).


def _stemmer() -> Callable[[str], str]:
    try:
        from nltk.stem import porter  # type: ignore[import-not-found]

        stem: Callable[[str], str] = porter.PorterStemmer().stem
        return stem
    except ImportError:
        return porter_stem


def _is_cons(word: str, i: int) -> bool:
    ch = word[i]
    if ch in "aeiou":
        return False
    if ch == "y":
        return i == 0 or not _is_cons(word, i - 1)
    return True


def _measure(stem: str) -> int:
    """Porter's m: the number of vowel-consonant sequences in [C](VC)^m[V]."""
    pattern = "".join("c" if _is_cons(stem, i) else "v" for i in range(len(stem)))
    return re.sub(r"(.)\1+", r"\1", pattern).count("vc")


def _has_vowel(stem: str) -> bool:
    return any(not _is_cons(stem, i) for i in range(len(stem)))


def _ends_double_cons(word: str) -> bool:
    return len(word) >= 2 and word[-1] == word[-2] and _is_cons(word, len(word) - 1)


def _ends_cvc(word: str) -> bool:
    n = len(word)
    return (
        n >= 3
        and _is_cons(word, n - 3)
        and not _is_cons(word, n - 2)
        and _is_cons(word, n - 1)
        and word[-1] not in "wxy"
    )


_STEP2 = (
    ("ational", "ate"),
    ("tional", "tion"),
    ("enci", "ence"),
    ("anci", "ance"),
    ("izer", "ize"),
    ("abli", "able"),
    ("alli", "al"),
    ("entli", "ent"),
    ("eli", "e"),
    ("ousli", "ous"),
    ("ization", "ize"),
    ("ation", "ate"),
    ("ator", "ate"),
    ("alism", "al"),
    ("iveness", "ive"),
    ("fulness", "ful"),
    ("ousness", "ous"),
    ("aliti", "al"),
    ("iviti", "ive"),
    ("biliti", "ble"),
)
_STEP3 = (
    ("icate", "ic"),
    ("ative", ""),
    ("alize", "al"),
    ("iciti", "ic"),
    ("ical", "ic"),
    ("ful", ""),
    ("ness", ""),
)
_STEP4 = (
    "al",
    "ance",
    "ence",
    "er",
    "ic",
    "able",
    "ible",
    "ant",
    "ement",
    "ment",
    "ent",
    "ion",
    "ou",
    "ism",
    "ate",
    "iti",
    "ous",
    "ive",
    "ize",
)


def _replace(word: str, rules: Iterable[tuple[str, str]], min_m: int) -> str:
    # Only the longest matching suffix is considered; if its condition fails, nothing changes.
    for suffix, repl in sorted(rules, key=lambda r: -len(r[0])):
        if word.endswith(suffix):
            stem = word[: -len(suffix)]
            return stem + repl if _measure(stem) > min_m else word
    return word


def porter_stem(word: str) -> str:
    """Stem one lowercase word with M. F. Porter's original (1980) algorithm."""
    if len(word) <= 2:
        return word
    w = word
    # Step 1a
    if w.endswith(("sses", "ies")):  # sses -> ss, ies -> i
        w = w[:-2]
    elif w.endswith("s") and not w.endswith("ss"):
        w = w[:-1]
    # Step 1b
    if w.endswith("eed"):
        if _measure(w[:-3]) > 0:
            w = w[:-1]
    else:
        for suffix in ("ed", "ing"):
            if w.endswith(suffix) and _has_vowel(w[: -len(suffix)]):
                w = w[: -len(suffix)]
                if w.endswith(("at", "bl", "iz")):
                    w += "e"
                elif _ends_double_cons(w) and w[-1] not in "lsz":
                    w = w[:-1]
                elif _measure(w) == 1 and _ends_cvc(w):
                    w += "e"
                break
    # Step 1c
    if w.endswith("y") and _has_vowel(w[:-1]):
        w = w[:-1] + "i"
    # Steps 2 and 3
    w = _replace(w, _STEP2, 0)
    w = _replace(w, _STEP3, 0)
    # Step 4
    for suffix in sorted(_STEP4, key=len, reverse=True):
        if w.endswith(suffix):
            stem = w[: -len(suffix)]
            if _measure(stem) > 1 and (suffix != "ion" or stem.endswith(("s", "t"))):
                w = stem
            break
    # Step 5a
    if w.endswith("e"):
        m = _measure(w[:-1])
        if m > 1 or (m == 1 and not _ends_cvc(w[:-1])):
            w = w[:-1]
    # Step 5b
    if w.endswith("ll") and _measure(w) > 1:
        w = w[:-1]
    return w


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


def squad_v2(
    predictions: Sequence[str],
    references: Sequence[Sequence[str]],
    *,
    no_answer_phrases: Iterable[str] = DEFAULT_NO_ANSWER_PHRASES,
) -> dict[str, float]:
    """Corpus SQuAD v2 scores in percent, with HasAns_/NoAns_ breakdowns (official key names)."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    if not predictions:
        raise ValueError("squad_v2 needs at least one prediction")
    phrases = tuple(no_answer_phrases)
    groups: dict[str, list[tuple[float, float]]] = {"": [], "HasAns_": [], "NoAns_": []}
    for pred, refs in zip(predictions, references, strict=True):
        refs = [refs] if isinstance(refs, str) else list(refs)
        scores = squad_item_scores(pred, refs, no_answer_phrases=phrases)
        groups[""].append(scores)
        groups["HasAns_" if any(normalize_answer(a) for a in refs) else "NoAns_"].append(scores)
    out: dict[str, float] = {}
    for prefix, scores in groups.items():
        if scores:  # the official script omits a breakdown with no questions
            out[f"{prefix}exact"] = 100.0 * math.fsum(s[0] for s in scores) / len(scores)
            out[f"{prefix}f1"] = 100.0 * math.fsum(s[1] for s in scores) / len(scores)
            out[f"{prefix}total"] = len(scores)
    return out


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
        scores = rouge_scores(text, refs, rouge_types=DEFAULT_ROUGE_TYPES, use_stemmer=use_stemmer)
        return {f"quality_{t}": s.fmeasure for t, s in scores.items()}
    return {}
