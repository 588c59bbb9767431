"""Power limit and memory clock as study factors (issue 20, items 2-3): the one-line refusals
before anything runs, the session's journaled per-point changes, and SIGKILL + `gpu restore`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import ClockSession, compose, read_journal, sim
from llm_energy.config.feasibility import clock_cap_problem, knob_range_problem
from llm_energy.config.settings import load_config
from llm_energy.control.journal import journal_path
from llm_energy.device.errors import DeviceError

REPO = Path(__file__).resolve().parents[2]
H200_RANGE_W = (200.0, 700.0)
H200_MEM_MHZ = [3201, 2201]


def _cfg(*overrides: str):
    return load_config(compose("experiment=ci", *overrides))


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            ("gpu.power_limit_w=150",),
            "gpu.power_limit_w = 150 W is outside this GPU's power-limit range 200-700 W",
        ),
        (
            ("sweep.power_limits_w=[null,300,800]",),
            "sweep.power_limits_w[2] = 800 W is outside this GPU's power-limit range 200-700 W",
        ),
        (
            ("sweep.mem_freqs_mhz=[3201,1593]",),
            "sweep.mem_freqs_mhz[1] = 1593 MHz is not a supported memory clock here "
            "(supported: 3201, 2201 MHz)",
        ),
        (("sweep.power_limits_w=[null,300]", "sweep.mem_freqs_mhz=[2201]"), None),
        (("gpu.control=observe", "gpu.power_limit_w=150"), None),  # refused by the backend check
    ],
)
def test_a_limit_or_memory_clock_the_device_does_not_allow_is_one_line(
    overrides: tuple[str, ...], expected: str | None
) -> None:
    problem = knob_range_problem(
        _cfg(*overrides), power_range_w=H200_RANGE_W, mem_clocks_mhz=H200_MEM_MHZ
    )
    assert problem == expected
    no_limit = knob_range_problem(
        _cfg("gpu.power_limit_w=300"), power_range_w=None, mem_clocks_mhz=[]
    )
    assert no_limit == "gpu.power_limit_w = 300 W, but this device reports no settable power limit"


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            ("gpu.backend=cpu", "gpu.power_limit_w=300"),
            "gpu.power_limit_w = 300.0 asks to set the power limit (gpu.control=lock), but the "
            "cpu backend has no controllable GPU clocks",
        ),
        (
            ("gpu.backend=cpu", "sweep.mem_freqs_mhz=[2201]"),
            "sweep.mem_freqs_mhz[0] = 2201 asks to lock GPU clocks",
        ),
        (
            ("gpu.backend=nvml", "sweep.power_limits_w=[300]"),
            "to change clocks and power limits: run with sudo",
        ),
        (
            ("gpu=observe", "sweep.power_limits_w=[null,300]"),
            "sweep.power_limits_w[1] asks to change the GPU, but gpu.control=observe never does",
        ),
        (
            ("gpu=observe", "sweep.mem_freqs_mhz=[2201]"),
            "sweep.mem_freqs_mhz[0] asks to change the GPU, but gpu.control=observe never does",
        ),
        (
            ("gpu.control=slurm", "gpu.power_limit_w=300"),
            "gpu.power_limit_w asks to set the power limit, but gpu.control=slurm only observes",
        ),
        (
            ("gpu.control=slurm", "sweep.mem_freqs_mhz=[3201,2201]"),
            "sweep.mem_freqs_mhz = [3201,2201] asks for 2 caps, but gpu.control=slurm",
        ),
        (("gpu=simulated", "sweep.power_limits_w=[300]", "sweep.mem_freqs_mhz=[2201]"), None),
    ],
)
def test_a_backend_that_cannot_set_the_knob_is_one_line(
    overrides: tuple[str, ...], expected: str | None
) -> None:
    problem = clock_cap_problem(_cfg(*overrides), nvml_gpu_found=True, privileged=False)
    if expected is None:
        assert problem is None
    else:
        assert problem is not None and expected in problem and "\n" not in problem


def test_the_session_journals_each_change_and_puts_back_the_originals(tmp_path: Path) -> None:
    dev = sim(tmp_path / "state")
    jdir = tmp_path / "journal"
    with ClockSession(dev, "lock", journal_dir=jdir) as s:
        s.set_power_limit_w(300)
        s.set_mem_cap(2201)
        state = dev.clock_state()
        assert (state.power_limit_w, state.mem_locked_mhz) == (300.0, 2201)
        assert (s.applied_power_limit_w, s.applied_mem_mhz) == (300.0, 2201)
        journal = read_journal(dev, jdir)
        assert journal["changed"] == {"sm": False, "mem": True, "power_limit": True}
        assert journal["original"]["power_limit_w"] == 700.0
        s.set_power_limit_w(None)  # back to the limit found, mid-session
        assert dev.clock_state().power_limit_w == 700.0 and s.applied_power_limit_w is None
        s.set_power_limit_w(250)
        record = s.record()
        assert record["power_limit_requested_w"] == 250 and record["mem_freq_applied_mhz"] == 2201
    state = dev.clock_state()
    assert (state.power_limit_w, state.mem_locked_mhz) == (700.0, None)
    assert not journal_path(jdir, dev.uuid()).exists()


def test_observe_mode_refuses_to_set_a_knob(tmp_path: Path) -> None:
    dev = sim(tmp_path / "state")
    with ClockSession(dev, "observe", journal_dir=tmp_path / "journal") as s:
        with pytest.raises(DeviceError, match=r"gpu\.control=observe never changes the GPU"):
            s.set_power_limit_w(300)
        s.set_mem_cap(None)  # nothing asked: nothing to refuse
    assert dev.clock_state().power_limit_w == 700.0


HOLDING = """
import sys
import llm_energy
with llm_energy.locked_clocks(sm_mhz=None, backend="simulated") as clocks:
    clocks.set_mem_cap(2201)
    clocks.set_power_limit_w(300)
    print("set", flush=True)
    sys.stdin.readline()
"""


def test_sigkill_holding_a_power_limit_and_memory_clock_then_gpu_restore(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from llm_energy.cli.main import main

    state = tmp_path / "state"
    env = {**os.environ, "LLM_ENERGY_STATE_DIR": str(state), "PYTHONPATH": str(REPO / "src")}
    child = subprocess.Popen(
        [sys.executable, "-c", HOLDING],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "set"
        child.kill()  # SIGKILL: no handler, no finally
        child.wait()
    finally:
        child.kill()
    dev = sim(state)
    assert (dev.clock_state().power_limit_w, dev.clock_state().mem_locked_mhz) == (300.0, 2201)
    root = ["--root", str(tmp_path)]
    status = [*root, "gpu", "status", "--backend", "simulated", "--state-dir", str(state)]
    assert main([*status, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["power_limit_w"] == 300.0 and shown["pending_journal"]
    assert main([*root, "gpu", "restore", "--state-dir", str(state)]) == 0
    capsys.readouterr()
    state_now = dev.clock_state()
    assert (state_now.power_limit_w, state_now.mem_locked_mhz) == (700.0, None)
    assert main(status) == 0
    assert "power limit    700.0 W" in capsys.readouterr().out


def _workspace(tmp_path: Path, *overrides: str) -> Path:
    import shutil

    import yaml

    params = compose("experiment=ci", "gpu=simulated", "model.weights=random", *overrides)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for folder in ("data/samples", "prompts"):
        shutil.copytree(REPO / folder, tmp_path / folder)
    return tmp_path


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("sweep.power_limits_w=[null,900]", "power-limit range 200-700 W"),
        ("sweep.mem_freqs_mhz=[1000]", "(supported: 3201, 2201 MHz)"),
        ("sweep.batch_sizes=[1,2,3,4,5,6,7,8,9,10,11]", "= 1056 points, over the 1000"),
    ],
)
def test_validate_refuses_with_exit_2_and_deletes_nothing(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    override: str,
    expected: str,
) -> None:
    from test_faults_io import run_in_process

    extra = ["sweep=freqs", "sweep.input_tokens=[8,16,32,64]", "sweep.output_tokens=[4,8,16,32]"]
    ws = _workspace(tmp_path, override, *(extra if "batch" in override else []))
    previous = ws / "data/infer/requests.jsonl"
    previous.parent.mkdir(parents=True)
    previous.write_text("previous\n")
    code, err = run_in_process("validate", ws, monkeypatch, capsys)
    lines = [line for line in err.splitlines() if "error:" in line]
    assert code == 2 and len(lines) == 1 and expected in lines[0], err
    assert previous.read_text() == "previous\n" and not (ws / "data/validated.txt").exists()


def test_a_simulated_run_records_the_limit_and_memory_clock_of_each_window(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from test_faults_io import run_in_process

    ws = _workspace(tmp_path, "sweep.power_limits_w=[null,250]", "sweep.mem_freqs_mhz=[2201]")
    monkeypatch.setenv("LLM_ENERGY_STATE_DIR", str(tmp_path / "state"))
    for stage in ("validate", "prepare", "model", "infer"):
        code, err = run_in_process(stage, ws, monkeypatch, capsys)
        assert code == 0, err
    rows = [json.loads(line) for line in (ws / "data/infer/requests.jsonl").open()]
    assert {(r["power_limit_requested_w"], r["power_limit_applied_w"]) for r in rows} == {
        (None, None),
        (250, 250.0),
    }
    assert {(r["mem_freq_requested_mhz"], r["mem_freq_applied_mhz"]) for r in rows} == {
        (2201, 2201)
    }
    assert all(isinstance(r["power_limit_held"], bool) for r in rows if r["status"] == "ok")
    assert list((tmp_path / "state").glob("simulated-*.json"))  # the run's GPU
    state = sim(tmp_path / "state").clock_state()  # the run put both back
    assert (state.power_limit_w, state.mem_locked_mhz) == (700.0, None)


def test_power_limit_held_reads_the_window_power_and_power_cap_throttling() -> None:
    import dataclasses

    from llm_energy.energy.window import WindowReading

    base = WindowReading(
        energy_j=500.0, elapsed_s=2.0, sm_clock_mean_mhz=None, sm_clock_min_mhz=None,
        mem_clock_mhz=None, clock_event_reasons=0, temperature_c=None, cap_held=True,
        trusted=True, counter_reset=False, energy_source="nvml", min_trusted_s=1.0,
        power_limit_w=300.0,
    )  # fmt: skip
    assert (base).power_limit_held is True  # 250 W under 300 W, never power-capped
    assert (dataclasses.replace(base, power_limit_w=200.0)).power_limit_held is False
    assert (dataclasses.replace(base, clock_event_reasons=0x4)).power_limit_held is False
    counted = dataclasses.replace(base, clock_event_reasons=0x4, throttle_power_s=0.05)
    assert (counted).power_limit_held is True  # counters say 2.5 % of the window: within 5 %
    assert (dataclasses.replace(counted, throttle_power_s=0.5)).power_limit_held is False
    assert (dataclasses.replace(base, power_limit_w=None)).power_limit_held is None
