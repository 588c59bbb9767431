"""Issue 20's end-to-end check on the simulated GPU: a Mistral-7B sweep over clocks and power
limits, stage by stage, gives the phase columns, the shared Pareto of every knob and the
per-phase clock estimate in the report."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml
from test_faults_io import run_in_process

from helpers import compose

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_a_clock_and_power_limit_sweep_reports_where_the_joules_go(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    params = compose(
        "experiment=sim_sweep",
        "model=mistral_7b",
        "model.weights=random",
        "prepare.n_items=3",
        "infer.output_tokens=8",
        "sweep.freqs_mhz=[null,0.8,0.5]",
        "sweep.power_limits_w=[null,300]",
        "gpu.idle_baseline_s=0.2",
        "emissions.enabled=false",
    )
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for folder in ("data/samples", "prompts"):
        shutil.copytree(REPO / folder, tmp_path / folder)
    for stage in ("validate", "prepare", "model", "infer", "aggregate", "stats", "plots"):
        code, err = run_in_process(stage, tmp_path, monkeypatch, capsys)
        assert code == 0, f"{stage}: {err[-2000:]}"
    summary = pd.read_csv(tmp_path / "data/aggregate/summary.csv")
    assert len(summary) == 3 * 3 * 2  # tasks x clocks x power limits
    # a 300 W limit throttles prefill below a 1590 MHz lock: those windows did not hold the cap
    dropped = summary[summary["n"] == 0]
    assert dropped["excluded_reasons"].str.contains("cap not held").all()
    assert (dropped["power_limit_applied_w"] == 300).all() and len(dropped) < len(summary) / 2
    summary = summary[summary["n"] > 0]
    honest = summary["interval_note"].isna()  # 3 items, all of them valid: an interval
    assert honest.sum() >= len(summary) / 2
    for col in ("prefill_energy_j", "decode_energy_j", "prefill_time_s", "decode_time_s"):
        assert summary[f"{col}_mean"].gt(0).all()
        assert summary.loc[honest, f"{col}_ci_high"].notna().all()
    assert summary["decode_share_time_mean"].between(0.5, 1).all()
    total = summary["prefill_energy_j_mean"] + summary["decode_energy_j_mean"]
    assert (abs(total / summary["energy_j_mean"] - 1) < 0.05).all()  # the phases add up
    assert set(summary["power_limit_applied_w"].dropna()) == {300.0}
    estimate = pd.read_csv(tmp_path / "reports/stats/phase_clocks.csv")
    made = estimate["saving_pct"].notna()  # a stratum short of items says "not estimable"
    assert made.sum() >= 4 and estimate.loc[made, "note"].str.startswith("estimate").all()
    assert estimate.loc[~made, "note"].str.startswith("not estimable").all()
    assert (tmp_path / "reports/figures/pareto_knobs.png").stat().st_size > 10_000
    report = (tmp_path / "reports/report.md").read_text()
    assert "decode dominates" in report and "Which knob dominates (qa, mistral-7b" in report
    assert "Per-phase clocks (" in report or "ESTIMATE, per-phase clocks (" in report
    assert "SIMULATED" in report.upper()
