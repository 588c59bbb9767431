"""Corpus perplexity for `evaluate` from per-request NLL sums, via llm_energy.quality.textmetrics."""

import datasets
import evaluate

from llm_energy.quality import textmetrics
from llm_energy.quality.metrics import metric_info

# evaluate parses this file's import lines to check dependencies: keep one import per line.

_DESCRIPTION = """\
Token-weighted perplexity exp(sum of NLL / sum of tokens) of reference continuations, from the
teacher-forced NLL (in nats) that the infer stage records per request (ref_nll_sum, ref_tokens).
No model is loaded here. Items with a missing value or zero tokens are skipped and counted.
"""

_CITATION = """\
@article{jelinek1977perplexity,
  title = {Perplexity: a measure of the difficulty of speech recognition tasks},
  author = {Jelinek, F. and Mercer, R. L. and Bahl, L. R. and Baker, J. K.},
  journal = {The Journal of the Acoustical Society of America},
  volume = {62},
  year = {1977}
}
"""

_KWARGS_DESCRIPTION = """\
Args:
    ref_nll_sum: per-item summed negative log-likelihood of the reference, in nats.
    ref_tokens: per-item number of reference tokens scored.
Returns:
    perplexity, mean_nll (nats per token), n_items, n_tokens, n_skipped.
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Perplexity(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return metric_info(
            _DESCRIPTION,
            _CITATION,
            _KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"ref_nll_sum": datasets.Value("float64"), "ref_tokens": datasets.Value("int64")}
            ),
        )

    def _compute(self, ref_nll_sum: list[float | None], ref_tokens: list[int | None]) -> dict:
        return textmetrics.perplexity(ref_nll_sum, ref_tokens)
