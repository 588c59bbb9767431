"""`llm-energy doctor`: cpu, simulated and (fake) NVML hosts; JSON form; the cap sentences."""

from __future__ import annotations

import json
import types
from pathlib import Path
from typing import Any

import pytest

import llm_energy.cli.probe as probe_mod
import llm_energy.device.cpu as cpu_mod
import llm_energy.device.nvml as nvml_mod
from fake_nvml import FakeNvml, nvml_error
from helpers import PARAMS, STUDY_DEVICE, die_holding_a_cap, open_device, patch_nvml
from llm_energy.cli.doctor import Unavailable, build_report, cap_sentences, lock_problem
from llm_energy.cli.main import main
from llm_energy.config.settings import apply_overrides, load_config
from llm_energy.io.files import read_yaml

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeNvml:
    f = FakeNvml()
    f.energy_step_mj = 1_000  # the counter moves on every read: the period probe ends at once
    return patch_nvml(monkeypatch, f)


@pytest.fixture
def root_fake(fake: FakeNvml, monkeypatch: pytest.MonkeyPatch) -> FakeNvml:
    """The fake NVML host, run as root: clocks could be set."""
    monkeypatch.setattr(probe_mod, "has_clock_privilege", lambda: True)
    return fake


def _no_rapl(*_a: Any, **_k: Any) -> Any:
    raise cpu_mod.RaplUnavailableError("no RAPL in this test")


def doctor(root: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["--root", str(root), "doctor", *args])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    return code, captured.out


def test_cpu_backend_cannot_cap_and_says_why(
    root: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cpu_mod, "RaplReader", _no_rapl)
    code, out = doctor(root, capsys, "gpu.backend=cpu", "gpu.freq=1200")
    assert code == 1
    assert "codecarbon-estimate (estimated)" in out
    assert "the cpu backend has no controllable GPU clocks" in out
    assert "gpu.freq=1200 → refused:" in out and "gpu.control=observe" in out
    assert "NOT READY" in out


def test_every_suggestion_runs_as_printed_and_none_repeats_a_setting(
    root: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import re
    import shlex

    monkeypatch.setattr(cpu_mod, "RaplReader", _no_rapl)
    code, out = doctor(root, capsys, "gpu.backend=cpu", "gpu.freq=1200")
    suggested = set(re.findall(r"`(llm-energy doctor[^`]*)`", out))
    assert code == 1 and len(suggested) == 2
    for command in suggested:
        args = shlex.split(command)[2:]
        code, again = doctor(root, capsys, "gpu.backend=cpu", "gpu.freq=1200", *args)
        assert code in (0, 1) and "verdict" in again  # ran: a report, not a usage error
        for arg in args:  # what the command set is not suggested again
            assert f"`llm-energy doctor {arg}`" not in again


def test_simulated_backend_is_ready(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = doctor(root, capsys, "gpu.backend=simulated", "gpu.freq=1200")
    assert code == 0
    assert "simulated (simulated)" in out
    assert "345–1980 MHz, 110 clocks, step 15 MHz" in out and "3201, 2201 MHz" in out
    assert "updates every 0.100 s" in out and "minimum trusted window 2 s" in out
    assert "gpu.freq=1200 → lock SM at 1200 MHz (supported)" in out
    assert "READY: a capped study can run here" in out


def test_nvml_as_root_lists_versions_clocks_and_processes(
    root: Path, capsys: pytest.CaptureFixture[str], root_fake: FakeNvml
) -> None:
    fake = root_fake
    fake.procs = [types.SimpleNamespace(pid=4242, usedGpuMemory=2**30)]  # type: ignore[list-item]
    code, out = doctor(root, capsys, "gpu.backend=nvml", "gpu.freq=1210")
    assert code == 0, out
    assert "nvml (measured)" in out and "(measured) → minimum trusted window" in out
    assert "driver 580.159.04 · CUDA 13.0 · NVML 13.580.159.04" in out
    assert "345–1980 MHz, 110 clocks, step 15 MHz" in out
    assert "pid 4242 (proc4242, 1.0 GiB)" in out
    assert "gpu.freq=1210 → lock SM at 1215 MHz (snapped from 1210" in out
    assert fake.setter_calls() == []  # the doctor only reads


def test_nvml_without_privilege_is_refused(
    root: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    fake: FakeNvml,
) -> None:
    monkeypatch.setattr(probe_mod, "has_clock_privilege", lambda: False)
    code, out = doctor(root, capsys, "gpu.backend=nvml", "gpu.freq=1200")
    assert code == 1
    assert "neither root nor has CAP_SYS_ADMIN" in out
    assert "gpu.freq=1200 → refused:" in out
    assert fake.setter_calls() == []


def test_nvml_not_supported_read_shows_na(
    root: Path, capsys: pytest.CaptureFixture[str], root_fake: FakeNvml
) -> None:
    fake = root_fake
    fake.fail["nvmlDeviceGetSupportedMemoryClocks"] = nvml_error(
        nvml_mod.pynvml.NVML_ERROR_NOT_SUPPORTED
    )
    code, out = doctor(root, capsys, "gpu.backend=nvml")
    assert code == 1
    assert "memory clocks n/a (NVML NOT_SUPPORTED" in out
    assert "not possible: the supported SM clocks cannot be read (NVML NOT_SUPPORTED" in out
    assert "driver 580.159.04" in out  # the other facts are still there


def test_device_that_does_not_open_is_one_fact(
    root: Path, capsys: pytest.CaptureFixture[str], fake: FakeNvml
) -> None:
    fake.fail["nvmlInit"] = nvml_error(nvml_mod.pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)
    code, out = doctor(root, capsys, "gpu.backend=nvml", "gpu.freq=1200")
    assert code == 1
    assert "n/a (device not opened:" in out and "libnvidia-ml" in out


def test_bad_override_is_one_line(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--root", str(root), "doctor", "gpu.nope=1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("llm-energy doctor: error:") and "\n" not in err


def test_json_holds_the_same_facts(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = doctor(root, capsys, "--json", "gpu.backend=simulated")
    assert code == 0
    data = json.loads(out)
    cfg = load_config(apply_overrides(read_yaml(root / "params.yaml"), ["gpu.backend=simulated"]))
    facts = {"backend": "simulated", "can_control_clocks": True, "supported_sm_clocks_mhz": [1]}
    assert set(data) == set(build_report(cfg, facts, {"journals": [], "locks": []}))
    assert data["energy"] == {"source": "simulated", "kind": "simulated"}
    assert data["counter"]["update_period_s"] == pytest.approx(0.1)
    assert data["sm_clocks"]["count"] == 110 and data["exit_code"] == 0
    assert data["device"]["driver_version"].startswith("n/a (")


def test_pending_journal_and_lock_holder_are_shown(
    root: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    state = root / "state"
    monkeypatch.setenv("LLM_ENERGY_STATE_DIR", str(state))
    # A run killed without cleanup leaves its journal.
    die_holding_a_cap(state, STUDY_DEVICE, PARAMS["gpu"]["on_other_processes"])
    with open_device("simulated", "auto", state_dir=state):  # this process holds the GPU lock
        code, out = doctor(root, capsys, "gpu.backend=simulated")
    assert code == 0
    assert "pending (fix: llm-energy gpu restore)" in out
    assert "GPU locks" in out and " held by " in out


# ------------------------------------------------------------------ the cap sentences (pure)
SUPPORTED = list(range(1980, 344, -15))


def _cfg(*overrides: str) -> Any:
    return load_config(apply_overrides(read_yaml(REPO / "params.yaml"), list(overrides)))


def _facts(**extra: Any) -> dict[str, Any]:
    return {
        "backend": "nvml",
        "can_control_clocks": True,
        "requires_privilege": True,
        "privileged": True,
        "supported_sm_clocks_mhz": SUPPORTED,
        "supported_mem_clocks_mhz": [3201, 2201],
    } | extra


@pytest.mark.parametrize(
    ("overrides", "facts", "expected"),
    [
        (["gpu.freq=1200"], _facts(), "gpu.freq=1200 → lock SM at 1200 MHz (supported)"),
        (
            ["gpu.freq=1210"],
            _facts(),
            "gpu.freq=1210 → lock SM at 1215 MHz (snapped from 1210, the nearest supported clock)",
        ),
        (
            ["gpu.freq=1200"],
            _facts(backend="cpu", can_control_clocks=False, requires_privilege=False),
            "gpu.freq=1200 → refused: the cpu backend has no controllable GPU clocks; "
            "try `llm-energy doctor gpu.backend=simulated` (a simulated GPU whose clocks lock) or "
            "`llm-energy doctor gpu.control=observe` (measure at the clocks in force)",
        ),
        (
            ["gpu.freq=1200"],
            _facts(supported_sm_clocks_mhz=Unavailable("NVML NOT_SUPPORTED: x")),
            "gpu.freq=1200 → refused: the supported SM clocks cannot be read "
            "(NVML NOT_SUPPORTED: x); "
            "try `llm-energy doctor gpu.backend=simulated` (a simulated GPU whose clocks lock) or "
            "`llm-energy doctor gpu.control=observe` (measure at the clocks in force)",
        ),
        (["gpu.freq=null"], _facts(), "gpu.freq=null → no lock: the driver's default clocks"),
        (
            ["gpu.freq=1200", "gpu.control=observe"],
            _facts(),
            "gpu.freq=1200 → not locked: gpu.control=observe never calls a setter "
            "(the clocks in force are recorded)",
        ),
    ],
)
def test_cap_sentence(overrides: list[str], facts: dict[str, Any], expected: str) -> None:
    assert cap_sentences(_cfg(*overrides), facts, lock_problem(facts)) == [expected]


def test_relative_clock_points_show_what_they_become_on_this_gpu(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sim_a100 = ("gpu.backend=simulated", "gpu.simulated_gpu=a100")
    code, out = doctor(root, capsys, *sim_a100, "sweep.freqs_mhz=[null, 1.0, 0.8, 0.65, 0.5, 0.35]")
    assert code == 0, out
    for point, mhz in (("1.0", 1410), ("0.8", 1125), ("0.65", 915), ("0.5", 705), ("0.35", 495)):
        assert f"={point} → lock SM at {mhz} MHz ({point} of this device's 1410 MHz)" in out
    code, out = doctor(root, capsys, *sim_a100, "sweep.freqs_mhz=[0.5, 50%]")
    assert code == 1 and "both resolve to 705 MHz" in out
    code, out = doctor(root, capsys, *sim_a100, "sweep.freqs_mhz=[1980]")  # an H200 sweep
    assert code == 1 and "570 MHz from the nearest supported clock 1410 MHz" in out
