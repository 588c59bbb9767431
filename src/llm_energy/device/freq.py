"""Pure frequency helpers: snapping a requested clock to a supported one, the clock step.

No hardware access here, so everything is unit-testable and shared by all device backends.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable


def _as_mhz(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{what} must be a number of MHz, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{what} must be a positive, finite number of MHz, got {value!r}")
    return round(value)


def clean_supported(supported_mhz: Iterable[int | float]) -> list[int]:
    """Sorted (ascending), de-duplicated, validated list of supported clocks."""
    clocks = sorted({_as_mhz(f, "supported clock") for f in supported_mhz})
    if not clocks:
        raise ValueError("the list of supported clocks is empty: the device reported no clocks")
    return clocks


def snap_to_supported(
    freq_mhz: int | float, supported_mhz: Iterable[int | float]
) -> tuple[int, bool]:
    """Nearest supported clock to `freq_mhz` and whether it differs from the request.

    Ties go to the lower clock: a cap should never end up above what was asked.
    """
    _as_mhz(freq_mhz, "requested clock")
    clocks = clean_supported(supported_mhz)
    applied = min(clocks, key=lambda c: (abs(c - freq_mhz), c))
    return applied, applied != freq_mhz


def step_mhz(supported_mhz: Iterable[int | float]) -> int:
    """Smallest spacing between supported clocks (the tolerance for "cap held"); 0 if one clock."""
    clocks = clean_supported(supported_mhz)
    gaps = [b - a for a, b in itertools.pairwise(clocks)]
    return min(gaps) if gaps else 0
