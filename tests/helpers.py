"""Shared test helpers: compose the real config and shrink it; tasks from conf/task over a patch;
the study settings bound into the hardware classes; a patched NVML."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

import yaml

import llm_energy.control.session as control
import llm_energy.device.nvml as nvml_mod
from llm_energy.config.settings import Config, TaskConfig, load_config
from llm_energy.config.tasks import TASK_KINDS
from llm_energy.control.journal import journal_path, read_journal_data
from llm_energy.control.open import DeviceSpec
from llm_energy.control.open import open_device as open_device_
from llm_energy.device.base import Device
from llm_energy.device.cpu import CpuDevice as CpuDevice_
from llm_energy.energy.meter import EnergyMeter as EnergyMeter_
from llm_energy.io.compose import compose_params
from llm_energy.io.prompts import read_prompt_templates
from llm_energy.paths import project_paths
from llm_energy.run.plan import WindowFacts
from llm_energy.sim.device import SimulatedDevice as SimulatedDevice_

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"


def compose(*overrides: str) -> dict[str, Any]:
    return compose_params(CONF, overrides)


def option_names(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def templates(cfg: Config) -> Mapping[str, str]:
    """The prompt templates a stage would pass to InferenceRun (read from the repo's prompts/)."""
    return read_prompt_templates(cfg, project_paths(REPO))


def merged(base: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `patch` laid over it; nested mappings merge key by key."""
    out = dict(base)
    for key, value in patch.items():
        old = out.get(key)
        both = isinstance(old, Mapping) and isinstance(value, Mapping)
        out[key] = merged(old, value) if both else value  # type: ignore[arg-type]
    return out


def task_config(patch: Mapping[str, Any] | TaskConfig) -> TaskConfig:
    """A validated task: conf/task/<kind>.yaml (generation, qa or summarization; qa for any
    other kind) with `patch` merged over it, so tests state only what they change."""
    if isinstance(patch, TaskConfig):
        return patch
    kind = patch.get("kind")
    base_name = kind if kind in TASK_KINDS else "qa"
    base = yaml.safe_load((CONF / "task" / f"{base_name}.yaml").read_text())[base_name]
    raw = merged(base, patch)
    return TaskConfig.parse(f"task.{raw.get('name')}", raw)


# The study settings from conf/ (their only home), bound once for every test; a test's own
# keywords override them.
PARAMS = compose()
GPU = PARAMS["gpu"]
COUNTRY = PARAMS["emissions"]["country_iso_code"]
ClockSession = partial(control.ClockSession, on_other_processes=GPU["on_other_processes"])
EnergyMeter = partial(
    EnergyMeter_,
    min_window_periods=GPU["min_window_periods"],
    min_window_s=GPU["min_window_s"],
    tick_align=GPU["tick_align"],
)
STUDY_DEVICE = DeviceSpec.from_config(
    load_config(PARAMS).gpu, seed=PARAMS["meta"]["seed"], country_iso_code=COUNTRY, state_dir="."
)


def open_device(
    backend: str,
    index: int | str,
    *,
    state_dir: Path,
    sim: Mapping[str, Any] | None = None,
    **changes: Any,
) -> Device:
    """open_device with the study's settings from conf/, `changes` (and `sim` fields) over them."""
    spec = STUDY_DEVICE.but(backend=backend, index=index, state_dir=state_dir, **changes)
    return open_device_(spec.but(sim=dict(sim or {})))


SimulatedDevice = partial(
    SimulatedDevice_,
    gpu=GPU["simulated_gpu"],
    alpha=GPU["simulated_alpha"],
    utilization=GPU["simulated_utilization"],
    seed=PARAMS["meta"]["seed"],
)
CpuDevice = partial(CpuDevice_, country_iso_code=COUNTRY)
# The same settings for a child process, as lines of Python it runs first: DEVICE is the
# study's DeviceSpec (a dict for DeviceSpec.from_dict), SESSION and METER hold the keywords of
# ClockSession and EnergyMeter.
CHILD_SETTINGS = (
    f"DEVICE = {STUDY_DEVICE.to_dict()!r}\n"
    + "\n".join(
        f"{name} = {fn.keywords!r}"
        for name, fn in {"SESSION": ClockSession, "METER": EnergyMeter}.items()
    )
    + "\nfrom llm_energy.control.open import DeviceSpec\n"
)


def busy(seconds: float) -> None:
    """Keep the CPU busy (not asleep) for `seconds`, as a kernel keeps a GPU busy."""
    t = time.perf_counter()
    while time.perf_counter() - t < seconds:
        pass


def sim(state_dir: Path, index: int = 0, **kw: Any) -> SimulatedDevice_:
    """A noiseless simulated GPU keeping its state under `state_dir`."""
    kw.setdefault("noise_rel", 0.0)
    return SimulatedDevice(index, state_dir=state_dir, **kw)


def patch_nvml(monkeypatch: Any, fake: Any, *, privileged: bool = False) -> Any:
    """Make the NVML backend talk to `fake` (all GPUs visible); `privileged` lets it set clocks."""
    monkeypatch.setattr(nvml_mod, "pynvml", fake)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    if privileged:
        monkeypatch.setattr(control, "has_clock_privilege", lambda: True)
    return fake


def die_holding_a_cap(state: Path, spec: DeviceSpec, on_other_processes: str) -> None:
    """A child locks simulated GPU 0 at 1200 MHz under `state` (opened from `spec`)
    and dies without any cleanup (os._exit skips finally, atexit and handlers): its journal stays
    pending and the clock stays locked."""
    child = (
        "import os; from pathlib import Path;"
        "from llm_energy.control.open import DeviceSpec, open_device;"
        "from llm_energy.control.session import ClockSession;"
        f"s = Path({str(state)!r});"
        f"d = open_device(DeviceSpec.from_dict({spec.to_dict()!r}).but("
        "backend='simulated', index=0, state_dir=s));"
        "ClockSession(d, control='lock', sm_freq_mhz=1200, journal_dir=s / 'journal',"
        f" on_other_processes={on_other_processes!r}).__enter__(); os._exit(9)"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    assert subprocess.run([sys.executable, "-c", child], env=env).returncode == 9


class FakeGpu(Device):
    """A fake GPU behind an NVML-like counter with an H200's SM clocks; `label` names it
    (uuid GPU-<label>) and a subclass supplies the readings."""

    backend = "fake"
    label = "fake"

    @property
    def energy_source(self) -> str:
        return "nvml"

    def uuid(self) -> str:
        return f"GPU-{self.label}"

    def name(self) -> str:
        return self.label

    def supported_sm_clocks_mhz(self, mem_mhz: int | None = None) -> list[int]:
        return list(range(1980, 344, -15))


def window_facts(**kw: object) -> WindowFacts:
    """A trusted NVML window at a held 1200 MHz cap; `kw` change any of its facts."""
    base = dict(
        window_id=1,
        window_energy_j=12.0,
        window_s=2.0,
        window_repeats=3,
        window_trusted=True,
        energy_source="nvml",
        idle_power_w=1.0,
        freq_requested_mhz=1200,
        freq_applied_mhz=1200,
        sm_clock_mean_mhz=1200.0,
        sm_clock_min_mhz=1185.0,
        mem_clock_mhz=3201.0,
        clock_event_reasons=0,
        temperature_c=40.0,
        cap_held=True,
    )
    base.update(kw)
    return WindowFacts(**base)  # type: ignore[arg-type]


def experiment_data(shown: list[Any], names: Any) -> dict[str, dict[str, Any]]:
    """`dvc exp show --json` → {experiment name: its data (params, metrics)} for `names`."""
    return {
        rev["name"]: rev["data"]
        for entry in shown
        for exp in entry.get("experiments") or []
        for rev in exp.get("revs", [])
        if rev.get("name") in names
    }


def experiment_metrics(data: Mapping[str, Any]) -> dict[str, Any]:
    """reports/metrics.json of one experiment's `dvc exp show` data."""
    return data["metrics"]["reports/metrics.json"]["data"]


def read_journal(device: Device, journal_dir: str | Path) -> dict[str, Any] | None:
    """The pending journal for this device as stored (a JSON object), or None."""
    return read_journal_data(journal_path(journal_dir, device.uuid()), device.uuid())
