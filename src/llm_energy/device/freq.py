"""Pure frequency helpers of every backend: snap to a supported clock, clock step, sweep points."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable

from llm_energy.config.clocks import ClockPoint, ClockPointError, point_kind


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

    Ties go to the lower clock: a cap should never end up above what was asked."""
    _as_mhz(freq_mhz, "requested clock")
    clocks = clean_supported(supported_mhz)
    applied = min(clocks, key=lambda c: (abs(c - freq_mhz), c))
    return applied, applied != freq_mhz


def step_mhz(supported_mhz: Iterable[int | float]) -> int:
    """Smallest spacing between supported clocks (the tolerance for "cap held"); 0 if one clock."""
    clocks = clean_supported(supported_mhz)
    gaps = [b - a for a, b in itertools.pairwise(clocks)]
    return min(gaps) if gaps else 0


def resolve_points(
    points: Iterable[tuple[str, ClockPoint]], supported_mhz: Iterable[int | float]
) -> list[tuple[str, int | None]]:
    """(label, MHz) for every (label, point): fractions of the maximum SM clock and absolute MHz
    snap to the nearest supported clock, `auto:N` spreads N supported clocks evenly from the
    highest to the lowest. A snap of more than one clock step, or two points that land on the same
    clock, is a ClockPointError naming the values (a collapsed sweep measures less than it says)."""
    clocks = clean_supported(supported_mhz)
    step, top = step_mhz(clocks), clocks[-1]
    out: list[tuple[str, int | None]] = []
    for label, point in points:
        kind = point_kind(point)
        if kind == "default":
            out.append((label, None))
        elif kind == "auto":
            n = int(str(point)[5:])
            picks = [clocks[round(i * (len(clocks) - 1) / max(n - 1, 1))] for i in range(n)]
            out += [(f"{label}[{i}]", c) for i, c in enumerate(sorted(set(picks), reverse=True))]
        else:
            fraction = float(str(point).rstrip("%")) / 100 if isinstance(point, str) else point
            target = float(point) if kind == "mhz" else top * fraction  # type: ignore[arg-type]
            applied, _ = snap_to_supported(target, clocks)
            if abs(applied - target) > max(step, 1):
                raise ClockPointError(
                    f"{label}={point} asks for {target:.0f} MHz, {abs(applied - target):.0f} MHz "
                    f"from the nearest supported clock {applied} MHz (more than one "
                    f"{step} MHz step; this device supports {clocks[0]}–{top} MHz)"
                )
            out.append((label, applied))
    seen: dict[int | None, str] = {}
    for label, mhz in out:
        if mhz in seen:
            raise ClockPointError(
                f"{seen[mhz]} and {label} both resolve to "
                f"{'the default clocks' if mhz is None else f'{mhz} MHz'} on this device: "
                "drop one, or use points further apart"
            )
        seen[mhz] = label
    return out
