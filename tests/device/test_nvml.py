"""NVML backend against a fake `pynvml` that records every call (tests/fake_nvml.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import types
from pathlib import Path

import pynvml as real_pynvml
import pytest

import llm_energy.device.nvml as nvml_mod
from fake_nvml import SETTER_PREFIXES, FakeNvml, Proc, Sample, nvml_error
from helpers import open_device, patch_nvml
from llm_energy.device.cpu import CpuDevice as CpuDevice_
from llm_energy.device.errors import (
    DeviceError,
    DeviceNotFoundError,
    NotSupportedError,
    PermissionDeniedError,
)
from llm_energy.device.nvml import NvmlDevice, translate_nvml_error

SRC = Path(__file__).resolve().parents[2] / "src" / "llm_energy"


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeNvml:
    return patch_nvml(monkeypatch, FakeNvml())


# ------------------------------------------------------------------------ import / discovery


def test_import_makes_no_nvml_call_and_pulls_no_torch() -> None:
    code = (
        "import sys, pynvml\n"
        "def boom(*a, **k): raise SystemExit('NVML called at import')\n"
        "for n in dir(pynvml):\n"
        "    if n.startswith('nvml'): setattr(pynvml, n, boom)\n"
        "import llm_energy.device, llm_energy.device.nvml, llm_energy.device.cpu, llm_energy.sim.device\n"
        "import llm_energy.control.session, llm_energy.energy.meter, llm_energy.energy.timeline, llm_energy.device.freq, llm_energy.sim.model\n"
        "assert 'torch' not in sys.modules and 'codecarbon' not in sys.modules, sorted(sys.modules)\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_application_clock_api_is_never_used() -> None:
    forbidden = (
        "nvmlDeviceSet" + "ApplicationsClocks"
    )  # split so this file does not contain it either
    hits = [p for p in SRC.rglob("*.py") if forbidden in p.read_text()]
    assert hits == []


def test_library_not_found_is_device_not_found(fake: FakeNvml) -> None:
    fake.fail["nvmlInit"] = nvml_error(real_pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)
    with pytest.raises(DeviceNotFoundError) as ei:
        NvmlDevice(0)
    msg = str(ei.value)
    assert "\n" not in msg and "Cannot open NVIDIA GPU 0" in msg and "gpu.backend=cpu" in msg


def test_auto_falls_back_to_cpu_without_nvml(fake: FakeNvml, tmp_path: Path) -> None:
    fake.fail["nvmlInit"] = nvml_error(real_pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)
    dev = open_device("auto", 0, state_dir=tmp_path, rapl_root=tmp_path / "no-rapl")
    assert isinstance(dev, CpuDevice_) and not dev.can_control_clocks()
    with pytest.raises(DeviceNotFoundError):
        open_device("nvml", 0, state_dir=tmp_path)


def test_auto_picks_nvml_when_a_gpu_is_visible(fake: FakeNvml, tmp_path: Path) -> None:
    dev = open_device("auto", 0, state_dir=tmp_path)
    assert isinstance(dev, NvmlDevice) and dev.energy_source == "nvml"


def test_zero_gpus_and_bad_index(fake: FakeNvml) -> None:
    fake.n_gpus = 0
    with pytest.raises(DeviceNotFoundError, match="sees no GPU"):
        NvmlDevice(0)
    fake.n_gpus = 1
    with pytest.raises(DeviceNotFoundError, match="out of range"):
        NvmlDevice(3)
    # the handle was released on failure
    assert fake.names().count("nvmlShutdown") == 2


def test_real_nvml_absent_here_raises_device_not_found(tmp_path: Path) -> None:
    if nvml_mod.nvml_available():
        pytest.skip("a real GPU is visible on this host")
    with pytest.raises(DeviceNotFoundError):
        NvmlDevice(0)
    assert isinstance(open_device("auto", 0, state_dir=tmp_path, rapl_root=tmp_path), CpuDevice_)


# ------------------------------------------------------------------------ reads and units


def test_reads_convert_units(fake: FakeNvml) -> None:
    dev = NvmlDevice(0)
    fake.energy_mj = 1_234_567
    assert dev.energy_counter_j() == pytest.approx(1234.567)
    assert dev.power_w() == pytest.approx(126.6)
    assert dev.sm_clock_mhz() == 345 and dev.mem_clock_mhz() == 3201
    assert dev.power_limit_w() == pytest.approx(700.0)
    assert dev.temperature_c() == 31.0
    assert dev.clock_event_reasons() == 0x1
    assert dev.supported_mem_clocks_mhz() == [3201, 2201]
    assert dev.supported_sm_clocks_mhz()[0] == 1980 and dev.sm_step_mhz() == 15
    assert dev.uuid() == "GPU-fake-0000" and dev.name() == "NVIDIA H200"
    assert dev.can_control_clocks() and dev.requires_privilege
    assert dev.nominal_update_period_s() is None  # must be measured
    assert fake.setter_calls() == []


def test_supported_sm_clocks_asked_for_given_memory_clock(fake: FakeNvml) -> None:
    dev = NvmlDevice(0)
    dev.supported_sm_clocks_mhz(2201)
    assert ("nvmlDeviceGetSupportedGraphicsClocks", ("h0", 2201)) in fake.calls


def test_other_processes_exclude_self(fake: FakeNvml) -> None:
    fake.procs = [Proc(os.getpid(), 1 << 30), Proc(4242, 2 << 30)]
    procs = NvmlDevice(0).other_processes()
    assert [(p.pid, p.used_memory_bytes, p.name) for p in procs] == [(4242, 2 << 30, "proc4242")]


def test_clock_samples_since_timestamp(fake: FakeNvml) -> None:
    dev = NvmlDevice(0)
    assert dev.sm_clock_samples_mhz(100) is None  # NVML_ERROR_NOT_FOUND: no samples yet
    fake.samples = [Sample(50, 345), Sample(150, 1200), Sample(250, 1185)]
    assert dev.sm_clock_samples_mhz(100) == [1200.0, 1185.0]


def test_event_reasons_fall_back_to_throttle_reasons(
    fake: FakeNvml, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delattr(FakeNvml, "nvmlDeviceGetCurrentClocksEventReasons")
    assert NvmlDevice(0).clock_event_reasons() == 0x1
    assert "nvmlDeviceGetCurrentClocksThrottleReasons" in fake.names()


def test_provenance(fake: FakeNvml) -> None:
    prov = NvmlDevice(0).provenance()
    assert prov["name"] == "NVIDIA H200" and prov["uuid"] == "GPU-fake-0000"
    assert prov["driver_version"] == "580.159.04" and prov["nvml_version"] == "13.580.159.04"
    assert prov["cuda_driver_version"] == "13.0"
    assert prov["power_limit_w"] == 700.0 and prov["power_limit_range_w"] == [200.0, 700.0]
    assert prov["persistence_mode"] == 1 and prov["supported_sm_clocks_n"] == 110
    assert fake.setter_calls() == []


def test_cuda_visible_devices_index_and_uuid(monkeypatch: pytest.MonkeyPatch) -> None:
    f = FakeNvml(n_gpus=4, uuids=["GPU-aaaa", "GPU-bbbb", "GPU-cccc", "GPU-dddd"])
    monkeypatch.setattr(nvml_mod, "pynvml", f)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert NvmlDevice(1).uuid() == "GPU-dddd"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-bb")
    assert NvmlDevice(0).uuid() == "GPU-bbbb"
    with pytest.raises(DeviceNotFoundError, match="exposes only 1"):
        NvmlDevice(1)


def test_synchronize_uses_torch_only_when_cuda_is_initialised(
    fake: FakeNvml, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    cuda = types.SimpleNamespace(
        is_available=lambda: True, is_initialized=lambda: True, synchronize=synced.append
    )
    monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(cuda=cuda))
    NvmlDevice(0).synchronize()
    assert synced == [0]
    cuda.is_initialized = lambda: False
    NvmlDevice(0).synchronize()
    assert synced == [0]


# ------------------------------------------------------------------------ error translation


@pytest.mark.parametrize(
    ("code", "cls", "why"),
    [
        (real_pynvml.NVML_ERROR_NO_PERMISSION, PermissionDeniedError, "insufficient permissions"),
        (real_pynvml.NVML_ERROR_NOT_SUPPORTED, NotSupportedError, "does not support"),
        (real_pynvml.NVML_ERROR_FUNCTION_NOT_FOUND, NotSupportedError, "lacks this function"),
        (real_pynvml.NVML_ERROR_GPU_IS_LOST, DeviceNotFoundError, "fell off the bus"),
        (real_pynvml.NVML_ERROR_DRIVER_NOT_LOADED, DeviceNotFoundError, "driver is not loaded"),
        (real_pynvml.NVML_ERROR_UNKNOWN, DeviceError, "NVML error"),
    ],
)
def test_setter_errors_are_translated(
    fake: FakeNvml, code: int, cls: type[DeviceError], why: str
) -> None:
    dev = NvmlDevice(0)
    fake.fail["nvmlDeviceSetGpuLockedClocks"] = nvml_error(code)
    with pytest.raises(cls) as ei:
        dev.lock_sm_clocks(1200)
    msg = str(ei.value)
    assert type(ei.value) is cls and "\n" not in msg
    assert msg.startswith("Cannot lock the SM clock of GPU 0 to 1200 MHz: ") and why in msg
    assert isinstance(ei.value.__cause__, real_pynvml.NVMLError)


def test_translate_keeps_explicit_todo() -> None:
    err = translate_nvml_error(
        nvml_error(real_pynvml.NVML_ERROR_NO_PERMISSION), "Cannot x", "Do y."
    )
    assert str(err) == "Cannot x: NVML reports insufficient permissions. Do y."


def test_setters_call_locked_clock_api_min_equals_max(fake: FakeNvml) -> None:
    dev = NvmlDevice(0)
    dev.lock_sm_clocks(1200)
    dev.lock_mem_clocks(2201)
    dev.reset_sm_clocks()
    dev.reset_mem_clocks()
    dev.set_power_limit_w(650)
    assert [(n, a) for n, a in fake.calls if n.startswith(SETTER_PREFIXES)] == [
        ("nvmlDeviceSetGpuLockedClocks", ("h0", 1200, 1200)),
        ("nvmlDeviceSetMemoryLockedClocks", ("h0", 2201, 2201)),
        ("nvmlDeviceResetGpuLockedClocks", ("h0",)),
        ("nvmlDeviceResetMemoryLockedClocks", ("h0",)),
        ("nvmlDeviceSetPowerManagementLimit", ("h0", 650_000)),
    ]
