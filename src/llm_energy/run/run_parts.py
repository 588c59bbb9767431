"""The infer loop's small parts (run/runner.py): idle baselines, run totals, the shapes a
sweep measures, and the window facts a meter reading gives."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from llm_energy.config.settings import Config
from llm_energy.run.plan import PrefillFacts, WindowFacts, output_spec, sweep_points


def _mean(values: Sequence[float]) -> float | None:
    return statistics.fmean(values) if values else None


@dataclass(frozen=True)
class IdleBaseline:
    """Idle power at one applied clock: `gpu.idle_samples` sub-readings before a load point and
    as many after it, pooled so a drift across the point shows in the spread (docs/device.md,
    "Idle baselines"). An interrupted point has its "before" samples only."""

    freq_applied_mhz: int | None
    before_samples_w: tuple[float, ...] = ()
    after_samples_w: tuple[float, ...] | None = None  # None: not measured (yet)

    @staticmethod
    def _finite(values: Sequence[float] | None) -> tuple[float, ...]:
        return tuple(v for v in values or () if math.isfinite(v))

    @property
    def before_w(self) -> float | None:
        return _mean(self._finite(self.before_samples_w))

    @property
    def after_w(self) -> float | None:
        return _mean(self._finite(self.after_samples_w))

    @property
    def samples_w(self) -> tuple[float, ...]:
        """The finite samples, before then after (a reading whose counter reset is NaN)."""
        return self._finite(self.before_samples_w) + self._finite(self.after_samples_w)

    @property
    def n_samples(self) -> int:
        return len(self.samples_w)

    @property
    def power_w(self) -> float | None:
        return _mean(self.samples_w)

    @property
    def se_w(self) -> float | None:
        """Standard error of `power_w`: sample SD / √n; None with fewer than two samples."""
        samples = self.samples_w
        if len(samples) < 2:
            return None
        return statistics.stdev(samples) / math.sqrt(len(samples))

    @property
    def df(self) -> int | None:
        """Degrees of freedom of `se_w` (n − 1); None where there is no SE."""
        n = self.n_samples
        return n - 1 if n >= 2 else None

    def to_dict(self) -> dict[str, Any]:
        """The baseline as run.json lists it."""
        return {
            "freq_applied_mhz": self.freq_applied_mhz,
            "before_samples_w": list(self.before_samples_w),
            "after_samples_w": None if self.after_samples_w is None else list(self.after_samples_w),
            **{k: getattr(self, k) for k in "before_w after_w power_w n_samples se_w df".split()},
        }


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclass
class RunTotals:
    windows: int = 0
    requests_ok: int = 0
    requests_failed: int = 0
    untrusted_windows: int = 0
    device_energy_j: float = 0.0
    truncated_prompts: int = 0
    warnings: list[str] = field(default_factory=list)


_SHAPE_KEYS = "task engine batch_size input_tokens_target output_tokens_target output_mode".split()


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
            shapes.setdefault(key, dict(zip(_SHAPE_KEYS, key, strict=True)))
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
        power_limit_held=getattr(reading, "power_limit_held", None),
    )


def prefill_facts(reading: Any, repeats: int) -> PrefillFacts:
    """The per-window columns of a batch's prefill window, from the meter's reading."""
    return PrefillFacts(
        prefill_window_energy_j=reading.energy_j,
        prefill_window_s=reading.elapsed_s,
        prefill_window_busy_s=getattr(reading, "busy_s", None),
        prefill_window_tail_s=getattr(reading, "tail_s", 0.0),
        prefill_window_repeats=repeats,
        prefill_window_trusted=reading.trusted,
    )
