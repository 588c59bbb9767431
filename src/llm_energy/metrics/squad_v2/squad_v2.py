"""SQuAD v2 exact match / F1 for `evaluate`, computed by llm_energy.textmetrics (no downloads)."""

import datasets
import evaluate

from llm_energy import textmetrics

# evaluate parses this file's import lines to check dependencies: keep one import per line.

_DESCRIPTION = """\
SQuAD v2 exact match and token F1 with the official normalisation (lowercase, no punctuation,
no articles a/an/the, squeezed whitespace). An empty list of gold answers means unanswerable: then
the correct prediction is the empty string, or a text containing a no-answer phrase
("unanswerable", "no answer", "not in the context", ...), which counts as the empty string.
"""

_CITATION = """\
@inproceedings{rajpurkar-etal-2018-know,
  title = {Know What You Don't Know: Unanswerable Questions for {SQuAD}},
  author = {Rajpurkar, Pranav and Jia, Robin and Liang, Percy},
  booktitle = {Proceedings of ACL},
  year = {2018},
  pages = {784--789}
}
"""

_KWARGS_DESCRIPTION = """\
Args:
    predictions: list of predicted answer texts.
    references: list of lists of gold answer texts ([] = unanswerable).
    no_answer_phrases: phrases that mean "no answer" (default
        llm_energy.textmetrics.DEFAULT_NO_ANSWER_PHRASES; [] turns the mapping off).
Returns:
    exact, f1, total, and HasAns_exact/f1/total and NoAns_exact/f1/total where such questions
    exist. Scores are percentages (0-100), as in the official script.
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class SquadV2(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Value("string"),
                    "references": datasets.Sequence(datasets.Value("string")),
                }
            ),
            reference_urls=["https://rajpurkar.github.io/SQuAD-explorer/"],
        )

    def _compute(
        self,
        predictions: list[str],
        references: list[list[str]],
        no_answer_phrases: list[str] | None = None,
    ) -> dict:
        phrases = (
            textmetrics.DEFAULT_NO_ANSWER_PHRASES
            if no_answer_phrases is None
            else no_answer_phrases
        )
        return textmetrics.squad_v2(predictions, references, no_answer_phrases=phrases)
