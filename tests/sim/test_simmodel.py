"""Physics of the simulated GPU: calibration, monotonicity and hand-computed values."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import yaml

from llm_energy.sim import archspec
from llm_energy.sim import calib as simcalib
from llm_energy.sim import model as sm
from llm_energy.sim import roofline as rf

H200 = sm.get_gpu_model("h200")
REPO = Path(__file__).resolve().parents[2]
ANCHORS = REPO.parent / "shared" / "anchors"


def arch(stem: str) -> rf.ArchSpec:
    return archspec.arch_spec(
        yaml.safe_load((REPO / "conf" / "model" / f"{stem}.yaml").read_text())["arch"]
    )


def test_h200_clock_table_matches_anchor() -> None:
    clocks = H200.supported_sm_clocks_mhz()
    assert len(clocks) == 110 and clocks[0] == 1980 and clocks[-1] == 345  # anchors README
    assert H200.mem_clocks_mhz == (3201, 2201) and H200.power_limit_w == 700.0


def test_idle_power_matches_calibration() -> None:
    assert sm.idle_power_w(H200, 345) == pytest.approx(126.6, abs=1e-9)  # measured at 345 MHz
    # A locked high clock idles a little higher (clock trees keep toggling), no more than a
    # launch-bound GPT-2 decode draws (128 W at 1980 MHz, anchors).
    assert 126.6 < sm.idle_power_w(H200, 1980) < 130


def test_hand_computed_power_and_latency() -> None:
    # V(990)/Vmax = 0.7 + 0.3 * (990 - 345) / (1980 - 345)
    v = 0.7 + 0.3 * 645 / 1635
    p_static = 126.6 - 575 * 0.004 * (345 / 1980) * 0.7**2
    expected = p_static + 575 * 0.15 * (990 / 1980) * v**2
    assert sm.voltage_rel(H200, 990) == pytest.approx(v)
    assert sm.power_w(H200, 990, 0.15) == pytest.approx(expected)
    assert sm.power_w(H200, 990, 0.15) == pytest.approx(155.284, abs=1e-3)
    # t = t_ref * (alpha * fmax / f + 1 - alpha) = 2 * (0.6 * 2 + 0.4) = 3.2
    assert 2.0 * sm.latency_scale(H200, 990, 0.6) == pytest.approx(3.2)


def test_latency_scale_is_one_at_max_clocks_and_memory_term() -> None:
    assert sm.latency_scale(H200, 1980, 0.6) == pytest.approx(1.0)
    # The memory-bound share scales with the memory clock: 0.4 * 3201 / 2201 at f_max.
    assert sm.latency_scale(H200, 1980, 0.6, 2201) == pytest.approx(0.6 + 0.4 * 3201 / 2201)


@pytest.mark.parametrize("key", sorted(sm.GPU_MODELS))
def test_monotonic_power_up_latency_down_with_clock(key: str) -> None:
    gpu = sm.get_gpu_model(key)
    clocks = sorted(gpu.supported_sm_clocks_mhz())
    powers = [sm.power_w(gpu, f, 0.3) for f in clocks]
    lat = [sm.latency_scale(gpu, f, 0.6) for f in clocks]
    assert all(a < b for a, b in itertools.pairwise(powers))
    assert all(a > b for a, b in itertools.pairwise(lat))
    assert sm.idle_power_w(gpu, gpu.idle_ref_mhz) == pytest.approx(gpu.idle_ref_w)
    assert gpu.p_static_w > 0


def test_power_cap_lowers_effective_clock() -> None:
    f, capped = sm.power_capped_sm_mhz(H200, 1980, 1.0, 400.0)
    assert capped and f < 1980 and sm.power_w(H200, f, 1.0) <= 400.0
    assert sm.power_w(H200, f + 15, 1.0) > 400.0  # the highest clock that fits
    assert sm.power_capped_sm_mhz(H200, 1500, 0.15, 700.0) == (1500, False)
    # An unsupported target resolves to the supported clock below it without calling it a cap.
    assert sm.power_capped_sm_mhz(H200, 1000, 0.15, 700.0) == (990, False)


def test_temperature_rises_with_power() -> None:
    assert sm.temperature_c(H200, 126.6) < sm.temperature_c(H200, 614.0) < 90


def test_anchor_scale_of_load_power() -> None:
    # Mistral-7B batch-1 generate at default clocks drew ~204 W on the H200 (anchors).
    assert sm.power_w(H200, 1980, 0.15) == pytest.approx(204, rel=0.06)


def test_fake_uuid_stable_and_distinct() -> None:
    assert sm.fake_uuid("h200", 0) == sm.fake_uuid("h200", 0)
    assert sm.fake_uuid("h200", 0) != sm.fake_uuid("h200", 1) != sm.fake_uuid("a100", 1)
    assert sm.fake_uuid("h200", 0).startswith("GPU-")


def test_invalid_inputs() -> None:
    with pytest.raises(ValueError, match="unknown simulated GPU"):
        sm.get_gpu_model("v100")
    with pytest.raises(ValueError, match="utilization"):
        sm.power_w(H200, 1000, 1.5)
    with pytest.raises(ValueError, match="alpha"):
        sm.latency_scale(H200, 1000, -0.1)
    with pytest.raises(ValueError, match="SM clock"):
        sm.power_w(H200, 0, 0.5)


# ------------------------------------------------------------------------ workloads


def test_workload_power_cap_lowers_the_clock_and_says_so() -> None:
    work = rf.Workload(arch("mistral_7b"), 2, 64, 2048, 1)  # a compute-bound prefill
    free = sm.run_workload(H200, work, 1980)
    capped = sm.run_workload(H200, work, 1980, power_limit_w=300.0)
    assert not free.power_capped and free.sm_mhz == 1980 and free.power_w > 500
    assert capped.power_capped and capped.sm_mhz < 1980 and capped.power_w <= 300.0
    assert capped.cost.time_s > free.cost.time_s
    # An unsupported target resolves to the supported clock below it, not a cap.
    assert sm.run_workload(H200, work, 1000).sm_mhz == 990


def test_workload_dvfs_launch_bound_versus_memory_bound() -> None:
    small = rf.Workload(arch("gpt2"), 2, 1, 128, 128)  # eager batch 1: the host is the limit
    big = rf.Workload(arch("mistral_7b"), 2, 1, 128, 128, "static", compiled=True)
    for work, max_slowdown in ((small, 1.02), (big, 1.35)):
        hi, lo = sm.run_workload(H200, work, 1980), sm.run_workload(H200, work, 1005)
        assert lo.cost.time_s / hi.cost.time_s < max_slowdown  # 1005 MHz: bandwidth still full
        assert lo.energy_j < hi.energy_j  # lower V^2 f: capping saves energy
    # The launch-bound GPT-2 draws little more than idle; a memory-bound 7B model far more.
    assert sm.run_workload(H200, small, 1980).power_w < 145
    assert sm.run_workload(H200, big, 1980).power_w > 300


def test_workload_energy_is_u_shaped_for_compute_bound_work() -> None:
    work = rf.Workload(arch("gpt_j_6b"), 2, 32, 1024, 1)
    clocks = sorted(H200.supported_sm_clocks_mhz())
    energy = [sm.run_workload(H200, work, f).energy_j for f in clocks]
    best = clocks[energy.index(min(energy))]
    assert clocks[0] < best < clocks[-1]


def test_calibration_labels() -> None:
    assert "measured" in H200.calibration
    for key in ("h100", "a100"):
        assert sm.get_gpu_model(key).calibration == "spec-sheet estimate"


@pytest.mark.skipif(not ANCHORS.is_dir(), reason="measured anchors not present")
def test_h200_calibration_within_30_percent_of_every_anchor() -> None:
    rows = json.loads((ANCHORS / "h200_bare_generate.json").read_text())["rows"]
    anchors = simcalib.bare_generate_anchors(rows) + simcalib.readme_anchors()
    archs = {
        name: yaml.safe_load((REPO / "conf" / "model" / f"{stem}.yaml").read_text())["arch"]
        for name, stem in simcalib.ANCHOR_MODELS.items()
    }
    table = simcalib.calibration_table(H200, anchors, archs)
    assert len(table) == 16  # 6 architectures x 2 shapes, + 2 static and 2 eager (README)
    bad = [
        f"{r.model} {r.engine} b{r.batch}: latency {r.latency_error:+.0%}, J/token {r.j_per_token_error:+.0%}"
        for r in table
        if abs(r.latency_error) > 0.30 or abs(r.j_per_token_error) > 0.30
    ]
    assert not bad, bad
