"""`llm-energy doctor` on a GPU host (fake NVML, fake torch): torch's CUDA build, the torch
device matched to the NVML GPU by UUID, the power-limit range and whether this user may lock."""

from __future__ import annotations

import json
import sys
import types
import uuid
from pathlib import Path

import pytest

import llm_energy.cli.probe as probe_mod
import llm_energy.device.nvml as nvml_mod
from fake_nvml import FakeNvml, nvml_error
from helpers import patch_nvml
from llm_energy.cli.main import main

REPO = Path(__file__).resolve().parents[2]
GPU_A = "GPU-0a1b2c3d-0000-1111-2222-333344445555"
GPU_B = "GPU-9f8e7d6c-aaaa-bbbb-cccc-ddddeeeeffff"
GPU_C = "GPU-12345678-1234-1234-1234-123456789abc"


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeNvml:
    """Two NVIDIA GPUs (A, B in PCI order); the doctor runs as root unless a test says not."""
    f = FakeNvml(n_gpus=2, uuids=[GPU_A, GPU_B])
    f.energy_step_mj = 1_000  # the counter moves on every read: the period probe ends at once
    monkeypatch.setattr(probe_mod, "has_clock_privilege", lambda: True)
    for var in ("SLURM_GPU_FREQ", "SLURMD_TRES_FREQ", "SLURM_JOB_GPU_FREQ"):
        monkeypatch.delenv(var, raising=False)
    return patch_nvml(monkeypatch, f)


def fake_torch(monkeypatch: pytest.MonkeyPatch, cuda_uuids: list[str] | None) -> None:
    """torch whose CUDA devices have these UUIDs, in CUDA order (None: a CPU-only build)."""
    props = [
        types.SimpleNamespace(uuid=uuid.UUID(u.removeprefix("GPU-"))) for u in cuda_uuids or []
    ]
    cuda = types.SimpleNamespace(
        is_available=lambda: bool(props),
        is_initialized=lambda: False,
        device_count=lambda: len(props),
        get_device_properties=lambda i: props[i],
    )
    build = None if cuda_uuids is None else "13.0"
    torch = types.SimpleNamespace(
        __version__="2.13.0+cpu" if build is None else "2.13.0+cu130",
        version=types.SimpleNamespace(cuda=build),
        cuda=cuda,
    )
    monkeypatch.setitem(sys.modules, "torch", torch)


def doctor(
    root: Path, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, dict[str, str]]:
    """Exit code and the screen's rows by label."""
    code = main(["--root", str(root), "doctor", "gpu.backend=nvml", *args])
    out = capsys.readouterr()
    assert "Traceback" not in out.out + out.err
    rows = {}
    for line in out.out.splitlines()[1:]:
        label, value = line[2:16].strip(), line[16:]
        rows.setdefault(label, value)
    return code, rows


def test_torch_device_is_matched_by_uuid_not_by_index(
    root: Path, capsys: pytest.CaptureFixture[str], fake: FakeNvml, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_torch(monkeypatch, [GPU_B, GPU_A])  # CUDA numbers GPUs fastest-first: B before A
    code, rows = doctor(root, capsys, "gpu.index=0")
    assert code == 0
    assert rows["torch"] == "2.13.0+cu130 (CUDA 13.0 build) · 2 CUDA device(s)"
    assert rows["torch device"] == f"cuda:1 = {GPU_A} (matched by UUID)"
    assert rows["versions"].startswith("driver 580.159.04")


def test_cuda_visible_devices_picks_the_nvml_gpu_and_torch_renumbers(
    root: Path, capsys: pytest.CaptureFixture[str], fake: FakeNvml, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", GPU_B)
    fake_torch(monkeypatch, [GPU_B])  # torch sees only the visible GPU, as cuda:0
    _, rows = doctor(root, capsys, "gpu.index=0")
    assert rows["device"].endswith(f"index 0, {GPU_B})")
    assert rows["torch device"] == f"cuda:0 = {GPU_B} (matched by UUID)"


def test_uuid_mismatch_is_one_line(
    root: Path, capsys: pytest.CaptureFixture[str], fake: FakeNvml, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_torch(monkeypatch, [GPU_C])
    _, rows = doctor(root, capsys)
    got = rows["torch device"]
    assert got.startswith(f"n/a (Cannot run the model on the measured GPU {GPU_A}: torch does not")
    assert f"cuda:0={GPU_C}" in got and "CUDA_VISIBLE_DEVICES" in got


def test_torch_without_cuda(
    root: Path, capsys: pytest.CaptureFixture[str], fake: FakeNvml, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_torch(monkeypatch, None)
    _, rows = doctor(root, capsys)
    assert rows["torch"] == "2.13.0+cpu (CPU-only build) · CUDA not available"
    assert "cannot use CUDA" in rows["torch device"]
    assert "Install a CUDA build of torch" in rows["torch device"]


def test_torch_not_installed(
    root: Path, capsys: pytest.CaptureFixture[str], fake: FakeNvml, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` fails
    _, rows = doctor(root, capsys)
    assert rows["torch"].startswith("n/a (") and "torch" in rows["torch"]
    assert rows["power limit"] == "700 W (range 200–700 W)"  # the rest is still there


def test_nvml_missing_is_one_line_per_fact(
    root: Path, capsys: pytest.CaptureFixture[str], fake: FakeNvml, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_torch(monkeypatch, [GPU_A])
    fake.fail["nvmlInit"] = nvml_error(nvml_mod.pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)
    code, rows = doctor(root, capsys)
    assert code == 1
    assert rows["torch"] == "2.13.0+cu130 (CUDA 13.0 build) · 1 CUDA device(s)"
    assert rows["torch device"] == "n/a (no NVML GPU to match by UUID)"
    assert "libnvidia-ml" in rows["power limit"] and rows["power limit"].startswith("n/a (")


def test_power_limit_range(
    root: Path, capsys: pytest.CaptureFixture[str], fake: FakeNvml, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_torch(monkeypatch, [GPU_A])
    fake.power_limit_mw, fake.power_limit_range_mw = 450_500, [100_000, 600_000]
    _, rows = doctor(root, capsys)
    assert rows["power limit"] == "450.5 W (range 100–600 W)"
    fake.fail["nvmlDeviceGetPowerManagementLimitConstraints"] = nvml_error(
        nvml_mod.pynvml.NVML_ERROR_NOT_SUPPORTED
    )
    _, rows = doctor(root, capsys)
    assert rows["power limit"] == "450.5 W (range n/a (not reported by the nvml backend))"


@pytest.mark.parametrize(
    ("privileged", "env", "expected"),
    [
        (True, {}, "root or CAP_SYS_ADMIN: this user may lock clocks (gpu.control=lock)"),
        (
            False,
            {},
            "this user may not lock clocks (neither root nor CAP_SYS_ADMIN); without root: "
            "gpu.control=slurm (submit with sbatch --gpu-freq=MHz) or gpu.control=observe "
            "(the clocks in force)",
        ),
        (
            False,
            {"SLURM_GPU_FREQ": "1305"},
            "this user may not lock clocks (neither root nor CAP_SYS_ADMIN); without root: "
            "gpu.control=slurm (SLURM was asked --gpu-freq=1305) or gpu.control=observe "
            "(the clocks in force)",
        ),
    ],
)
def test_permission_line(
    root: Path,
    capsys: pytest.CaptureFixture[str],
    fake: FakeNvml,
    monkeypatch: pytest.MonkeyPatch,
    privileged: bool,
    env: dict[str, str],
    expected: str,
) -> None:
    fake_torch(monkeypatch, [GPU_A])
    monkeypatch.setattr(probe_mod, "has_clock_privilege", lambda: privileged)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    _, rows = doctor(root, capsys)
    assert rows["privilege"] == expected


def test_simulated_backend_needs_no_privilege_and_runs_the_model_on_the_cpu(
    root: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_torch(monkeypatch, None)
    _, rows = doctor(root, capsys, "gpu.backend=simulated")
    assert rows["privilege"] == "not needed by the simulated backend"
    assert rows["torch device"] == "cpu"


def test_json_holds_the_gpu_host_facts(
    root: Path, capsys: pytest.CaptureFixture[str], fake: FakeNvml, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_torch(monkeypatch, [GPU_B, GPU_A])
    assert main(["--root", str(root), "doctor", "--json", "gpu.backend=nvml"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["torch"] == {
        "version": "2.13.0+cu130",
        "cuda_build": "13.0",
        "cuda_available": True,
        "device_count": 2,
        "device": "cuda:1",
    }
    assert data["power_limit_w"] == 700 and data["power_limit_range_w"] == [200, 700]
    assert data["privilege"].startswith("root or CAP_SYS_ADMIN")
