"""Clock points as conf/ writes them, checked for form only (pure): MHz, a fraction of the
maximum SM clock, `auto:N`, or null. `device/freq.py` resolves them against a device's clocks."""

from __future__ import annotations

from typing import Any

from llm_energy.config.schema import ConfigError, clock_mhz
from llm_energy.errors import UserFacingError

# A sweep point as written in conf/: MHz (int), a fraction of the maximum SM clock (0.5 or
# "50%"), "auto:N" (N evenly spaced supported clocks), or None (the driver's default clocks).
ClockPoint = int | float | str | None


class ClockPointError(UserFacingError, ValueError):
    """A clock point that is malformed, or does not resolve on a device (one line)."""


def point_kind(point: ClockPoint) -> str:
    """ "default", "mhz", "fraction" or "auto" (ClockPointError when it is none of them)."""
    if point is None:
        return "default"
    if isinstance(point, int) and not isinstance(point, bool):
        return "mhz"
    if isinstance(point, float) and not isinstance(point, bool) and 0 < point <= 1:
        return "fraction"
    if isinstance(point, str):
        text = point.strip()
        if text.endswith("%") and _number(text[:-1]) is not None and 0 < _number(text[:-1]) <= 100:
            return "fraction"
        if text.startswith("auto:") and text[5:].strip().isdigit() and int(text[5:]) >= 1:
            return "auto"
    raise ClockPointError(
        f"{point!r} is not a clock: write MHz (1410), a fraction of the maximum (0.5 or "
        '"50%"), "auto:N" for N evenly spaced clocks, or null for the driver default'
    )


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def clock_point(key: str, value: Any) -> Any:
    """Config check for one sweep point or gpu.freq."""
    try:
        kind = point_kind(value)
    except ClockPointError as exc:
        raise ConfigError(key, value, str(exc).split(": ", 1)[1]) from None
    return clock_mhz(key, value) if kind == "mhz" else value
