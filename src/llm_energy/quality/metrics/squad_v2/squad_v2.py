"""SQuAD v2 exact match / F1 for `evaluate`, computed by llm_energy.quality.textmetrics (no downloads)."""

import datasets
import evaluate

from llm_energy.quality import squad, textmetrics
from llm_energy.quality.metrics import metric_info

# evaluate parses this file's import lines to check dependencies: keep one import per line.

_DESCRIPTION = """\
SQuAD v2 exact match and token F1 as in the official v2.0 evaluation script (normalisation:
lowercase, no punctuation, no articles a/an/the, squeezed whitespace). Takes evaluate's
canonical squad_v2 input, with the same keys and numbers as evaluate's `squad_v2`, or plain
texts. In the plain form an empty list of gold answers means unanswerable: then the correct
prediction is the empty string, or a text containing a no-answer phrase ("unanswerable",
"no answer", "not in the context", ...), which counts as the empty string.
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
    predictions: either evaluate's format, dicts {"id", "prediction_text",
        "no_answer_probability"}, or plain predicted answer texts.
    references: either dicts {"id", "answers": {"text": [...], "answer_start": [...]}}
        (matched to predictions by id), or lists of gold answer texts ([] = unanswerable).
    no_answer_threshold: a no-answer probability above it counts as "no answer" (default 1.0).
    no_answer_phrases: phrases that mean "no answer"; default
        llm_energy.quality.textmetrics.DEFAULT_NO_ANSWER_PHRASES for plain texts and none for
        evaluate's format (as evaluate); [] turns the mapping off.
Returns:
    exact, f1, total, and HasAns_exact/f1/total and NoAns_exact/f1/total where such questions
    exist; with evaluate's format also best_exact, best_exact_thresh, best_f1, best_f1_thresh.
    Scores are percentages (0-100), as in the official script.
"""

_TEXT = datasets.Value("string")
_CANONICAL = datasets.Features(
    {
        "predictions": {
            "id": _TEXT,
            "prediction_text": _TEXT,
            "no_answer_probability": datasets.Value("float32"),
        },
        "references": {
            "id": _TEXT,
            "answers": datasets.Sequence({"text": _TEXT, "answer_start": datasets.Value("int32")}),
        },
    }
)
_PLAIN = datasets.Features({"predictions": _TEXT, "references": datasets.Sequence(_TEXT)})


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class SquadV2(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return metric_info(
            _DESCRIPTION,
            _CITATION,
            _KWARGS_DESCRIPTION,
            # evaluate picks the first format the first example fits.
            features=[_CANONICAL, _PLAIN],
            reference_urls=["https://rajpurkar.github.io/SQuAD-explorer/"],
        )

    def _compute(
        self,
        predictions: list,
        references: list,
        no_answer_threshold: float = 1.0,
        no_answer_phrases: list[str] | None = None,
    ) -> dict:
        if predictions and isinstance(predictions[0], dict):
            return squad.squad_v2_records(
                predictions,
                references,
                no_answer_threshold=no_answer_threshold,
                no_answer_phrases=no_answer_phrases or (),
            )
        phrases = (
            textmetrics.DEFAULT_NO_ANSWER_PHRASES
            if no_answer_phrases is None
            else no_answer_phrases
        )
        return squad.squad_v2(
            predictions,
            references,
            no_answer_phrases=phrases,
            no_answer_threshold=no_answer_threshold,
        )
