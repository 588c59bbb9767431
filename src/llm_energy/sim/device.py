"""Simulated GPU: the physics of `llm_energy.sim.model` on a model clock (docs/device.md, "The
workload clock"; the legacy wall clock scales real busy time by t(f, m)). Clock state lives in a
JSON file under `state_dir` keyed by a stable fake UUID, so a lock survives the process."""

from __future__ import annotations

import dataclasses
import os
import random
import time
from pathlib import Path
from typing import Any

from llm_energy.device.base import (
    ClockState,
    Device,
    ThrottleCounters,
    atomic_write_json,
    read_json,
)
from llm_energy.device.errors import DeviceError
from llm_energy.sim import model as simmodel
from llm_energy.sim import roofline
from llm_energy.sim.busy import BusyMarker
from llm_energy.sim.clock import ModelClock, WorkloadTiming

DEFAULT_NOISE_REL = 0.02


class SimulatedDevice(Device):
    backend = "simulated"

    def __init__(
        self,
        index: int,
        *,
        state_dir: str | Path,
        gpu: str,
        alpha: float,  # gpu.simulated_alpha
        utilization: float,  # gpu.simulated_utilization
        seed: int,
        noise_rel: float = DEFAULT_NOISE_REL,
        update_period_s: float | None = None,
        counter_ticks: bool = False,
    ) -> None:
        super().__init__(index)
        self.gpu = simmodel.get_gpu_model(gpu)
        simmodel.check_settings(alpha, utilization, noise_rel)
        self.alpha, self.utilization = float(alpha), float(utilization)
        self.seed, self.noise_rel = int(seed), float(noise_rel)
        self.update_period_s = (
            float(update_period_s) if update_period_s is not None else self.gpu.update_period_s
        )
        self.state_dir = Path(state_dir)
        self._uuid = simmodel.fake_uuid(self.gpu.key, self.index)
        self.state_path = self.state_dir / f"simulated-{self._uuid}.json"
        self._marker = BusyMarker(self.state_dir / f"simulated-{self._uuid}.busy")
        self._rng = random.Random(self.seed)
        # Like NVML, the published counter can move only every update period (model time).
        self.counter_ticks = bool(counter_ticks)
        self._clock = ModelClock(self.update_period_s, ticks=self.counter_ticks)
        self._last_real_s = time.perf_counter()  # wall clock mode and non-ticking idle only
        self._busy = False
        self._power_noise = 1.0
        self._time_noise = 1.0
        self.workload_clock = False  # set by use_workload_clock / the first run_workload
        self._fresh_idle = False  # the first read after a workload window sees its end
        self._last_run: simmodel.WorkloadRun | None = None  # this window's latest call

    def default_state(self) -> ClockState:
        return ClockState(None, None, self.gpu.power_limit_w, locks_known=True)

    def clock_state(self) -> ClockState:
        data = read_json(self.state_path)
        return self.default_state() if data is None else ClockState.from_dict(data)

    def _write_state(self, state: ClockState) -> None:
        if not self.workload_clock:  # (the workload clock's idle moves only at counter reads)
            self._advance()  # account the time spent under the old state first
        data = state.to_dict() | {"uuid": self._uuid, "gpu": self.gpu.key}
        atomic_write_json(self.state_path, data)

    def _target_clock(self, state: ClockState) -> int:
        """The supported SM clock a busy GPU runs at before any power cap."""
        target = state.sm_locked_mhz or self.gpu.sm_max_mhz
        return simmodel.power_capped_sm_mhz(self.gpu, target, 0.0, float("inf"))[0]

    def _busy_clock(self, state: ClockState) -> tuple[int, bool]:
        if self.workload_clock:
            if self._last_run is not None:
                return self._last_run.sm_mhz, self._last_run.power_capped
            return self._target_clock(state), False
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
        if busy and self.workload_clock:
            run = self._last_run
            if run is None:  # busy, nothing ran yet: the GPU waits at its target clock
                return 1.0, simmodel.idle_power_w(self.gpu, self._target_clock(state))
            return 1.0, run.power_w * self._power_noise
        if busy:
            f, _ = self._busy_clock(state)
            scale = simmodel.latency_scale(self.gpu, f, self.alpha, self._mem_clock(state))
            power = simmodel.power_w(self.gpu, f, self.utilization) * self._power_noise
            return scale * self._time_noise, power
        return 1.0, simmodel.idle_power_w(self.gpu, self._idle_clock(state))

    def _advance(self) -> None:
        """Bring the model clock up to date at a read (see the module doc for both modes)."""
        now = time.perf_counter()
        dt, self._last_real_s = max(now - self._last_real_s, 0.0), now
        if self.workload_clock and self._busy:
            return  # busy time comes from run_workload only
        state = self.clock_state()
        time_rate, power = self._rates(self._busy, state)
        if not self.workload_clock:
            throttled = self._busy and self._busy_clock(state)[1]
            self._clock.add_s(dt * time_rate, power, throttled=throttled)
        elif self._fresh_idle:
            self._fresh_idle = False
        elif not self._clock.next_tick(power):
            self._clock.add_s(dt, power)  # a counter without ticks: idle follows real time

    def _draw_noise(self) -> float:
        if self.noise_rel <= 0:
            return 1.0
        return min(max(self._rng.gauss(1.0, self.noise_rel), 0.5), 1.5)

    def use_workload_clock(self) -> None:
        """From now on busy time comes only from `run_workload` (the generator reports every
        call); real time inside a window no longer counts. Irreversible for this device."""
        if not self.workload_clock:
            self._advance()  # account what the wall clock ran so far
            self.workload_clock = True
            self._clock.make_exact()

    def run_workload(self, work: roofline.Workload) -> WorkloadTiming:
        """Run one generate call on the model: its roofline time and energy at the clocks in
        force (power-capped if its power exceeds the limit), with this window's noise."""
        self.use_workload_clock()
        state = self.clock_state()
        limit = state.power_limit_w if state.power_limit_w is not None else self.gpu.power_limit_w
        target, mem = self._target_clock(state), self._mem_clock(state)
        run = simmodel.run_workload(self.gpu, work, target, mem, limit)
        time_s = run.cost.time_s * self._time_noise
        power = run.power_w * self._power_noise
        if self._busy:
            self._last_run = run
            self._clock.add_s(time_s, power, throttled=run.power_capped)
            self._marker.mark(f"{os.getpid()} {power:.3f} {run.sm_mhz}")
        ttft_s = run.cost.prefill_s * self._time_noise
        return WorkloadTiming(
            time_s=time_s,
            ttft_s=ttft_s,
            energy_j=power * time_s,
            sm_mhz=run.sm_mhz,
            power_capped=run.power_capped,
            accounted=self._busy,
            prefill_energy_j=run.prefill_power_w * self._power_noise * ttft_s,
        )

    def idle_for_s(self, time_s: float) -> None:
        """Idle through `time_s` of model time in a window (a group's GPU while the first works)."""
        self.use_workload_clock()
        if self._busy:
            state = self.clock_state()
            self._clock.add_s(time_s, simmodel.idle_power_w(self.gpu, self._idle_clock(state)))

    def _switch_busy(self, busy: bool) -> None:
        if self.workload_clock:
            # Busy from the model time of the last read: no real time leaks in; the first
            # read after a window sees its end.
            self._last_real_s = time.perf_counter()
            self._fresh_idle = not busy
        else:
            self._advance()
        self._busy = busy
        self._last_run = None

    def window_begin(self) -> None:
        self._switch_busy(True)
        self._power_noise, self._time_noise = self._draw_noise(), self._draw_noise()
        if self.workload_clock:  # waiting for its first call at the target clock
            self._marker.mark(f"{os.getpid()} {self._rates(True, self.clock_state())[1]:.3f}")
        else:
            self._marker.mark(str(os.getpid()))

    def window_end(self) -> None:
        self._switch_busy(False)
        self._power_noise = self._time_noise = 1.0
        self._marker.clear_if_mine()

    def _busy_anywhere(self) -> bool:
        return self._busy or self._marker.held_by_other()

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
            "sim": {
                "gpu": self.gpu.key,
                "alpha": self.alpha,
                "utilization": self.utilization,
                "noise_rel": self.noise_rel,
                "update_period_s": self.update_period_s,
            },
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
            "calibration": g.calibration,
            "clock": "workload" if self.workload_clock else "wall",
            "model": {
                "p_static_w": g.p_static_w,
                "p_dyn_max_w": g.p_dyn_max_w,
                "v_min_rel": g.v_min_rel,
                "mem_power_share": g.mem_power_share,
                "u_idle": g.u_idle,
                "sm_range_mhz": [g.sm_min_mhz, g.sm_max_mhz],
                "sm_step_mhz": g.sm_step_mhz,
                "mem_clocks_mhz": list(g.mem_clocks_mhz),
                "alpha": self.alpha,
                "utilization": self.utilization,
                "noise_rel": self.noise_rel,
                "seed": self.seed,
                "update_period_s": self.update_period_s,
                "roofline": dataclasses.asdict(g.roofline),
            },
            "state_file": str(self.state_path),
        }

    def now_s(self) -> float:
        self._advance()
        return self._clock.now_s

    def energy_counter_j(self) -> float:
        self._advance()
        return self._clock.published_j

    def read_counter(self) -> tuple[float, float]:
        self._advance()  # one advance: energy and model time describe the same instant
        return self._clock.published_j, self._clock.now_s

    def throttle_counters(self) -> ThrottleCounters | None:
        if self._busy:  # idle, it cannot move: no reason to move the clock either
            self._advance()
        return ThrottleCounters("simulated", self._clock.throttle_s, 0.0)

    def nominal_update_period_s(self) -> float | None:
        return self.update_period_s

    def power_w(self) -> float:
        state = self.clock_state()
        if not self._busy and self._busy_anywhere():
            marker = self._marker.read()
            if marker is not None and marker[1] is not None:
                return marker[1]  # another process runs workloads: the power it reported
        return self._rates(self._busy_anywhere(), state)[1]

    def sm_clock_mhz(self) -> int | None:
        state = self.clock_state()
        return self._busy_clock(state)[0] if self._busy_anywhere() else self._idle_clock(state)

    def mem_clock_mhz(self) -> int | None:
        return self._mem_clock(self.clock_state())

    def clock_event_reasons(self) -> int:
        state = self.clock_state()
        busy = self._busy_anywhere()
        capped = busy and self._busy_clock(state)[1]
        return simmodel.clock_event_reasons(self.gpu, state.sm_locked_mhz, busy, capped)

    def temperature_c(self) -> float | None:
        return simmodel.temperature_c(self.gpu, self.power_w())

    def supported_mem_clocks_mhz(self) -> list[int]:
        return list(self.gpu.mem_clocks_mhz)

    def supported_sm_clocks_mhz(self, mem_mhz: int | None = None) -> list[int]:
        return self.gpu.supported_sm_clocks_mhz()

    def power_limit_w(self) -> float | None:
        return self.clock_state().power_limit_w

    def power_limit_range_w(self) -> tuple[float, float] | None:
        return (self.gpu.power_limit_min_w, self.gpu.power_limit_w)

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
        self._write_state(dataclasses.replace(self.clock_state(), sm_locked_mhz=f))

    def reset_sm_clocks(self) -> None:
        self._write_state(dataclasses.replace(self.clock_state(), sm_locked_mhz=None))

    def lock_mem_clocks(self, freq_mhz: int) -> None:
        lowest = min(self.gpu.mem_clocks_mhz)
        f = self._check_range("memory", freq_mhz, lowest, self.gpu.mem_max_mhz)
        self._write_state(dataclasses.replace(self.clock_state(), mem_locked_mhz=f))

    def reset_mem_clocks(self) -> None:
        self._write_state(dataclasses.replace(self.clock_state(), mem_locked_mhz=None))

    def set_power_limit_w(self, power_w: float) -> None:
        if not self.gpu.power_limit_min_w <= power_w <= self.gpu.power_limit_w:
            raise DeviceError(
                f"Cannot set the power limit of simulated GPU {self.index} to {power_w:g} W",
                f"the {self.gpu.key} model allows {self.gpu.power_limit_min_w:g}-{self.gpu.power_limit_w:g} W",
                "Pick a limit inside that range.",
            )
        self._write_state(dataclasses.replace(self.clock_state(), power_limit_w=float(power_w)))

    def close(self) -> None:
        if self._busy:
            self.window_end()
