"""Idle baselines: sub-readings from the meter (energy/meter.py) pooled by `IdleBaseline`."""

from __future__ import annotations

import json
import logging
import math
import shutil
from pathlib import Path

import pytest
import yaml
from test_faults_io import run_in_process

from helpers import REPO, EnergyMeter, compose, sim
from llm_energy.io.files import read_jsonl
from llm_energy.run.run_parts import IdleBaseline
from llm_energy.sim import model as simmodel

H200 = simmodel.get_gpu_model("h200")


def test_baseline_of_known_samples_is_the_textbook_mean_se_and_df() -> None:
    b = IdleBaseline(1200, (100.0, 102.0, 104.0), (101.0, 103.0, 105.0))
    n, mean = 6, 102.5
    sd = math.sqrt(sum((x - mean) ** 2 for x in (100, 102, 104, 101, 103, 105)) / (n - 1))
    assert b.power_w == pytest.approx(mean) and b.n_samples == n
    assert b.se_w == pytest.approx(sd / math.sqrt(n)) and b.df == n - 1
    assert (b.before_w, b.after_w) == (102.0, 103.0)
    assert b.to_dict() == {
        "freq_applied_mhz": 1200,
        "before_samples_w": [100.0, 102.0, 104.0],
        "after_samples_w": [101.0, 103.0, 105.0],
        "before_w": 102.0,
        "after_w": 103.0,
        "power_w": pytest.approx(mean),
        "n_samples": 6,
        "se_w": pytest.approx(sd / math.sqrt(n)),
        "df": 5,
    }


def test_before_only_baseline_takes_se_and_df_from_its_own_samples() -> None:
    b = IdleBaseline(None, (10.0, 12.0, 14.0, 16.0, 18.0))
    assert b.after_w is None and b.power_w == 14.0 and b.df == 4
    assert b.se_w == pytest.approx(math.sqrt(10.0) / math.sqrt(5))


def test_fewer_than_two_finite_samples_have_no_se_nor_df() -> None:
    assert IdleBaseline(None).power_w is None and IdleBaseline(None).se_w is None
    one = IdleBaseline(None, (5.0, math.nan), ())  # a counter reset reads NaN: left out
    assert one.power_w == 5.0 and one.n_samples == 1 and one.se_w is None and one.df is None
    assert IdleBaseline(None, (5.0, math.nan), (7.0,)).df == 1


# ------------------------------------------------------------------------ the meter's side


def test_idle_samples_are_back_to_back_windows_at_the_clock_in_force(tmp_path: Path) -> None:
    dev = sim(tmp_path, update_period_s=0.01)
    dev.lock_sm_clocks(1500)
    meter = EnergyMeter(dev, min_window_s=0.0, min_window_periods=1, tick_align=True)
    samples = meter.measure_idle_samples_w(0.1, 4)
    assert len(samples) == 4
    assert samples == pytest.approx([simmodel.idle_power_w(H200, 1500)] * 4, rel=1e-9)
    assert meter.idle_part_s(0.1, 4) == pytest.approx(0.025)


def test_parts_shorter_than_a_counter_update_are_clamped_without_tick_alignment(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    dev = sim(tmp_path, update_period_s=0.05)
    aligned = EnergyMeter(dev, min_window_s=0.0, min_window_periods=1, tick_align=True)
    # Aligned edges wait for the next update anyway: a short part lasts one period by itself.
    assert aligned.idle_part_s(0.1, 5) == pytest.approx(0.02)
    edges = EnergyMeter(dev, min_window_s=0.0, min_window_periods=1, tick_align=False)
    with caplog.at_level(logging.WARNING, logger="llm_energy.energy.meter"):
        assert edges.idle_part_s(0.1, 5) == pytest.approx(0.05)
        assert edges.idle_part_s(0.1, 5) == pytest.approx(0.05)
        assert edges.idle_part_s(1.0, 5) == pytest.approx(0.2)
    assert caplog.text.count("shorter than one counter update") == 1  # once per meter
    with pytest.raises(ValueError):
        edges.idle_part_s(1.0, 0)


# ------------------------------------------------------------------------ the infer stage


@pytest.mark.slow
def test_infer_stage_writes_each_baselines_samples_and_df(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    params = compose("experiment=ci", "gpu=simulated", "task=[qa]", "gpu.idle_samples=3")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    shutil.copytree(REPO / "data/samples", tmp_path / "data/samples")
    shutil.copytree(REPO / "prompts", tmp_path / "prompts")
    for stage in ("prepare", "model", "infer"):
        assert run_in_process(stage, tmp_path, monkeypatch, capsys)[0] == 0
    run = json.loads((tmp_path / "data/infer/run.json").read_text())
    assert run["window_rules"]["idle_samples"] == 3
    [baseline] = run["idle_baselines"]  # one point: before and after its load
    assert len(baseline["before_samples_w"]) == len(baseline["after_samples_w"]) == 3
    assert (baseline["n_samples"], baseline["df"]) == (6, 5)
    rows = read_jsonl(tmp_path / "data/infer/requests.jsonl")
    assert rows and all(r["idle_power_df"] == 5 for r in rows if r["status"] == "ok")
