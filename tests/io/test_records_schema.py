"""records.py: the record schema declares every column the runner writes and every table the
stages pass on; loading checks and types them, and refuses missing columns, wrong types (older
record formats) and undeclared columns in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from analysis_fixtures import as_records, infer_record, sweep_requests
from analysis_settings import summarize
from helpers import window_facts
from llm_energy.analysis.regression import COEF_COLUMNS
from llm_energy.analysis.repetition import REPETITION_COLUMNS
from llm_energy.analysis.significance import (
    FREQUENCY_EFFECT_COLUMNS,
    PAIRWISE_COLUMNS,
    SPEARMAN_COLUMNS,
)
from llm_energy.analysis.tradeoff import RECOMMEND_COLUMNS
from llm_energy.errors import InputFileError
from llm_energy.io.records import load_records, load_table
from llm_energy.record_types import unit_of
from llm_energy.records import (
    AGGREGATE_REQUESTS,
    FREQUENCY_EFFECT,
    INFER_REQUESTS,
    PAIRWISE,
    RECOMMENDATION,
    REGRESSION,
    REPETITION,
    SPEARMAN,
    SUMMARY,
    plain_records,
    typed_frame,
)
from llm_energy.run.plan import failure_records, request_records, with_idle_baseline

REMEDY = "re-run the infer stage"
BASE = {
    "run_id": "a" * 32,
    "experiment": "default",
    "model": "m",
    "model_family": "causal",
    "weights": "random",
    "model_params_m": 135.0,
    "rep": 0,
    "engine": "eager",
    "batch_size": 2,
    "batch_fill": 2,
    "input_tokens_target": None,
    "output_tokens_target": 8,
    "output_mode": "fixed",
    "freq_requested_mhz": 1200,
    "freq_applied_mhz": 1200,
    "power_limit_requested_w": None,
    "power_limit_applied_w": None,
    "mem_freq_requested_mhz": None,
    "mem_freq_applied_mhz": None,
}
ITEMS = [{"task": "qa", "kind": "qa", "dataset": "d", "item_id": f"q{i}"} for i in range(2)]


def _runner_records() -> list[dict]:
    """Records as the runner builds them (plan.py): a measured window and a failed batch."""
    window = window_facts(
        window_energy_j=20.0,
        window_repeats=1,
        energy_source="simulated",
        idle_power_w=None,
        sm_clock_mean_mhz=1195.0,
        sm_clock_min_mhz=1180.0,
        mem_clock_mhz=2619.0,
        temperature_c=50.0,
    )
    inputs = [{"input_tokens": 30, "input_truncated": False, "input_truncation_reason": None}] * 2
    ok = request_records(
        base=BASE,
        items=ITEMS,
        inputs=inputs,
        predictions=["a", "b"],
        output_tokens=[8, 8],
        ttft_s=0.1,
        window=window,
    )
    failed = failure_records(base=BASE, items=ITEMS, status="oom", error="out of memory")
    rows = [*ok, *failed]
    for row in rows:
        row.update(started_at="2026-01-01T00:00:00Z", ended_at="2026-01-01T00:00:01Z")
    return [
        with_idle_baseline(r, power_w=5.0, before_w=5.0, after_w=5.0, se_w=0.1, df=9) for r in rows
    ]


def test_runner_records_match_the_schema_exactly() -> None:
    rows = _runner_records()
    written = {k for r in rows for k in r}
    declared = {c.name for c in INFER_REQUESTS.columns if c.required != "no"}
    # Written on every record, optional so that records written before it still load.
    optional_written = {"idle_power_df", "power_limit_held"} | {k for k in BASE if "_limit_" in k}
    optional_written |= {k for k in BASE if k.startswith("mem_freq")}
    assert written == declared | optional_written  # a new runner column must be declared
    typed = typed_frame(pd.DataFrame(rows), INFER_REQUESTS, "requests.jsonl", REMEDY)
    assert str(typed["idle_power_df"].dtype) == "Int64" and typed["idle_power_df"].iloc[0] == 9
    older = pd.DataFrame(rows).drop(columns="idle_power_df")
    assert typed_frame(older, INFER_REQUESTS, "r", REMEDY)["idle_power_df"].isna().all()
    assert str(typed["clock_event_reasons"].dtype) == "Int64"
    assert str(typed["window_trusted"].dtype) == "boolean"  # null on the failed rows
    assert typed["window_trusted"].tolist()[:2] == [True, True]
    assert str(typed["rep"].dtype) == "int64"  # on every record
    assert str(typed["input_tokens_target"].dtype) == "Int64"
    assert typed["energy_j"].dtype == "float64"
    assert typed["ref_nll_sum"].isna().all()  # generation-only column, added as null


def test_failed_only_records_need_no_measurement_columns() -> None:
    rows = [r for r in _runner_records() if r["status"] != "ok"]
    for r in rows:
        r.pop("idle_power_w")
    typed = typed_frame(pd.DataFrame(rows), INFER_REQUESTS, "requests.jsonl", REMEDY)
    assert typed["energy_j"].isna().all() and typed["idle_power_w"].isna().all()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda df: df.drop(columns="status"), "no column 'status'"),
        (lambda df: df.drop(columns="window_id"), "no column 'window_id'"),
        (
            lambda df: df.assign(clock_event_reasons=["0x40", "0x40", None, None]),
            "column 'clock_event_reasons' holds str '0x40' in row 1, expected int "
            "(records in an older format are not supported)",
        ),
        (
            lambda df: df.assign(clock_event_reasons=[["hw_slowdown"], [], None, None]),
            "column 'clock_event_reasons' holds list",
        ),
        (lambda df: df.assign(window_trusted=["yes", True, None, None]), "expected bool"),
        (lambda df: df.assign(output_tokens=[8.5, 8, None, None]), "expected int"),
        (lambda df: df.assign(energy_j=[None, 1.0, None, None]), None),  # nullable: fine
        (lambda df: df.assign(window_s=[None, 1.0, None, None]), "'window_s' is null in row 1"),
        (lambda df: df.assign(device_name="gpu"), "unexpected column 'device_name'"),
    ],
)
def test_bad_records_fail_in_one_line(change, message: str | None) -> None:
    df = change(pd.DataFrame(_runner_records()))
    if message is None:
        typed_frame(df, INFER_REQUESTS, "data/infer/requests.jsonl", REMEDY)
        return
    with pytest.raises(InputFileError) as err:
        typed_frame(df, INFER_REQUESTS, "data/infer/requests.jsonl", REMEDY)
    text = str(err.value)
    assert message in text and "\n" not in text
    assert text.startswith("data/infer/requests.jsonl: ") and text.endswith(REMEDY)


def test_quality_columns_are_the_only_extras_of_aggregate_records() -> None:
    df = sweep_requests((1200.0,), n_per_freq=3)
    assert "quality_exact_match" in df.columns
    with pytest.raises(InputFileError, match="unexpected column 'score'"):
        typed_frame(df.assign(score=1.0), AGGREGATE_REQUESTS, "x", "r")
    with pytest.raises(InputFileError, match="'quality_em' holds str"):
        typed_frame(df.assign(quality_em="high"), AGGREGATE_REQUESTS, "x", "r")


def test_aggregate_records_round_trip_through_jsonl(tmp_path: Path) -> None:
    df = sweep_requests((None, 1200.0), n_per_freq=3, tasks=("qa", "generation"))
    path = tmp_path / "requests.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in plain_records(df)))
    back = load_records(path, AGGREGATE_REQUESTS, remedy="re-run aggregate")
    pd.testing.assert_frame_equal(back[df.columns], df)


def test_summary_round_trips_through_csv_with_its_types(tmp_path: Path) -> None:
    s = summarize(sweep_requests((None, 1200.0), n_per_freq=4))
    path = tmp_path / "summary.csv"
    s.to_csv(path, index=False)
    back = load_table(path, SUMMARY, remedy="re-run aggregate")
    assert back["default_clocks"].dtype == bool and back["n"].dtype == "int64"
    assert str(back["batch_size"].dtype) == "int64" and back["energy_kind"].dtype == object
    assert back["gpu_name"].tolist() == ["sim-gpu", "sim-gpu"]
    # CSV has no empty text apart from null: excluded_reasons "" reads back as null
    expected = typed_frame(s, SUMMARY, "s", "r").assign(excluded_reasons=None)
    pd.testing.assert_frame_equal(back, expected, check_dtype=False)
    s.drop(columns="n_windows").to_csv(path, index=False)
    with pytest.raises(InputFileError, match=r"summary\.csv: no column 'n_windows'"):
        load_table(path, SUMMARY, remedy="re-run aggregate")


def test_an_empty_stats_table_loads_with_its_columns(tmp_path: Path) -> None:
    path = tmp_path / "pairwise.csv"
    path.write_text("")
    back = load_table(path, PAIRWISE, remedy="re-run stats", allow_empty=True)
    assert back.empty and list(back.columns) == PAIRWISE.names()


def test_numbers_in_a_text_column_of_a_csv_are_text(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    table = pd.DataFrame({c: [None, None] for c in REGRESSION.names()}).assign(term=[1200, 2])
    table.to_csv(path, index=False)
    back = load_table(path, REGRESSION, remedy="r")
    assert back["term"].tolist() == ["1200", "2"]


@pytest.mark.parametrize(
    ("written", "schema"),
    [
        (FREQUENCY_EFFECT_COLUMNS, FREQUENCY_EFFECT),
        (PAIRWISE_COLUMNS, PAIRWISE),
        (SPEARMAN_COLUMNS, SPEARMAN),
        (COEF_COLUMNS, REGRESSION),
        (RECOMMEND_COLUMNS, RECOMMENDATION),
        (REPETITION_COLUMNS, REPETITION),
    ],
)
def test_every_table_column_is_declared(written: list[str], schema) -> None:
    assert sorted(written) == sorted(schema.names())


def test_units_come_from_the_names() -> None:
    assert unit_of("energy_j") == "J" and unit_of("freq_applied_mhz") == "MHz"
    assert unit_of("edp_j_s") == "J·s" and unit_of("ed2p_j_s2") == "J·s²"
    assert unit_of("output_tokens") == "" and INFER_REQUESTS.column("temperature_c").unit == "°C"


def test_test_frames_are_completed_not_guessed() -> None:
    df = as_records(pd.DataFrame({"energy_j": [1.0, 2.0]}))
    assert df["window_id"].tolist() == [1, 2] and df["gpu_uuid"].tolist() == ["GPU-sim-0"] * 2


def test_infer_record_fixture_is_a_complete_record() -> None:
    rows = [infer_record(item_id="a"), infer_record(item_id="b", status="oom", energy_j=None)]
    typed = typed_frame(pd.DataFrame(rows), INFER_REQUESTS, "requests.jsonl", REMEDY)
    assert typed["status"].tolist() == ["ok", "oom"]
