"""Warm-up to steady state before anything is measured (docs/device.md, "Warm-up"): a fresh
process runs its first ~10 s of `generate` ~3x slower on an H200 (allocator, kernels, clocks
ramping), which one short warm-up request does not cover."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


def is_steady(latencies_s: Sequence[float], k: int, tolerance: float) -> bool:
    """Whether the last `k` latencies agree: (max - min) / median <= tolerance."""
    if k < 2 or len(latencies_s) < k:
        return False
    last = latencies_s[-k:]
    mid = statistics.median(last)
    return mid > 0 and (max(last) - min(last)) / mid <= tolerance


@dataclass
class ShapeWarmup:
    shape: Mapping[str, Any]
    latencies_s: list[float] = field(default_factory=list)
    steady: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.shape,
            "calls": len(self.latencies_s),
            "latencies_s": [round(x, 6) for x in self.latencies_s],
            "steady": self.steady,
        }


@dataclass
class WarmupRecord:
    """What the warm-up did, for run.json."""

    shapes: list[ShapeWarmup]
    elapsed_s: float
    stopped_by: str  # "steady" | "time_cap" | "disabled"
    k: int
    tolerance: float
    max_s: float

    @property
    def all_steady(self) -> bool:
        return all(s.steady for s in self.shapes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "stopped_by": self.stopped_by,
            "elapsed_s": round(self.elapsed_s, 3),
            "steady_k": self.k,
            "tolerance": self.tolerance,
            "max_s": self.max_s,
            "all_steady": self.all_steady,
            "shapes": [s.to_dict() for s in self.shapes],
        }


def warm_up(
    shapes: Mapping[Hashable, Mapping[str, Any]],
    call: Callable[[Hashable], float],
    *,
    min_calls: int,
    k: int,
    tolerance: float,
    max_s: float,
    clock: Callable[[], float] = time.perf_counter,
) -> WarmupRecord:
    """Run `call(key)` (returns its latency in s) for each shape: `min_calls` rounds (0: no
    warm-up), then rounds over the shapes not yet steady, until all are or `max_s` has passed."""
    states = [ShapeWarmup(dict(s)) for s in shapes.values()]
    record = WarmupRecord(states, 0.0, "disabled", k, tolerance, max_s)
    if min_calls == 0 or not shapes:
        return record
    by_key = dict(zip(shapes, record.shapes, strict=True))
    t0, rounds = clock(), 0
    while True:
        pending = [key for key, s in by_key.items() if not s.steady or rounds < min_calls]
        if not pending:
            record.stopped_by = "steady"
            break
        if rounds >= min_calls and clock() - t0 >= max_s:
            record.stopped_by = "time_cap"
            break
        for key in pending:
            state = by_key[key]
            state.latencies_s.append(float(call(key)))
            state.steady = is_steady(state.latencies_s, k, tolerance)
        rounds += 1
    record.elapsed_s = clock() - t0
    return record
