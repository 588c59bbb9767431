"""Pure frequency helpers: snapping and the clock step."""

from __future__ import annotations

import math

import pytest

from llm_energy.device.freq import clean_supported, snap_to_supported, step_mhz

H200 = list(range(1980, 344, -15))  # NVML order: highest first


def test_snap_exact_is_not_snapped() -> None:
    assert snap_to_supported(1200, H200) == (1200, False)


def test_snap_to_nearest() -> None:
    assert snap_to_supported(1203, H200) == (1200, True)
    assert snap_to_supported(1209, H200) == (1215, True)


def test_snap_tie_goes_to_lower_clock() -> None:
    # 1207.5 is exactly between 1200 and 1215: a cap must not end up above the request.
    assert snap_to_supported(1207.5, H200) == (1200, True)


def test_snap_outside_range_clamps_to_ends() -> None:
    assert snap_to_supported(100, H200) == (345, True)
    assert snap_to_supported(2500, H200) == (1980, True)


def test_snap_float_request() -> None:
    assert snap_to_supported(1200.0, H200) == (1200, False)


@pytest.mark.parametrize("bad", [0, -15, math.nan, math.inf, "1200", None, True])
def test_snap_rejects_invalid_request(bad: object) -> None:
    with pytest.raises(ValueError, match="requested clock"):
        snap_to_supported(bad, H200)  # type: ignore[arg-type]


def test_snap_rejects_empty_or_invalid_supported() -> None:
    with pytest.raises(ValueError, match="empty"):
        snap_to_supported(1200, [])
    with pytest.raises(ValueError, match="supported clock"):
        snap_to_supported(1200, [1200, -1])


def test_clean_supported_and_step() -> None:
    assert clean_supported([15, 30, 15, 45]) == [15, 30, 45]
    assert step_mhz(H200) == 15
    assert step_mhz([1410]) == 0


# ------------------------------------------------------------- clock points relative to the GPU
H200_MHZ = list(range(345, 1981, 15))
A100_MHZ = list(range(210, 1411, 15))
SHIPPED = [None, 1.0, 0.8, 0.65, 0.5, 0.35]  # conf/sweep/freqs.yaml and paper.yaml


def _points(values: list) -> list[tuple[str, object]]:
    return [(f"sweep.freqs_mhz[{i}]", v) for i, v in enumerate(values)]


def test_relative_points_fit_every_gpu() -> None:
    from llm_energy.device.freq import resolve_points

    h200 = [mhz for _, mhz in resolve_points(_points(SHIPPED), H200_MHZ)]
    a100 = [mhz for _, mhz in resolve_points(_points(SHIPPED), A100_MHZ)]
    assert h200 == [None, 1980, 1590, 1290, 990, 690]
    assert a100 == [None, 1410, 1125, 915, 705, 495]  # the same sweep, six distinct points
    assert resolve_points(_points(["50%"]), A100_MHZ) == [("sweep.freqs_mhz[0]", 705)]
    auto = resolve_points(_points([None, "auto:5"]), H200_MHZ)
    assert [mhz for _, mhz in auto] == [None, 1980, 1575, 1155, 750, 345]  # max to min, evenly


@pytest.mark.parametrize(
    ("values", "clocks", "message"),
    [
        ([1980, 1605], A100_MHZ, "sweep.freqs_mhz[0]=1980 asks for 1980 MHz, 570 MHz from"),
        ([300], H200_MHZ, "300 asks for 300 MHz, 45 MHz from the nearest supported clock 345"),
        ([0.5, "50%"], H200_MHZ, "sweep.freqs_mhz[0] and sweep.freqs_mhz[1] both resolve to 990"),
        ([1405, 1410], A100_MHZ, "both resolve to 1410 MHz"),
    ],
)
def test_points_that_do_not_resolve_are_one_line_naming_them(
    values: list, clocks: list[int], message: str
) -> None:
    from llm_energy.config.clocks import ClockPointError
    from llm_energy.device.freq import resolve_points

    with pytest.raises(ClockPointError) as ei:
        resolve_points(_points(values), clocks)
    assert message in str(ei.value) and "\n" not in str(ei.value)


def test_a_run_resolves_its_config_on_the_device() -> None:
    from helpers import compose
    from llm_energy.config.settings import load_config
    from llm_energy.run.plan import needs_resolving, resolve_clocks

    cfg = load_config(compose("experiment=sim_sweep"))
    assert cfg.sweep.freqs_mhz == tuple(SHIPPED) and needs_resolving(cfg)
    on_a100 = resolve_clocks(cfg, A100_MHZ)
    assert on_a100.sweep.freqs_mhz == (None, 1410, 1125, 915, 705, 495)
    assert not needs_resolving(load_config(compose()))  # default clocks: nothing to resolve


def test_relative_points_need_a_device_that_reports_clocks() -> None:
    from helpers import compose
    from llm_energy.config.clocks import ClockPointError
    from llm_energy.config.settings import load_config
    from llm_energy.run.plan import resolve_clocks

    mhz = load_config(compose("gpu.freq=1200"))
    assert resolve_clocks(mhz, []) is mhz  # MHz on a cpu: the clock session refuses, as before
    with pytest.raises(ClockPointError, match=r"0\.5 is relative to the GPU's clocks"):
        resolve_clocks(load_config(compose("gpu.freq=0.5")), [])
