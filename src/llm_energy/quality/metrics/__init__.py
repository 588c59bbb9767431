"""Quality metrics as `evaluate` modules, loaded offline from this package's own scripts
(`metrics/<name>/<name>.py`, the layout `evaluate.load` expects), which delegate to
`llm_energy.quality.textmetrics`, so nothing is fetched from the Hub."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

METRICS_DIR: Path = Path(__file__).resolve().parent
NAMES: tuple[str, ...] = ("rouge", "squad_v2", "perplexity")

# The corpus-level metric that reports quality for each task kind.
METRIC_FOR_KIND = {"generation": "perplexity", "qa": "squad_v2", "summarization": "rouge"}


def metric_path(name: str) -> Path:
    """Folder of one metric script (what `evaluate.load` takes)."""
    if name not in NAMES:
        raise ValueError(f"unknown metric {name!r}; the project provides {', '.join(NAMES)}")
    return METRICS_DIR / name


def load(name: str, **kwargs: Any) -> Any:
    """`evaluate.load` of the project's own metric script; results stay in memory by default."""
    import evaluate  # heavy import, only when a metric is used

    kwargs.setdefault("keep_in_memory", True)
    return evaluate.load(str(metric_path(name)), **kwargs)


def metric_info(description: str, citation: str, inputs_description: str, **fields: Any) -> Any:
    """The `evaluate.MetricInfo` of one of the project's metric scripts (`fields`: features...)."""
    import evaluate

    return evaluate.MetricInfo(
        description=description, citation=citation, inputs_description=inputs_description, **fields
    )


def compute_for_kind(
    kind: str,
    *,
    predictions: Sequence[Any] | None = None,
    references: Sequence[Any] | None = None,
    ref_nll_sum: Sequence[float | None] | None = None,
    ref_tokens: Sequence[int | None] | None = None,
    **kwargs: Any,
) -> dict[str, float]:
    """Corpus quality of one task kind through its evaluate metric: perplexity (generation),
    SQuAD v2 in percent (qa) or mean ROUGE F-measures (summarization); kwargs go to compute."""
    if kind not in METRIC_FOR_KIND:
        kinds = ", ".join(METRIC_FOR_KIND)
        raise ValueError(f"unknown task kind {kind!r}; expected one of {kinds}")
    module = load(METRIC_FOR_KIND[kind])
    if kind == "generation":
        if ref_nll_sum is None or ref_tokens is None:
            raise ValueError("generation quality needs ref_nll_sum and ref_tokens")
        return module.compute(ref_nll_sum=list(ref_nll_sum), ref_tokens=list(ref_tokens), **kwargs)
    if predictions is None or references is None:
        raise ValueError(f"{kind} quality needs predictions and references")
    refs = [
        r if isinstance(r, Mapping) else [r] if isinstance(r, str) else list(r) for r in references
    ]
    return module.compute(predictions=list(predictions), references=refs, **kwargs)
