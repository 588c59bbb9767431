"""Physics of the simulated GPU: calibration, monotonicity and hand-computed values."""

from __future__ import annotations

import itertools

import pytest

from llm_energy import simmodel as sm

H200 = sm.get_gpu_model("h200")


def test_h200_clock_table_matches_anchor() -> None:
    clocks = H200.supported_sm_clocks_mhz()
    assert len(clocks) == 110 and clocks[0] == 1980 and clocks[-1] == 345  # anchors README
    assert H200.mem_clocks_mhz == (3201, 2201) and H200.power_limit_w == 700.0


def test_idle_power_matches_calibration() -> None:
    assert sm.idle_power_w(H200, 345) == pytest.approx(126.6, abs=1e-9)  # measured at 345 MHz
    # A locked high clock idles a little higher (clock trees keep toggling), still well under load.
    assert 126.6 < sm.idle_power_w(H200, 1980) < 150


def test_hand_computed_power_and_latency() -> None:
    # V(990)/Vmax = 0.7 + 0.3 * (990 - 345) / (1980 - 345)
    v = 0.7 + 0.3 * 645 / 1635
    p_static = 126.6 - 575 * 0.03 * (345 / 1980) * 0.7**2
    expected = p_static + 575 * 0.15 * (990 / 1980) * v**2
    assert sm.voltage_rel(H200, 990) == pytest.approx(v)
    assert sm.power_w(H200, 990, 0.15) == pytest.approx(expected)
    assert sm.power_w(H200, 990, 0.15) == pytest.approx(154.008, abs=1e-3)
    # t = t_ref * (alpha * fmax / f + 1 - alpha) = 2 * (0.6 * 2 + 0.4) = 3.2
    assert sm.latency_s(H200, 2.0, 990, 0.6) == pytest.approx(3.2)
    assert sm.energy_j(H200, 2.0, 990, 0.15, 0.6) == pytest.approx(expected * 3.2)


def test_latency_scale_is_one_at_max_clocks_and_memory_term() -> None:
    assert sm.latency_scale(H200, 1980, 0.6) == pytest.approx(1.0)
    # The memory-bound share scales with the memory clock: 0.4 * 3201 / 2201 at f_max.
    assert sm.latency_scale(H200, 1980, 0.6, 2201) == pytest.approx(0.6 + 0.4 * 3201 / 2201)


@pytest.mark.parametrize("key", sorted(sm.GPU_MODELS))
def test_monotonic_power_up_latency_down_with_clock(key: str) -> None:
    gpu = sm.get_gpu_model(key)
    clocks = sorted(gpu.supported_sm_clocks_mhz())
    powers = [sm.power_w(gpu, f, 0.3) for f in clocks]
    lat = [sm.latency_s(gpu, 1.0, f, 0.6) for f in clocks]
    assert all(a < b for a, b in itertools.pairwise(powers))
    assert all(a > b for a, b in itertools.pairwise(lat))
    assert sm.idle_power_w(gpu, gpu.idle_ref_mhz) == pytest.approx(gpu.idle_ref_w)
    assert gpu.p_static_w > 0


def test_energy_per_work_is_u_shaped_for_compute_bound_work() -> None:
    # High utilisation, mostly clock-bound work: dynamic energy falls with V^2 at lower clocks
    # while static energy grows with the longer runtime, so the optimum is in the middle.
    clocks = sorted(H200.supported_sm_clocks_mhz())
    energy = [sm.energy_j(H200, 1.0, f, 1.0, 0.9) for f in clocks]
    best = clocks[energy.index(min(energy))]
    assert clocks[0] < best < clocks[-1]
    assert energy[0] > min(energy) and energy[-1] > min(energy)


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
