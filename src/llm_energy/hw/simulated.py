"""Simulated GPU: the physics of `llm_energy.simmodel` driven by real CPU wall time.

A measurement window (`window_begin` .. `window_end`) marks the "GPU" busy. Real wall time
spent busy is taken as the workload's time at the maximum clocks (t_ref) and converted to
model time t(f, m) and energy P(f, u)·t(f, m); idle time passes 1:1 at the idle power of the
current clock. `now_s()` and `energy_counter_j()` expose that model clock and counter, so the
meter needs no special case. Optional per-window multiplicative noise comes from a seeded RNG.

Clock state (locked SM / memory clocks, power limit) lives in a JSON file under `state_dir`,
keyed by a stable fake UUID, so a lock survives the process exactly like a real driver lock
(crash/restore is testable across processes). The file is the single source of truth and is
re-read on every access.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import time
from pathlib import Path
from typing import Any

from llm_energy import simmodel
from llm_energy.hw.base import (
    ClockState,
    Device,
    ThrottleCounters,
    atomic_write_json,
    pid_alive,
    read_json,
)
from llm_energy.hw.errors import DeviceError

DEFAULT_UTILIZATION = 0.15  # H200 anchors: 7B-class batch-1 decode draws ~200 W => u ~ 0.14
DEFAULT_ALPHA = 0.6
DEFAULT_NOISE_REL = 0.02


class SimulatedDevice(Device):
    backend = "simulated"

    def __init__(
        self,
        index: int = 0,
        *,
        state_dir: str | Path,
        gpu: str = "h200",
        alpha: float = DEFAULT_ALPHA,
        utilization: float = DEFAULT_UTILIZATION,
        seed: int = 0,
        noise_rel: float = DEFAULT_NOISE_REL,
        update_period_s: float | None = None,
        counter_ticks: bool = False,
    ) -> None:
        super().__init__(index)
        self.gpu = simmodel.get_gpu_model(gpu)
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"simulated alpha must lie in [0, 1], got {alpha!r}")
        if not 0.0 <= utilization <= 1.0:
            raise ValueError(f"simulated utilization must lie in [0, 1], got {utilization!r}")
        if not 0.0 <= noise_rel < 0.5:
            raise ValueError(f"simulated noise_rel must lie in [0, 0.5), got {noise_rel!r}")
        self.alpha = float(alpha)
        self.utilization = float(utilization)
        self.seed = int(seed)
        self.noise_rel = float(noise_rel)
        self.update_period_s = (
            float(update_period_s) if update_period_s is not None else self.gpu.update_period_s
        )
        self.state_dir = Path(state_dir)
        self._uuid = simmodel.fake_uuid(self.gpu.key, self.index)
        self.state_path = self.state_dir / f"simulated-{self._uuid}.json"
        self._busy_path = self.state_dir / f"simulated-{self._uuid}.busy"
        self._rng = random.Random(self.seed)
        # Model clock and counter, advanced lazily from real time on every read.
        self._last_real_s = time.perf_counter()
        self._model_s = 0.0
        self._energy_j = 0.0
        self._busy = False
        self._power_noise = 1.0
        self._time_noise = 1.0
        # Like NVML, the published counter can move only every update period (model time).
        self.counter_ticks = bool(counter_ticks)
        self._published_j = 0.0
        self._power_throttle_s = 0.0  # model time spent busy under the power cap

    # ------------------------------------------------------------------ state file
    def default_state(self) -> ClockState:
        return ClockState(None, None, self.gpu.power_limit_w, locks_known=True)

    def clock_state(self) -> ClockState:
        data = read_json(self.state_path)
        return self.default_state() if data is None else ClockState.from_dict(data)

    def _write_state(self, state: ClockState) -> None:
        self._advance()  # account the time spent under the old state first
        data = state.to_dict() | {"uuid": self._uuid, "gpu": self.gpu.key}
        atomic_write_json(self.state_path, data)

    # ------------------------------------------------------------------ model clock
    def _busy_clock(self, state: ClockState) -> tuple[int, bool]:
        target = state.sm_locked_mhz or self.gpu.sm_max_mhz
        limit = state.power_limit_w if state.power_limit_w is not None else self.gpu.power_limit_w
        return simmodel.power_capped_sm_mhz(self.gpu, target, self.utilization, limit)

    def _idle_clock(self, state: ClockState) -> int:
        # A min=max lock holds the clock even when idle; unlocked the driver drops to idle_sm.
        return state.sm_locked_mhz or self.gpu.idle_sm_mhz

    def _mem_clock(self, state: ClockState) -> int:
        return state.mem_locked_mhz or self.gpu.mem_max_mhz

    def _rates(self, busy: bool, state: ClockState) -> tuple[float, float]:
        """(model seconds per real second, watts) in the given activity state."""
        if busy:
            f, _ = self._busy_clock(state)
            scale = simmodel.latency_scale(self.gpu, f, self.alpha, self._mem_clock(state))
            return scale * self._time_noise, simmodel.power_w(
                self.gpu, f, self.utilization
            ) * self._power_noise
        return 1.0, simmodel.idle_power_w(self.gpu, self._idle_clock(state))

    def _advance(self) -> None:
        now = time.perf_counter()
        dt, self._last_real_s = now - self._last_real_s, now
        if dt <= 0:
            return
        state = self.clock_state()
        time_rate, power = self._rates(self._busy, state)
        dmodel = dt * time_rate
        t_old, e_old = self._model_s, self._energy_j
        self._model_s += dmodel
        self._energy_j += power * dmodel
        if self._busy and self._busy_clock(state)[1]:
            self._power_throttle_s += dmodel
        period = self.update_period_s
        if not self.counter_ticks or period <= 0:
            self._published_j = self._energy_j
        elif math.floor(self._model_s / period) > math.floor(t_old / period):
            # Power is constant within one advance: the energy at the last tick boundary.
            tick_s = math.floor(self._model_s / period) * period
            self._published_j = e_old + power * (tick_s - t_old)

    def _draw_noise(self) -> float:
        if self.noise_rel <= 0:
            return 1.0
        return min(max(self._rng.gauss(1.0, self.noise_rel), 0.5), 1.5)

    def window_begin(self) -> None:
        self._advance()
        self._busy = True
        self._power_noise, self._time_noise = self._draw_noise(), self._draw_noise()
        # Tell other processes (the power timeline) that the "GPU" is busy.
        with contextlib.suppress(OSError):
            self.state_dir.mkdir(parents=True, exist_ok=True)
            self._busy_path.write_text(str(os.getpid()))

    def window_end(self) -> None:
        self._advance()
        self._busy = False
        self._power_noise = self._time_noise = 1.0
        with contextlib.suppress(OSError):
            if self._busy_path.read_text().strip() == str(os.getpid()):
                self._busy_path.unlink()

    def _busy_anywhere(self) -> bool:
        if self._busy:
            return True
        try:
            pid = int(self._busy_path.read_text().strip())
        except (OSError, ValueError):
            return False
        return pid != os.getpid() and pid_alive(pid)

    # ------------------------------------------------------------------ identity
    @property
    def energy_source(self) -> str:
        return "simulated"

    def uuid(self) -> str:
        return self._uuid

    def name(self) -> str:
        return self.gpu.name

    def open_spec(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "index": self.index,
            "state_dir": str(self.state_dir),
            "simulated_gpu": self.gpu.key,
            "simulated_alpha": self.alpha,
            "simulated_utilization": self.utilization,
            "simulated_noise_rel": self.noise_rel,
            "simulated_update_period_s": self.update_period_s,
            "seed": self.seed,
        }

    def provenance(self) -> dict[str, Any]:
        g = self.gpu
        return {
            "backend": self.backend,
            "energy_source": self.energy_source,
            "index": self.index,
            "name": g.name,
            "uuid": self._uuid,
            "driver_version": None,
            "nvml_version": None,
            "cuda_driver_version": None,
            "power_limit_w": self.power_limit_w(),
            "persistence_mode": None,
            "simulated_gpu": g.key,
            "model": {
                "p_static_w": g.p_static_w,
                "p_dyn_max_w": g.p_dyn_max_w,
                "v_min_rel": g.v_min_rel,
                "u_idle": g.u_idle,
                "sm_range_mhz": [g.sm_min_mhz, g.sm_max_mhz],
                "sm_step_mhz": g.sm_step_mhz,
                "mem_clocks_mhz": list(g.mem_clocks_mhz),
                "alpha": self.alpha,
                "utilization": self.utilization,
                "noise_rel": self.noise_rel,
                "seed": self.seed,
                "update_period_s": self.update_period_s,
            },
            "state_file": str(self.state_path),
        }

    # ------------------------------------------------------------------ energy / power
    def now_s(self) -> float:
        self._advance()
        return self._model_s

    def energy_counter_j(self) -> float:
        self._advance()
        return self._published_j

    def read_counter(self) -> tuple[float, float]:
        self._advance()  # one advance: energy and model time describe the same instant
        return self._published_j, self._model_s

    def throttle_counters(self) -> ThrottleCounters | None:
        self._advance()
        return ThrottleCounters("simulated", self._power_throttle_s, 0.0)

    def nominal_update_period_s(self) -> float | None:
        return self.update_period_s

    def power_w(self) -> float:
        state = self.clock_state()
        busy = self._busy_anywhere()
        _, power = self._rates(busy, state)
        return power

    # ------------------------------------------------------------------ clocks / sensors
    def sm_clock_mhz(self) -> int | None:
        state = self.clock_state()
        return self._busy_clock(state)[0] if self._busy_anywhere() else self._idle_clock(state)

    def mem_clock_mhz(self) -> int | None:
        return self._mem_clock(self.clock_state())

    def clock_event_reasons(self) -> int:
        state = self.clock_state()
        mask = 0
        if state.sm_locked_mhz is not None and state.sm_locked_mhz < self.gpu.sm_max_mhz:
            mask |= simmodel.REASON_APPLICATIONS_CLOCKS_SETTING
        if self._busy_anywhere():
            if self._busy_clock(state)[1]:
                mask |= simmodel.REASON_SW_POWER_CAP
        else:
            mask |= simmodel.REASON_GPU_IDLE
        return mask

    def temperature_c(self) -> float | None:
        return simmodel.temperature_c(self.gpu, self.power_w())

    def supported_mem_clocks_mhz(self) -> list[int]:
        return list(self.gpu.mem_clocks_mhz)

    def supported_sm_clocks_mhz(self, mem_mhz: int | None = None) -> list[int]:
        return self.gpu.supported_sm_clocks_mhz()

    def power_limit_w(self) -> float | None:
        return self.clock_state().power_limit_w

    # ------------------------------------------------------------------ control
    def can_control_clocks(self) -> bool:
        return True

    def _check_range(self, what: str, freq_mhz: int, lo: int, hi: int) -> int:
        if not lo <= int(freq_mhz) <= hi:
            raise DeviceError(
                f"Cannot lock the {what} clock of simulated GPU {self.index} to {freq_mhz} MHz",
                f"the {self.gpu.key} model supports {lo}-{hi} MHz",
                "Pick a supported clock (see gpu status).",
            )
        return int(freq_mhz)

    def lock_sm_clocks(self, freq_mhz: int) -> None:
        f = self._check_range("SM", freq_mhz, self.gpu.sm_min_mhz, self.gpu.sm_max_mhz)
        s = self.clock_state()
        self._write_state(ClockState(f, s.mem_locked_mhz, s.power_limit_w))

    def reset_sm_clocks(self) -> None:
        s = self.clock_state()
        self._write_state(ClockState(None, s.mem_locked_mhz, s.power_limit_w))

    def lock_mem_clocks(self, freq_mhz: int) -> None:
        f = self._check_range(
            "memory", freq_mhz, min(self.gpu.mem_clocks_mhz), self.gpu.mem_max_mhz
        )
        s = self.clock_state()
        self._write_state(ClockState(s.sm_locked_mhz, f, s.power_limit_w))

    def reset_mem_clocks(self) -> None:
        s = self.clock_state()
        self._write_state(ClockState(s.sm_locked_mhz, None, s.power_limit_w))

    def set_power_limit_w(self, power_w: float) -> None:
        if not self.gpu.power_limit_min_w <= power_w <= self.gpu.power_limit_w:
            raise DeviceError(
                f"Cannot set the power limit of simulated GPU {self.index} to {power_w:g} W",
                f"the {self.gpu.key} model allows {self.gpu.power_limit_min_w:g}-{self.gpu.power_limit_w:g} W",
                "Pick a limit inside that range.",
            )
        s = self.clock_state()
        self._write_state(ClockState(s.sm_locked_mhz, s.mem_locked_mhz, float(power_w)))

    def close(self) -> None:
        if self._busy:
            self.window_end()


MAX_SIMULATED_GPUS = 64


def simulated_gpus(gpu: str, count: int) -> list[tuple[int, str]]:
    """(index, UUID) of the `count` simulated GPUs of one model: distinct, stable UUIDs."""
    key = simmodel.get_gpu_model(gpu).key
    return [(i, simmodel.fake_uuid(key, i)) for i in range(count)]


def find_simulated_gpu(uuid: str) -> tuple[str, int] | None:
    """(model, index) of the simulated GPU with this UUID, None when it is not a simulated one:
    a journal names its GPU by UUID only, whatever model the run simulated."""
    for key in simmodel.GPU_MODELS:
        for i in range(MAX_SIMULATED_GPUS):
            if simmodel.fake_uuid(key, i) == uuid:
                return key, i
    return None


__all__ = [
    "DEFAULT_ALPHA",
    "DEFAULT_NOISE_REL",
    "DEFAULT_UTILIZATION",
    "MAX_SIMULATED_GPUS",
    "SimulatedDevice",
    "find_simulated_gpu",
    "simulated_gpus",
]
