"""The simulated GPU against published DVFS and power-limit points (benchmarks/sim_realism.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from llm_energy.sim import model as sm
from llm_energy.sim import roofline as rf
from llm_energy.sim.archspec import arch_spec

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

import sim_realism  # noqa: E402

MISTRAL = {
    "model_type": "mistral",
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "vocab_size": 32000,
}


def test_every_published_point_within_30_percent() -> None:
    rows = sim_realism.realism_table()
    bad = [f"{r.point['id']}: {r.simulated:.3g} vs {r.published_text}" for r in rows if not r.ok]
    assert not bad, bad
    roles = {r.point["role"] for r in rows}
    assert roles == {"fit", "held-out"}  # some points are held out of the fit
    assert all(
        r.point["source"] in json.loads(sim_realism.DATA.read_text())["sources"] for r in rows
    )


def test_script_prints_the_table_and_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    assert sim_realism.main(["--markdown"]) == 0
    out = capsys.readouterr().out
    assert "| source |" in out and "held-out" in out and "points within ±30 %" in out


def test_phase_split_adds_up_and_decode_is_bandwidth_bound() -> None:
    work = rf.Workload(arch_spec(MISTRAL), 2, 1, 512, 64, "static", True)
    top, low = sm.run_workload(sm.H200, work, 1980), sm.run_workload(sm.H200, work, 990)
    for run in (top, low):
        assert run.prefill_energy_j > 0 and run.decode_energy_j > 0
        assert run.prefill_energy_j + run.decode_energy_j == pytest.approx(run.energy_j)
    # Halving the clock: the compute-bound prefill slows far more than the decode does.
    prefill_slowdown = low.cost.prefill_s / top.cost.prefill_s
    decode_slowdown = low.cost.decode_s / top.cost.decode_s
    assert prefill_slowdown > 1.5 and decode_slowdown < 1.35


def test_power_limit_caps_only_the_phase_that_exceeds_it() -> None:
    # A long prompt's prefill draws far above 300 W, bs-1 decode stays under it.
    work = rf.Workload(arch_spec(MISTRAL), 2, 1, 4096, 64, "eager", False)
    free, capped = (
        sm.run_workload(sm.H200, work, 1980),
        sm.run_workload(sm.H200, work, 1980, None, 300.0),
    )
    assert free.prefill_power_w > 300.0 > free.decode_energy_j / free.cost.decode_s
    assert capped.power_capped and capped.prefill_sm_mhz < 1980 and capped.sm_mhz == 1980
    assert capped.cost.decode_s == pytest.approx(free.cost.decode_s)
    assert capped.cost.prefill_s > free.cost.prefill_s


def test_memory_power_does_not_follow_the_sm_clock() -> None:
    # The same memory activity costs the same memory power at any SM clock.
    gpu = sm.H200
    mem_only = [
        sm.power_w(gpu, f, 0.5, 0.5) - sm.power_w(gpu, f, 0.5 * (1 - gpu.mem_power_share), 0.0)
        for f in (990, 1980)
    ]
    assert (
        mem_only[0]
        == pytest.approx(mem_only[1])
        == pytest.approx(gpu.p_dyn_max_w * 0.5 * gpu.mem_power_share)
    )
