"""repetition.py: a first repetition unlike the rest (cold start) is flagged, and reported."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis_fixtures import sweep_requests
from analysis_settings import repetition_effect
from llm_energy.analysis.repetition import (
    REPETITION_COLUMNS,
    repetition_headline,
)
from llm_energy.report.markdown import build_markdown, repetition_warning


def test_cold_start_three_times_slower_is_flagged() -> None:
    # as seen on a real H200: rep 0 three times slower
    df = sweep_requests((None, 1200.0), n_per_freq=8, reps=3, rep0_slowdown=3.0, seed=1)
    table = repetition_effect(df)
    assert list(table.columns) == REPETITION_COLUMNS
    assert len(table) == 4 and table["flagged"].all()  # 2 clocks × (latency, J/token)
    lat = table[(table["metric"] == "latency_s") & table["freq_applied_mhz"].isna()].iloc[0]
    assert (lat["n_rep0"], lat["n_rest"]) == (8, 16)
    assert lat["ratio"] == pytest.approx(3.0, rel=0.05)
    # the same items ran in every repetition: paired by item, against scipy
    assert lat["test"] == "wilcoxon_signed_rank" and lat["n_pairs"] == 8
    sub = df[df["freq_requested_mhz"].isna()]
    first = sub[sub["rep"] == 0].groupby("item_id")["latency_s"].mean()
    rest = sub[sub["rep"] >= 1].groupby("item_id")["latency_s"].mean()
    assert lat["p_value"] == pytest.approx(stats.wilcoxon(first, rest.loc[first.index]).pvalue)
    head = repetition_headline(table)
    assert (head["n_configs_tested"], head["n_configs_flagged"]) == (2, 2)
    assert head["worst_ratio"] == pytest.approx(3.0, rel=0.1)
    assert "default" in head["worst_config"]


def test_no_repetition_effect_is_not_flagged() -> None:
    df = sweep_requests((None, 1200.0), n_per_freq=8, reps=3, seed=2)
    table = repetition_effect(df)
    assert not table["flagged"].any()
    assert (np.abs(np.log(table["ratio"])) < np.log(1.05)).all()
    assert repetition_headline(table)["n_configs_flagged"] == 0
    assert repetition_warning(repetition_headline(table)) is None


def test_single_repetition_has_nothing_to_compare() -> None:
    table = repetition_effect(sweep_requests((None,), n_per_freq=4))
    assert table.empty and repetition_headline(table)["n_configs_tested"] == 0


def test_report_warns_about_a_first_repetition_that_differs() -> None:
    df = sweep_requests((None,), n_per_freq=6, reps=2, rep0_slowdown=3.0)
    head = {
        "energy": {"kind": "measured"},
        "repetition": repetition_headline(repetition_effect(df)),
    }
    md = build_markdown(pd.DataFrame(), {}, pd.DataFrame(), head, {}, None)
    assert "⚠ First repetition differs." in md
    assert "In 1 of 1 configurations the first repetition (rep 0) differed" in md
    ratio = re.search(r"of rep 0 was (\d+\.\d\d)× the later repetitions", md)
    assert ratio and float(ratio.group(1)) == pytest.approx(3.0, rel=0.1)
