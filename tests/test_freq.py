"""Pure frequency helpers: snapping and sweep ordering."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from llm_energy.freq import clean_supported, snap_to_supported, step_mhz, sweep_order

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


def test_sweep_interleave_round_robin() -> None:
    assert sweep_order([1980, 1200, None], 2) == [1980, 1200, None, 1980, 1200, None]


def test_sweep_random_is_seeded_shuffle_of_all_points() -> None:
    pts = [345, 990, 1500, 1980]
    a = sweep_order(pts, 5, "random", seed=1)
    assert a == sweep_order(pts, 5, "random", seed=1)
    assert a != sweep_order(pts, 5, "random", seed=2)
    assert Counter(a) == Counter({p: 5 for p in pts})


@pytest.mark.parametrize(
    ("points", "repeats", "order"),
    [([1], 0, "interleave"), ([1], 1, "zigzag"), ([], 2, "random"), ([1], True, "random")],
)
def test_sweep_rejects_invalid(points: list[int], repeats: int, order: str) -> None:
    with pytest.raises(ValueError):
        sweep_order(points, repeats, order)  # type: ignore[arg-type]
