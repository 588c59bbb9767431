"""The infer loop's small parts (runtime/runner.py): idle baselines, run totals, the shapes a
sweep measures, and the window facts a meter reading gives."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from llm_energy.config import Config
from llm_energy.plan import WindowFacts, output_spec, sweep_points


@dataclass(frozen=True)
class IdleBaseline:
    """Idle power at one applied clock, measured before and after a block of load points."""

    freq_applied_mhz: int | None
    before_w: float | None
    after_w: float | None = None

    @property
    def power_w(self) -> float | None:
        values = [v for v in (self.before_w, self.after_w) if v is not None and math.isfinite(v)]
        return sum(values) / len(values) if values else None

    @property
    def se_w(self) -> float | None:
        """Standard error of the mean of the two readings (|before - after| / 2); None with one."""
        if self.before_w is None or self.after_w is None:
            return None
        if not (math.isfinite(self.before_w) and math.isfinite(self.after_w)):
            return None
        return abs(self.before_w - self.after_w) / 2


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def is_oom(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower()


@dataclass
class RunTotals:
    windows: int = 0
    requests_ok: int = 0
    requests_failed: int = 0
    untrusted_windows: int = 0
    device_energy_j: float = 0.0
    truncated_prompts: int = 0
    warnings: list[str] = field(default_factory=list)


def run_shapes(
    cfg: Config, items_by_task: Mapping[str, Sequence[Mapping[str, Any]]]
) -> dict[tuple[Any, ...], dict[str, Any]]:
    """Every distinct (task, engine, batch size, input, output) the sweep will measure."""
    shapes: dict[tuple[Any, ...], dict[str, Any]] = {}
    for point in sweep_points(cfg):
        for task in cfg.tasks:
            if not items_by_task.get(task.name):
                continue
            max_new, mode = output_spec(task, point, cfg)
            key = (task.name, point.engine, point.batch_size, point.input_tokens, max_new, mode)
            shapes.setdefault(
                key,
                {
                    "task": task.name,
                    "engine": point.engine,
                    "batch_size": point.batch_size,
                    "input_tokens_target": point.input_tokens,
                    "output_tokens_target": max_new,
                    "output_mode": mode,
                },
            )
    return shapes


def window_facts(
    reading: Any,
    window_id: int,
    repeats: int,
    freq_requested_mhz: int | None,
    applied_mhz: int | None,
) -> WindowFacts:
    """The per-window columns of a measured batch, from the meter's reading."""
    return WindowFacts(
        window_id=window_id,
        window_energy_j=reading.energy_j,
        window_s=reading.elapsed_s,
        window_repeats=repeats,
        window_trusted=reading.trusted,
        energy_source=reading.energy_source,
        idle_power_w=None,  # filled in with the point's before/after baseline
        freq_requested_mhz=freq_requested_mhz,
        freq_applied_mhz=applied_mhz,
        sm_clock_mean_mhz=reading.sm_clock_mean_mhz,
        sm_clock_min_mhz=reading.sm_clock_min_mhz,
        mem_clock_mhz=reading.mem_clock_mhz,
        clock_event_reasons=reading.clock_event_reasons,
        temperature_c=reading.temperature_c,
        cap_held=reading.cap_held,
        window_busy_s=getattr(reading, "busy_s", None),
        window_tail_s=getattr(reading, "tail_s", 0.0),
        window_tick_aligned=getattr(reading, "tick_aligned", False),
        clock_source=getattr(reading, "clock_source", "none"),
        throttle_source=getattr(reading, "throttle_source", "none"),
        throttle_power_s=getattr(reading, "throttle_power_s", None),
        throttle_thermal_s=getattr(reading, "throttle_thermal_s", None),
    )
