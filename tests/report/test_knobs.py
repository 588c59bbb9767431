"""One Pareto for every knob: each configuration's knob, the front over all knobs per task,
which knob dominates overall and per phase, and the figure (only with 2+ knobs)."""

from __future__ import annotations

import math

import pandas as pd

from llm_energy.report.knobs import knob_figures, knob_sentences, knob_table

NAN = math.nan


def knob_summary() -> pd.DataFrame:
    """qa: default, two clock locks, two power limits, a memory clock (J/token, p50, TPOT; prefill
    and decode energy and time)."""
    rows = [  # clock, power limit, memory clock, J/token, p50, prefill J, prefill s, decode J
        (NAN, NAN, NAN, 4.0, 1.00, 5.0, 0.10, 100.0),
        (990.0, NAN, NAN, 3.5, 1.02, 4.0, 0.14, 86.0),
        (690.0, NAN, NAN, 3.9, 1.20, 3.8, 0.20, 95.0),
        (NAN, 300.0, NAN, 3.8, 1.05, 4.5, 0.11, 92.0),
        (NAN, 200.0, NAN, 3.6, 1.30, 3.5, 0.15, 90.0),
        (NAN, NAN, 2201.0, 3.7, 1.00, 5.0, 0.10, 88.0),
    ]
    frame = pd.DataFrame(
        rows,
        columns=[
            "freq_applied_mhz",
            "power_limit_applied_w",
            "mem_freq_applied_mhz",
            "j_per_token_mean",
            "latency_p50_s",
            "prefill_energy_j_mean",
            "prefill_time_s_mean",
            "decode_energy_j_mean",
        ],
    )
    frame["decode_time_s_mean"] = frame["latency_p50_s"] - frame["prefill_time_s_mean"]
    frame["tpot_s_mean"] = frame["latency_p50_s"] / 32
    return frame.assign(model="m", task="qa", energy_kind="simulated", n=3)


def test_each_row_is_labelled_with_its_knob_and_value() -> None:
    table = knob_table(knob_summary())
    assert list(table["knob"]) == [
        "default",
        "SM clock lock",
        "SM clock lock",
        "power limit",
        "power limit",
        "memory clock",
    ]
    assert list(table["knob_label"])[:4] == ["default", "990 MHz", "690 MHz", "300 W"]
    assert table["knob_label"].iloc[5] == "mem 2201 MHz"


def test_the_sentence_names_the_knob_that_dominates_each_front() -> None:
    (sentence,) = knob_sentences(knob_summary())
    # overall: the memory clock dominates the default at 1.00 s; 990 MHz is the cheapest point
    assert "overall SM clock lock (990 MHz; front: " in sentence
    assert "1 memory clock" in sentence and "default" not in sentence.split("front: ")[1][:40]
    # prefill: 200 W is the cheapest prefill (3.5 J) and on its front; decode: 990 MHz (86 J)
    assert "for prefill power limit (200 W;" in sentence
    assert "for decode SM clock lock (990 MHz;" in sentence


def test_one_knob_gives_no_knob_sentence_and_no_knob_figure() -> None:
    clocks_only = (
        knob_summary().iloc[:3].drop(columns=["power_limit_applied_w", "mem_freq_applied_mhz"])
    )
    assert knob_sentences(clocks_only) == [] and knob_figures(clocks_only) == {}
    fig = knob_figures(knob_summary())["pareto_knobs"]
    assert len(fig.axes) == 2  # one task: J/token vs p50 and vs TPOT
    assert "SIMULATED" in fig.texts[0].get_text().upper()
