"""`gpu.control=slurm`: SLURM applies the cap (`--gpu-freq`), the run only observes, records the
mechanism and labels a window with the cap only when the clocks inside it held it."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from helpers import ClockSession, EnergyMeter, SimulatedDevice, compose, open_device, sim
from llm_energy.config.feasibility import clock_cap_problem
from llm_energy.config.settings import load_config
from llm_energy.control.journal import list_journals
from llm_energy.control.slurm import parse_gpu_freq, slurm_freq_warning
from llm_energy.device.errors import DeviceError

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


@pytest.mark.parametrize(
    ("text", "graphics", "memory"),
    [
        ("1200", 1200, None),
        ("graphics=1410,memory=1593", 1410, 1593),
        ("memory=medium,high,verbose", "high", "medium"),
        ("low", "low", None),
    ],
)
def test_gpu_freq_syntax(text: str, graphics: object, memory: object) -> None:
    got = parse_gpu_freq(text)
    assert (got.graphics, got.memory, got.raw) == (graphics, memory, text)


def test_slurm_environment_is_checked_against_gpu_freq() -> None:
    assert slurm_freq_warning(1200, {"SLURM_GPU_FREQ": "1200"}) is None
    # srun --gpu-freq exports only the step's TRES frequencies
    assert slurm_freq_warning(1305, {"SLURMD_TRES_FREQ": "gpu:1305"}) is None
    assert "1100" in (slurm_freq_warning(1305, {"SLURMD_TRES_FREQ": "cpu:low;gpu:1100"}) or "")
    assert "none of" in (slurm_freq_warning(1305, {"SLURMD_TRES_FREQ": "cpu:low"}) or "")
    assert slurm_freq_warning(1200, {"SLURM_JOB_GPU_FREQ": "graphics=1200,verbose"}) is None
    miss = slurm_freq_warning(1200, {"SLURM_GPU_FREQ": "1100"})
    assert miss and "1100" in miss and "gpu.freq = 1200" in miss and "\n" not in miss
    assert "high" in (slurm_freq_warning(1200, {"SLURM_GPU_FREQ": "high"}) or "")
    unset = slurm_freq_warning(1200, {})
    assert unset and "--gpu-freq=1200" in unset


def test_slurm_session_never_touches_clocks_and_records_the_mechanism(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLURM_GPU_FREQ", "1100")
    dev = sim(tmp_path / "state")
    jdir = tmp_path / "journal"
    with ClockSession(dev, "slurm", 1200, journal_dir=jdir) as s:
        assert dev.clock_state().sm_locked_mhz is None  # no setter ran
        assert list_journals(jdir) == []  # nothing to restore, nothing journalled
        assert s.set_sm_cap(1200) == dev.sm_clock_mhz()  # the same cap: fine
        with pytest.raises(DeviceError, match="one experiment per cap") as err:
            s.set_sm_cap(900)
        assert "\n" not in str(err.value)
        rec = s.record()
    assert rec["clock_mechanism"] == "application clocks via SLURM"
    assert rec["freq_requested_mhz"] == 1200 and rec["freq_applied_mhz"] is None
    assert any("SLURM_GPU_FREQ=1100" in w for w in rec["warnings"])


def test_mechanism_names() -> None:
    dev = SimulatedDevice(0, state_dir=Path("/nonexistent"), noise_rel=0.0)
    assert ClockSession(dev, "observe", journal_dir="/x").clock_mechanism == "none (observe)"
    assert ClockSession(dev, "lock", journal_dir="/x").clock_mechanism == (
        "locked clocks (simulated GPU)"
    )
    with pytest.raises(ValueError, match=r"lock\|observe\|slurm"):
        ClockSession(dev, "nvidia-smi", journal_dir="/x")


def _window_cap_held(dev: SimulatedDevice, cap_mhz: int) -> bool | None:
    meter = EnergyMeter(dev, min_window_periods=1, min_window_s=0.0)
    with meter.window(cap_mhz=cap_mhz) as w:
        time.sleep(0.02)
    assert w.reading is not None
    return w.reading.cap_held


def test_slurm_label_is_the_cap_only_when_the_window_clocks_held_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLURM_GPU_FREQ", "1200")
    dev = open_device("simulated", 0, state_dir=tmp_path, exclusive=True, sim={"noise_rel": 0.0})
    with dev, ClockSession(dev, "slurm", 1200, journal_dir=tmp_path / "journal") as s:
        # SLURM did not apply it (default clocks): the window shows it, the label is null
        held = _window_cap_held(dev, 1200)
        assert held is False
        assert s.freq_label_mhz(held) is None
        assert sum("did not hold" in w for w in s.warnings) == 1
        assert s.freq_label_mhz(False) is None
        assert sum("did not hold" in w for w in s.warnings) == 1  # warned once
        # SLURM applied it (as its prolog would): the in-window clocks hold it
        dev.lock_sm_clocks(1200)
        try:
            held = _window_cap_held(dev, 1200)
            assert held is True
            assert s.freq_label_mhz(held) == 1200
        finally:
            dev.reset_sm_clocks()
    observe = ClockSession(sim(tmp_path / "state"), "observe", 1200, journal_dir=tmp_path / "j2")
    assert observe.freq_label_mhz(True) is None  # observe applied nothing


def test_validate_refuses_a_sweep_under_slurm() -> None:
    cfg = load_config(compose("gpu.control=slurm", "sweep.freqs_mhz=[900,1200]"))
    problem = clock_cap_problem(cfg, nvml_gpu_found=True, privileged=False)
    assert problem and "one experiment per cap" in problem and "llm-energy grid" in problem
    assert "\n" not in problem
    one = load_config(compose("gpu.control=slurm", "gpu.freq=1200", "gpu.backend=nvml"))
    assert clock_cap_problem(one, nvml_gpu_found=True, privileged=False) is None  # no root needed
    cpu = load_config(compose("gpu.control=slurm", "gpu.freq=1200", "gpu.backend=cpu"))
    assert "gpu.backend=cpu" in (
        clock_cap_problem(cpu, nvml_gpu_found=False, privileged=False) or ""
    )
