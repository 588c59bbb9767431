"""ROUGE-1/2/L/Lsum F-measure for `evaluate`, computed by llm_energy.textmetrics (no downloads)."""

import datasets
import evaluate

from llm_energy import textmetrics

# evaluate parses this file's import lines to check dependencies: keep one import per line.

_DESCRIPTION = """\
ROUGE F-measures with the rouge_score defaults: lowercase, every non-alphanumeric run becomes a
space, no stemming unless use_stemmer=True. With several references per prediction each ROUGE
type keeps the best F-measure. rougeLsum splits summaries into sentences on newlines.
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
    rouge_types: subset of rouge1..rouge9, rougeL, rougeLsum (default rouge1, rouge2, rougeL).
    use_stemmer: Porter-stem tokens longer than 3 characters (default False).
    use_aggregator: True returns the mean F-measure per type, False one list per type.
Returns:
    {rouge_type: F-measure in [0, 1]} (or lists of per-item F-measures).
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Rouge(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=[
                datasets.Features(
                    {
                        "predictions": datasets.Value("string"),
                        "references": datasets.Sequence(datasets.Value("string")),
                    }
                ),
                datasets.Features(
                    {
                        "predictions": datasets.Value("string"),
                        "references": datasets.Value("string"),
                    }
                ),
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
    ) -> dict:
        return textmetrics.rouge(
            predictions,
            references,
            rouge_types=rouge_types or textmetrics.DEFAULT_ROUGE_TYPES,
            use_stemmer=use_stemmer,
            use_aggregator=use_aggregator,
        )
