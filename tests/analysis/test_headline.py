"""metrics.json (headline_metrics): keyed per task, no number pooled over tasks without its
interval, every task's J/token defined as summary.csv defines it (Σ energy / Σ tokens)."""

from __future__ import annotations

import json

import pytest

from analysis_fixtures import sweep_requests
from analysis_settings import headline_metrics, summarize
from llm_energy.analysis.headline import flatten_dict

TASKS = ("qa", "generation", "summarization")


def _jpt_keys(head: dict) -> list[str]:
    """Every J/token key of metrics.json outside the per-task and per-clock blocks."""
    return [
        k
        for k in flatten_dict(head)
        if "j_per_token" in k and not k.startswith(("by_task.", "by_clock."))
    ]


def test_metrics_are_keyed_per_task_with_their_interval() -> None:
    req = sweep_requests((None, 1400.0), n_per_freq=5, tasks=TASKS, length_jitter=True)
    head = headline_metrics(summarize(req), req)
    json.dumps(head)
    assert set(head["by_task"]) == set(TASKS)
    for task, rows in req.groupby("task"):
        entry = head["by_task"][task]
        # Σ energy / Σ tokens over the task's requests (every clock), never a mean of ratios
        total = rows["energy_j"].sum() / rows["output_tokens"].sum()
        assert entry["j_per_token"] == pytest.approx(total)
        assert entry["j_per_token_ci_low"] < entry["j_per_token"] < entry["j_per_token_ci_high"]
        assert entry["n_items"] == 5
    # several tasks: the only cross-task number is labelled pooled and carries its interval
    assert {k.split(".")[0] for k in _jpt_keys(head)} == {"pooled_over_tasks"}
    pooled = head["pooled_over_tasks"]
    assert pooled["j_per_token"] == pytest.approx(
        req["energy_j"].sum() / req["output_tokens"].sum()
    )
    assert pooled["j_per_token_ci_low"] < pooled["j_per_token"] < pooled["j_per_token_ci_high"]
    assert pooled["n_items"] == 15


def test_a_task_with_one_configuration_is_its_summary_row() -> None:
    req = sweep_requests((1200.0,), n_per_freq=6, tasks=TASKS, length_jitter=True)
    summary = summarize(req)
    head = headline_metrics(summary, req)
    for row in summary.to_dict("records"):
        entry = head["by_task"][row["task"]]
        for field in ("j_per_token_mean", "j_per_token_ci_low", "j_per_token_ci_high"):
            assert entry[field.removesuffix("_mean")] == pytest.approx(row[field])
        assert entry["latency_p50_s"] == pytest.approx(row["latency_p50_s"])


def test_no_pooled_number_without_an_interval() -> None:
    # two tasks of one item each: 2 items give no interval, so there is no pooled number at all
    req = sweep_requests((None,), n_per_freq=1, tasks=("qa", "generation"))
    head = headline_metrics(summarize(req), req)
    assert set(head["by_task"]) == {"qa", "generation"}
    assert "pooled_over_tasks" not in head
    assert _jpt_keys(head) == []


def test_one_task_has_no_pooled_entry() -> None:
    req = sweep_requests((None,), n_per_freq=5, tasks=("qa",))
    head = headline_metrics(summarize(req), req)
    assert list(head["by_task"]) == ["qa"] and "pooled_over_tasks" not in head
    assert _jpt_keys(head) == []
