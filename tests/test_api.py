"""The public API (`llm_energy.measure`, `llm_energy.locked_clocks`) on the simulated GPU: the
pipeline's window and clock session, crash-safe, with the README example run as printed."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

import llm_energy
from llm_energy.api import gpu_settings
from llm_energy.control.open import DeviceSpec, open_device

REPO = Path(__file__).resolve().parents[1]


def busy(seconds: float) -> None:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        pass


def sm_lock_mhz(state: Path) -> int | None:
    with open_device(DeviceSpec.for_tool("simulated", 0, state)) as dev:
        return dev.clock_state().sm_locked_mhz


def test_importing_the_package_loads_nothing_else() -> None:
    code = "import sys, llm_energy; print(sorted(m for m in sys.modules if m.startswith(('llm_energy', 'torch'))))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['llm_energy']"


def test_settings_are_the_pipelines(tmp_path: Path) -> None:
    conf = REPO / "conf" / "gpu"
    default = yaml.safe_load((conf / "default.yaml").read_text())
    simulated = yaml.safe_load((conf / "simulated.yaml").read_text())
    assert gpu_settings("simulated")["min_window_periods"] == simulated["min_window_periods"]
    assert gpu_settings("nvml")["min_window_s"] == default["min_window_s"]  # no nvml group


def test_locked_measurement_labels_checks_and_restores(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    monkeypatch.setenv("LLM_ENERGY_STATE_DIR", str(state))
    from llm_energy.control.preflight import ClockSnapWarning

    with (
        pytest.warns(ClockSnapWarning, match="nearest supported 1200 MHz"),
        llm_energy.locked_clocks(sm_mhz=1205, backend="simulated") as clocks,
    ):
        assert clocks.applied_sm_mhz == 1200  # snapped to a supported clock, and said so
        assert sm_lock_mhz(state) == 1200
        with llm_energy.measure(device=clocks.device, cap_mhz=clocks.applied_sm_mhz) as m:
            busy(1.3)
            m.tokens = 100
    assert sm_lock_mhz(state) is None and not list((state / "journal").glob("*"))
    assert m.energy_kind == "simulated" and m.energy_source == "simulated"
    assert m.trusted and m.cap_held and m.tick_aligned
    assert m.energy_j > 0 and m.time_s >= 1.0
    assert m.j_per_token == pytest.approx(m.energy_j / 100)
    assert m.avg_power_w == pytest.approx(m.energy_j / m.time_s)
    with llm_energy.measure(backend="simulated") as short:  # owns and closes its device
        busy(0.05)
    assert not short.trusted and short.j_per_token is None  # shorter than 10 counter periods


CRASHING = """
import os, sys
import llm_energy
with llm_energy.locked_clocks(sm_mhz=900, backend="simulated"):
    print("locked", flush=True)
    sys.stdin.readline()
"""


def test_locked_clocks_killed_mid_block_are_restored_by_gpu_restore(tmp_path: Path) -> None:
    from llm_energy.cli.main import main

    state = tmp_path / "state"
    env = {**os.environ, "LLM_ENERGY_STATE_DIR": str(state), "PYTHONPATH": str(REPO / "src")}
    child = subprocess.Popen(
        [sys.executable, "-c", CRASHING],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "locked"
        assert sm_lock_mhz(state) == 900
        child.send_signal(signal.SIGKILL)
        child.wait()
    finally:
        child.kill()
    argv = ["--root", str(tmp_path), "gpu", "restore", "--state-dir", str(state)]
    assert main(argv) == 0
    assert sm_lock_mhz(state) is None


def test_the_readme_example_runs_as_printed(tmp_path: Path) -> None:
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Measure your own workload") :]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    env = {
        **os.environ,
        "LLM_ENERGY_STATE_DIR": str(tmp_path / "state"),
        "PYTHONPATH": str(REPO / "src"),
    }
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert re.search(r"J/token \(simulated\), trusted=True, cap held=True", out.stdout), out.stdout


def test_the_infer_stage_measures_and_caps_through_the_api(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """One implementation: the stage's clock session and windows are the API's contexts."""
    from test_faults_io import run_in_process

    import llm_energy.api as api
    from helpers import compose

    params = compose(
        "experiment=ci", "gpu=simulated", "model.weights=random", "sweep.freqs_mhz=[null,0.5]"
    )
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for folder in ("data/samples", "prompts"):
        shutil.copytree(REPO / folder, tmp_path / folder)
    calls: list[str] = []

    def spy(name: str):
        real = getattr(api, name)

        def wrapper(*args, **kwargs):
            calls.append(f"{name}:{kwargs.get('control', '')}")
            return real(*args, **kwargs)

        return wrapper

    for stage in ("prepare", "model"):
        assert run_in_process(stage, tmp_path, monkeypatch, capsys)[0] == 0
    monkeypatch.setattr(api, "locked_clocks", spy("locked_clocks"))
    monkeypatch.setattr(api, "energy_meter", spy("energy_meter"))
    code, err = run_in_process("infer", tmp_path, monkeypatch, capsys)
    assert code == 0, err
    assert calls == ["locked_clocks:lock", "energy_meter:"]
    rows = [yaml.safe_load(line) for line in (tmp_path / "data/infer/requests.jsonl").open()]
    assert {r["freq_applied_mhz"] for r in rows} == {None, 990}  # 0.5 of the H200's 1980 MHz
