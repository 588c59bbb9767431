"""Real-GPU smoke tests: read-only (observe), never set anything. Skipped without NVML/GPU.

Run on an NVIDIA host with `pytest -m gpu tests/device/test_gpu.py`.
"""

from __future__ import annotations

import sys
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pynvml as real_pynvml
import pytest

import llm_energy.device.nvml as nvml_mod
from helpers import ClockSession, EnergyMeter, open_device
from llm_energy.control.recovery import gpu_status
from llm_energy.device.nvml import NvmlDevice

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not nvml_mod.nvml_available(), reason="needs an NVIDIA GPU with NVML"),
]


class RecordingNvml(types.ModuleType):
    """Pass-through to the real pynvml that records the name of every nvml* call."""

    def __init__(self) -> None:
        super().__init__("pynvml")
        self.called: list[str] = []

    def __getattr__(self, name: str) -> Any:
        attr = getattr(real_pynvml, name)
        if name.startswith("nvml") and callable(attr):

            def wrapped(*args: Any, _f: Callable[..., Any] = attr, _n: str = name) -> Any:
                self.called.append(_n)
                return _f(*args)

            return wrapped
        return attr


@pytest.fixture
def rec(monkeypatch: pytest.MonkeyPatch) -> RecordingNvml:
    r = RecordingNvml()
    monkeypatch.setattr(nvml_mod, "pynvml", r)
    return r


def _no_setters(rec: RecordingNvml) -> None:
    assert [n for n in rec.called if n.startswith(("nvmlDeviceSet", "nvmlDeviceReset"))] == []


def test_reads(rec: RecordingNvml, tmp_path: Path) -> None:
    dev = open_device("auto", 0, state_dir=tmp_path)
    assert isinstance(dev, NvmlDevice) and dev.energy_source == "nvml"
    e0 = dev.energy_counter_j()
    time.sleep(0.3)
    assert dev.energy_counter_j() >= e0
    assert dev.power_w() > 0
    assert dev.sm_clock_mhz() and dev.mem_clock_mhz()
    assert dev.supported_sm_clocks_mhz() and dev.supported_mem_clocks_mhz()
    assert dev.uuid().startswith("GPU-")
    prov = dev.provenance()
    assert prov["name"] and prov["driver_version"] and prov["power_limit_w"]
    dev.other_processes()
    dev.clock_event_reasons()
    _no_setters(rec)
    dev.close()


def test_update_period_and_window(rec: RecordingNvml) -> None:
    dev = NvmlDevice(0)
    meter = EnergyMeter(dev)
    period = meter.measure_update_period_s(max_s=3.0)
    assert 0.0005 < period < 1.0
    with meter.window() as w:
        time.sleep(max(1.2 * meter.min_trusted_s, 0.5))
    r = w.reading
    assert r is not None and r.trusted and r.energy_j > 0 and r.avg_power_w > 10
    _no_setters(rec)
    dev.close()


def test_observe_session_and_status(rec: RecordingNvml, tmp_path: Path) -> None:
    dev = NvmlDevice(0)
    with ClockSession(dev, "observe", 1200, journal_dir=tmp_path) as s:
        assert s.applied_sm_mhz and s.requested_sm_mhz == 1200
    status = gpu_status(dev, tmp_path)
    assert status["pending_journal"] is None and status["sm_clock_mhz"]
    _no_setters(rec)
    dev.close()


def test_cuda_synchronize_when_torch_cuda_is_used(rec: RecordingNvml) -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA here")
    x = torch.ones(1024, 1024, device="cuda")
    _ = x @ x
    assert "torch" in sys.modules
    NvmlDevice(0).synchronize()
    _no_setters(rec)
