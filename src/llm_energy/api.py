"""Measure your own workload, or cap the GPU around it, with the pipeline's own machinery:
`measure` is one `EnergyMeter` window, `locked_clocks` a journaled, restored `ClockSession`, with
settings from conf/gpu. Usage: README.md, "Measure your own workload (Python API)"."""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llm_energy.paths import project_paths
from llm_energy.record_types import energy_kind

ROOT = Path(__file__).resolve().parents[2]  # the clone this package runs from


@dataclass
class Measurement:
    """One window: filled in when the `with` block ends; `tokens` may be set inside it."""

    tokens: int | None = None
    energy_j: float | None = None
    time_s: float | None = None
    energy_source: str | None = None
    energy_kind: str | None = None  # measured | estimated | simulated: never mix them
    trusted: bool = False  # long enough for the counter's granularity (min_trusted_s)
    tick_aligned: bool = False
    cap_held: bool | None = None
    reading: Any = None  # the full WindowReading

    @property
    def j_per_token(self) -> float | None:
        if self.energy_j is None or not self.tokens or math.isnan(self.energy_j):
            return None
        return self.energy_j / self.tokens

    @property
    def avg_power_w(self) -> float | None:
        return None if self.reading is None else self.reading.avg_power_w


def gpu_settings(backend: str, root: str | Path | None = None) -> dict[str, Any]:
    """conf/gpu/<backend>.yaml composed over conf/gpu/default.yaml (the pipeline's values)."""
    from llm_energy.io.compose import compose_params

    conf = Path(root or os.environ.get("LLM_ENERGY_ROOT") or ROOT) / "conf"
    if not conf.is_dir():
        raise FileNotFoundError(
            f"no conf/ at {conf.parent}: set LLM_ENERGY_ROOT to the llm-energy clone, "
            "or pass settings={...}: the gpu keys plus seed and country_iso_code"
        )
    group = backend if (conf / "gpu" / f"{backend}.yaml").exists() else "default"
    params = compose_params(conf, [f"gpu={group}"])
    seed, country = params["meta"]["seed"], params["emissions"]["country_iso_code"]
    return params["gpu"] | {"backend": backend, "seed": seed, "country_iso_code": country}


def _device_spec(backend: str, index: int | str, settings: Mapping[str, Any]) -> Any:
    from llm_energy.config.sections import GpuConfig
    from llm_energy.control.open import DeviceSpec

    extra = ("seed", "country_iso_code")
    gpu = GpuConfig.parse({k: v for k, v in settings.items() if k not in extra})
    state_dir = project_paths(ROOT).gpu_state_dir(gpu.state_dir)
    seed, country = (settings[k] for k in extra)  # meta.seed, emissions.country_iso_code
    spec = DeviceSpec.from_config(gpu, seed=seed, country_iso_code=country, state_dir=state_dir)
    return spec.but(index=index)


def energy_meter(device: Any, settings: Mapping[str, Any]) -> Any:
    """The `EnergyMeter` behind `measure` and the infer stage's windows, set from the gpu
    settings: aligned to the counter's ticks, trusted once past min_window_periods/_s."""
    from llm_energy.energy.meter import EnergyMeter

    keys = ("min_window_periods", "min_window_s", "tick_align")
    return EnergyMeter(device, **{k: settings[k] for k in keys})


@contextlib.contextmanager
def measure(
    *,
    backend: str = "auto",
    index: int | str = 0,
    device: Any = None,
    settings: Mapping[str, Any] | None = None,
    cap_mhz: int | None = None,
) -> Iterator[Measurement]:
    """Energy and time of the block, as one tick-aligned window on `device` (or on the device
    `backend`/`index` name, opened for the block); `cap_mhz`: the cap in force, to check it held."""
    from llm_energy.control.open import open_device

    owned = device is None
    cfg = dict(settings or gpu_settings(backend if owned else device.backend))
    if owned:
        device = open_device(_device_spec(backend, index, cfg))
    try:
        meter = energy_meter(device, cfg)
        result = Measurement()
        with meter.window(cap_mhz) as window:
            yield result
        result.reading = reading = window.reading
        result.energy_j, result.time_s = reading.energy_j, reading.elapsed_s
        result.energy_source = reading.energy_source
        result.energy_kind = energy_kind(reading.energy_source)
        result.trusted, result.tick_aligned = reading.trusted, reading.tick_aligned
        result.cap_held = reading.cap_held
    finally:
        if owned:
            device.close()


@contextlib.contextmanager
def locked_clocks(
    *,
    sm_mhz: int | None,
    mem_mhz: int | None = None,
    power_limit_w: float | None = None,
    backend: str = "auto",
    index: int | str = 0,
    settings: Mapping[str, Any] | None = None,
    device: Any = None,
    control: str = "lock",
    planned_sm_mhz: Sequence[int | None] | None = None,
    state_dir: Path | None = None,
) -> Iterator[Any]:
    """Lock the SM (and memory) clock and set the power limit for the block, each put back after
    it (None: left as is). Yields the `ClockSession` (`.device`, `.applied_sm_mhz`, `.record()`);
    a one-line `DeviceError` where clocks cannot be locked. The infer stage passes its own
    `device`, `control` and the caps it will visit (`planned_sm_mhz`, checked up front)."""
    from llm_energy.control.open import open_device
    from llm_energy.control.session import ClockSession
    from llm_energy.paths import gpu_journal_dir, gpu_lock_dir

    cfg = dict(settings or gpu_settings(backend if device is None else device.backend))
    with contextlib.ExitStack() as stack:
        if device is None:
            spec = _device_spec(backend, index, cfg).but(exclusive=True)
            device, state_dir = stack.enter_context(open_device(spec)), spec.state_dir
        state_dir = state_dir or project_paths(ROOT).gpu_state_dir(cfg.get("state_dir"))
        yield stack.enter_context(
            ClockSession(
                device,
                control,
                sm_mhz,
                mem_mhz,
                journal_dir=gpu_journal_dir(state_dir),
                lock_dir=gpu_lock_dir(state_dir),
                on_other_processes=cfg["on_other_processes"],
                power_limit_w=power_limit_w,
                planned_sm_freqs_mhz=planned_sm_mhz,
            )
        )
