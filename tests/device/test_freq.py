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
