"""ROUGE-1/2/L/Lsum F-measure for `evaluate` through rouge_score, via llm_energy.quality.textmetrics."""

import datasets
import evaluate

from llm_energy.quality import textmetrics
from llm_energy.quality.metrics import metric_info

# evaluate parses this file's import lines to check dependencies: keep one import per line.

_DESCRIPTION = """\
ROUGE F-measures from google-research's rouge_score, with the options of evaluate's own `rouge`
metric: rouge_score's default tokenizer (lowercase, every non-alphanumeric run becomes a space),
NLTK's Porter stemmer for tokens longer than 3 characters with use_stemmer=True, rougeLsum on
sentences split at newlines, and the best reference per type with several references. Without
the Hub: nothing is downloaded. The aggregate is the plain mean (evaluate's is the median of an
unseeded bootstrap of means, which moves between runs).
"""

_CITATION = """\
@inproceedings{lin-2004-rouge,
  title = {{ROUGE}: A Package for Automatic Evaluation of Summaries},
  author = {Lin, Chin-Yew},
  booktitle = {Text Summarization Branches Out},
  year = {2004},
  pages = {74--81}
}
"""

_KWARGS_DESCRIPTION = """\
Args:
    predictions: list of predicted texts.
    references: list of reference texts, or of lists of reference texts (one list per prediction).
    rouge_types: subset of rouge1..rouge9, rougeL, rougeLsum (default all of rouge1, rouge2,
        rougeL, rougeLsum, as evaluate's rouge).
    use_stemmer: Porter-stem tokens longer than 3 characters (default False).
    use_aggregator: True returns the mean F-measure per type, False one list per type.
    tokenizer: a callable str -> list of tokens replacing the default tokenizer (then
        use_stemmer has no effect, as in evaluate's rouge).
Returns:
    {rouge_type: F-measure in [0, 1]} (or lists of per-item F-measures).
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Rouge(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        text = datasets.Value("string")
        return metric_info(
            _DESCRIPTION,
            _CITATION,
            _KWARGS_DESCRIPTION,
            features=[
                datasets.Features({"predictions": text, "references": datasets.Sequence(text)}),
                datasets.Features({"predictions": text, "references": text}),
            ],
            reference_urls=["https://github.com/google-research/google-research/tree/master/rouge"],
        )

    def _compute(
        self,
        predictions: list[str],
        references: list,
        rouge_types: list[str] | None = None,
        use_stemmer: bool = False,
        use_aggregator: bool = True,
        tokenizer: textmetrics.Tokenizer | None = None,
    ) -> dict:
        return textmetrics.rouge(
            predictions,
            references,
            rouge_types=rouge_types,
            use_stemmer=use_stemmer,
            use_aggregator=use_aggregator,
            tokenizer=tokenizer,
        )
