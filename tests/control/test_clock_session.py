"""ClockSession: lock / verify / restore call sequences, preflight errors, observe mode, journal.

NVML paths use the recording fake (tests/fake_nvml.py); restore-to-original semantics use the
simulated backend, whose state file can be read back. Cross-process crash tests (SIGKILL,
SIGTERM) are in tests/sim/test_sim_device.py.
"""

from __future__ import annotations

import json
import os
import signal
import time
import warnings
from pathlib import Path

import pynvml as real_pynvml
import pytest

import llm_energy.control.session as control
from fake_nvml import FakeNvml, Proc, nvml_error
from helpers import ClockSession, CpuDevice, open_device, patch_nvml, read_journal, sim
from llm_energy.control.guard import SignalExit
from llm_energy.control.journal import journal_path, now_iso
from llm_energy.control.preflight import ClockSnapWarning, OtherProcessesWarning
from llm_energy.control.recovery import gpu_status, recover_pending, restore_from_journal
from llm_energy.control.session import has_clock_privilege
from llm_energy.device.base import ClockState
from llm_energy.device.errors import (
    ClockControlUnavailableError,
    DeviceError,
    NotSupportedError,
    OtherProcessesError,
    PermissionDeniedError,
    RestoreError,
    SessionConflictError,
)
from llm_energy.device.identity import boot_id, process_start_ticks
from llm_energy.device.nvml import NvmlDevice


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeNvml:
    return patch_nvml(monkeypatch, FakeNvml(), privileged=True)


@pytest.fixture
def jdir(tmp_path: Path) -> Path:
    return tmp_path / "journal"


def setters(fake: FakeNvml) -> list[tuple[str, tuple[object, ...]]]:
    return [(n, a) for n, a in fake.calls if n.startswith(("nvmlDeviceSet", "nvmlDeviceReset"))]


# ------------------------------------------------------------------------ NVML call sequences


def test_lock_journals_before_setting_then_restores_and_removes_journal(
    fake: FakeNvml, jdir: Path
) -> None:
    dev = NvmlDevice(0)
    jpath = journal_path(jdir, dev.uuid())
    seen: dict[str, object] = {}

    def before_lock(h: str, lo: int, hi: int) -> None:
        seen["journal"] = json.loads(jpath.read_text())  # write-ahead: journal exists already

    fake.hooks["nvmlDeviceSetGpuLockedClocks"] = before_lock
    with ClockSession(dev, "lock", 1200, journal_dir=jdir) as s:
        assert s.requested_sm_mhz == 1200 and s.applied_sm_mhz == 1200
        assert fake.locked_sm == 1200
        j = read_journal(dev, jdir)
        assert j is not None and j["changed"]["sm"] and j["applied"]["sm_mhz"] == 1200
        assert j["pid"] == os.getpid() and j["original"]["locks_known"] is False
    journal = seen["journal"]
    assert isinstance(journal, dict) and journal["changed"]["sm"] is True
    assert setters(fake) == [
        ("nvmlDeviceSetGpuLockedClocks", ("h0", 1200, 1200)),
        ("nvmlDeviceResetGpuLockedClocks", ("h0",)),
    ]
    assert not jpath.exists() and fake.locked_sm is None


def test_snapping_warns_and_exposes_requested_and_applied(fake: FakeNvml, jdir: Path) -> None:
    with (
        pytest.warns(ClockSnapWarning, match="1203 MHz is not supported.*1200 MHz"),
        ClockSession(NvmlDevice(0), "lock", 1203, journal_dir=jdir) as s,
    ):
        assert (s.requested_sm_mhz, s.applied_sm_mhz) == (1203, 1200)
        assert s.record()["freq_requested_mhz"] == 1203 and s.record()["freq_applied_mhz"] == 1200
    assert ("nvmlDeviceSetGpuLockedClocks", ("h0", 1200, 1200)) in fake.calls


def test_planned_sweep_is_checked_and_snapped_up_front(fake: FakeNvml, jdir: Path) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        s = ClockSession(
            NvmlDevice(0), "lock", None, journal_dir=jdir, planned_sm_freqs_mhz=[None, 1203, 990]
        )
        with s:
            assert fake.setter_calls() == []  # checked, nothing changed yet
            assert len([w for w in caught if w.category is ClockSnapWarning]) == 1
            assert s.set_sm_cap(1203) == 1200
        assert len([w for w in caught if w.category is ClockSnapWarning]) == 1  # warned once
    assert s.warnings and "1203 MHz" in s.warnings[0] and s.record()["warnings"] == s.warnings


def test_planned_sweep_fails_early_on_cpu(tmp_path: Path, jdir: Path) -> None:
    dev = CpuDevice(0, rapl_root=tmp_path / "none", power_estimator=lambda: 50.0)
    s = ClockSession(dev, "lock", None, journal_dir=jdir, planned_sm_freqs_mhz=[None, 1200])
    with pytest.raises(ClockControlUnavailableError, match="1200 MHz"), s:
        pass


def test_planned_sweep_no_privilege_fails_before_model_load(
    fake: FakeNvml, jdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(control, "has_clock_privilege", lambda: False)
    s = ClockSession(NvmlDevice(0), "lock", None, journal_dir=jdir, planned_sm_freqs_mhz=[990])
    with pytest.raises(PermissionDeniedError), s:
        pass
    assert fake.setter_calls() == []


def test_memory_lock_and_sm_clocks_for_that_memory_clock(fake: FakeNvml, jdir: Path) -> None:
    with ClockSession(NvmlDevice(0), "lock", 990, 2201, journal_dir=jdir) as s:
        assert s.applied_mem_mhz == 2201
    assert ("nvmlDeviceGetSupportedGraphicsClocks", ("h0", 2201)) in fake.calls
    assert setters(fake) == [
        ("nvmlDeviceSetMemoryLockedClocks", ("h0", 2201, 2201)),
        ("nvmlDeviceSetGpuLockedClocks", ("h0", 990, 990)),
        ("nvmlDeviceResetGpuLockedClocks", ("h0",)),
        ("nvmlDeviceResetMemoryLockedClocks", ("h0",)),
    ]


def test_sweep_in_one_session(fake: FakeNvml, jdir: Path) -> None:
    with ClockSession(NvmlDevice(0), "lock", None, journal_dir=jdir) as s:
        assert (
            s.applied_sm_mhz is None and setters(fake) == []
        )  # None = driver default, nothing locked
        assert s.set_sm_cap(1500) == 1500
        assert s.set_sm_cap(1005) == 1005
        assert s.set_sm_cap(None) is None
        assert fake.locked_sm is None
        assert s.set_sm_cap(345) == 345
    names = [n for n, _ in setters(fake)]
    assert names == [
        "nvmlDeviceSetGpuLockedClocks",
        "nvmlDeviceSetGpuLockedClocks",
        "nvmlDeviceResetGpuLockedClocks",
        "nvmlDeviceSetGpuLockedClocks",
        "nvmlDeviceResetGpuLockedClocks",
    ]


def test_observe_mode_never_calls_a_setter(fake: FakeNvml, jdir: Path) -> None:
    fake.sm_clock = 1755
    dev = NvmlDevice(0)
    with ClockSession(dev, "observe", 1200, 2201, journal_dir=jdir) as s:
        assert s.requested_sm_mhz == 1200 and s.applied_sm_mhz == 1755  # clocks actually in force
        assert s.applied_mem_mhz == 3201
        assert s.set_sm_cap(990) == 1755
        assert s.requested_sm_mhz == 990
    assert fake.setter_calls() == []
    assert not jdir.exists() or list(jdir.iterdir()) == []


def test_observe_does_not_restore_a_pending_journal(fake: FakeNvml, jdir: Path) -> None:
    dev = NvmlDevice(0)
    _write_dead_journal(dev.uuid(), jdir, ClockState(None, None, 700.0, locks_known=False), sm=True)
    with (
        pytest.warns(RuntimeWarning, match="pending clock journal"),
        ClockSession(dev, "observe", journal_dir=jdir),
    ):
        pass
    assert fake.setter_calls() == []
    assert read_journal(dev, jdir) is not None


# ------------------------------------------------------------------------ preflight failures


def test_no_privilege_fails_before_any_change(
    fake: FakeNvml, jdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(control, "has_clock_privilege", lambda: False)
    with (
        pytest.raises(PermissionDeniedError) as ei,
        ClockSession(NvmlDevice(0), "lock", 1200, journal_dir=jdir),
    ):
        pass
    msg = str(ei.value)
    assert "\n" not in msg and "CAP_SYS_ADMIN" in msg and "gpu.control=observe" in msg
    assert fake.setter_calls() == [] and not any(jdir.glob("*.json"))


def test_nvml_no_permission_on_lock(fake: FakeNvml, jdir: Path) -> None:
    fake.fail["nvmlDeviceSetGpuLockedClocks"] = nvml_error(real_pynvml.NVML_ERROR_NO_PERMISSION)
    with (
        pytest.raises(PermissionDeniedError, match="Cannot lock the SM clock of GPU 0 to 1200 MHz"),
        ClockSession(NvmlDevice(0), "lock", 1200, journal_dir=jdir),
    ):
        pass
    # The failed setter changed nothing, so nothing is reset; the journal is gone.
    assert [n for n, _ in setters(fake)] == ["nvmlDeviceSetGpuLockedClocks"]
    assert not any(jdir.glob("*.json"))


def test_not_supported_memory_lock_restores_nothing_else(fake: FakeNvml, jdir: Path) -> None:
    fake.fail["nvmlDeviceSetMemoryLockedClocks"] = nvml_error(real_pynvml.NVML_ERROR_NOT_SUPPORTED)
    with (
        pytest.raises(NotSupportedError, match="memory clock"),
        ClockSession(NvmlDevice(0), "lock", 1200, 2201, journal_dir=jdir),
    ):
        pass
    assert fake.locked_sm is None and not any(jdir.glob("*.json"))


def test_sm_lock_failure_after_memory_lock_restores_memory(fake: FakeNvml, jdir: Path) -> None:
    fake.fail["nvmlDeviceSetGpuLockedClocks"] = nvml_error(real_pynvml.NVML_ERROR_NOT_SUPPORTED)
    with (
        pytest.raises(NotSupportedError),
        ClockSession(NvmlDevice(0), "lock", 1200, 2201, journal_dir=jdir),
    ):
        pass
    assert [n for n, _ in setters(fake)][-1] == "nvmlDeviceResetMemoryLockedClocks"
    assert fake.locked_mem is None and not any(jdir.glob("*.json"))


def test_no_supported_clocks(fake: FakeNvml, jdir: Path) -> None:
    fake.supported_sm = []
    with (
        pytest.raises(NotSupportedError, match="no supported clocks"),
        ClockSession(NvmlDevice(0), "lock", 1200, journal_dir=jdir),
    ):
        pass
    assert fake.setter_calls() == []


def test_other_processes_warn(fake: FakeNvml, jdir: Path) -> None:
    fake.procs = [Proc(4242, 1 << 30)]
    with (
        pytest.warns(OtherProcessesWarning, match="4242"),
        ClockSession(NvmlDevice(0), "lock", 1200, journal_dir=jdir),
    ):
        pass
    assert fake.locked_sm is None


def test_other_processes_refuse(fake: FakeNvml, jdir: Path) -> None:
    fake.procs = [Proc(4242, 1 << 30)]
    with (
        pytest.raises(
            OtherProcessesError,
            match=r"Refusing to change the clocks of GPU 0.*4242.*on_other_processes=warn",
        ),
        ClockSession(NvmlDevice(0), "lock", 1200, journal_dir=jdir, on_other_processes="refuse"),
    ):
        pass
    assert fake.setter_calls() == []
    with (
        pytest.raises(OtherProcessesError),
        ClockSession(NvmlDevice(0), "observe", journal_dir=jdir, on_other_processes="refuse"),
    ):
        pass


def test_cpu_backend_cannot_lock(tmp_path: Path, jdir: Path) -> None:
    dev = CpuDevice(0, rapl_root=tmp_path / "none", power_estimator=lambda: 50.0)
    with (
        pytest.raises(ClockControlUnavailableError) as ei,
        ClockSession(dev, "lock", 1200, journal_dir=jdir),
    ):
        pass
    msg = str(ei.value)
    assert "\n" not in msg and "1200 MHz" in msg and "cpu backend" in msg
    assert "gpu.backend=simulated" in msg and "gpu.freq=null" in msg
    with ClockSession(dev, "lock", None, journal_dir=jdir) as s:  # driver default: fine on cpu
        assert s.applied_sm_mhz is None


def test_invalid_arguments(tmp_path: Path, jdir: Path) -> None:
    with pytest.raises(ValueError, match="control"):
        ClockSession(sim(tmp_path / "state"), "pin", journal_dir=jdir)
    with pytest.raises(ValueError, match="on_other_processes"):
        ClockSession(sim(tmp_path / "state"), "lock", journal_dir=jdir, on_other_processes="ignore")


def test_privilege_check_reads_cap_sys_admin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    status = tmp_path / "status"
    status.write_text("Name:\tx\nCapEff:\t0000000000200000\n")  # bit 21 only
    assert has_clock_privilege(status)
    status.write_text("Name:\tx\nCapEff:\t00000000001fffff\n")  # bits 0-20
    assert not has_clock_privilege(status)
    assert not has_clock_privilege(tmp_path / "missing")
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert has_clock_privilege(tmp_path / "missing")


# ------------------------------------------------------------------------ restore semantics (simulated)


def test_restores_original_lock_not_default(tmp_path: Path, jdir: Path) -> None:
    dev = sim(tmp_path / "state")
    dev.lock_sm_clocks(1500)
    dev.lock_mem_clocks(2201)
    with ClockSession(dev, "lock", 900, 3201, journal_dir=jdir) as s:
        assert dev.clock_state() == ClockState(900, 3201, 700.0)
        assert s.original == ClockState(1500, 2201, 700.0)
        assert s.set_sm_cap(None) == 1500  # back to the ORIGINAL SM state, not to "unlocked"
        assert dev.clock_state().sm_locked_mhz == 1500
        s.set_sm_cap(600)
    assert dev.clock_state() == ClockState(1500, 2201, 700.0)
    assert not any(jdir.glob("*.json"))


def test_power_limit_is_restored(tmp_path: Path, jdir: Path) -> None:
    dev = sim(tmp_path / "state")
    with ClockSession(dev, "lock", journal_dir=jdir, power_limit_w=400) as s:
        assert dev.power_limit_w() == 400 and s.applied_power_limit_w == 400
    assert dev.power_limit_w() == 700


def test_exception_inside_session_restores_and_propagates(tmp_path: Path, jdir: Path) -> None:
    dev = sim(tmp_path / "state")
    with pytest.raises(ZeroDivisionError), ClockSession(dev, "lock", 1200, journal_dir=jdir):
        _ = 1 / 0
    assert dev.clock_state().sm_locked_mhz is None and not any(jdir.glob("*.json"))


def test_sigint_handler_restores_then_raises_keyboard_interrupt(tmp_path: Path, jdir: Path) -> None:
    dev = sim(tmp_path / "state")
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt), ClockSession(dev, "lock", 1200, journal_dir=jdir):
        assert signal.getsignal(signal.SIGINT) != before  # the guard's handler is in place
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(1.0)  # the handler runs at the next bytecode boundary, well before this ends
    assert dev.clock_state().sm_locked_mhz is None and not any(jdir.glob("*.json"))
    assert signal.getsignal(signal.SIGINT) == before


def test_handlers_chain_to_previous_callable_then_end_the_run(tmp_path: Path, jdir: Path) -> None:
    dev = sim(tmp_path / "state")
    got: list[tuple[int, int | None]] = []
    old = signal.signal(
        signal.SIGTERM, lambda signum, frame: got.append((signum, dev.clock_state().sm_locked_mhz))
    )
    try:
        # The previous handler returns, yet the run must not go on measuring at restored clocks.
        with (
            pytest.raises(SignalExit) as ei,
            ClockSession(dev, "lock", 1200, journal_dir=jdir) as s,
        ):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1.0)
        assert ei.value.code == 128 + signal.SIGTERM
        assert got == [(signal.SIGTERM, None)]  # restored before chaining
        with pytest.raises(RuntimeError):
            s.set_sm_cap(900)
        assert s.interrupted_by == signal.SIGTERM
        assert signal.getsignal(signal.SIGTERM) is not None
        old_handler = signal.getsignal(signal.SIGTERM)
        assert callable(old_handler) and old_handler.__name__ == "<lambda>"  # the previous one back
    finally:
        signal.signal(signal.SIGTERM, old)


def test_restore_failure_keeps_journal_and_raises(fake: FakeNvml, jdir: Path) -> None:
    dev = NvmlDevice(0)
    fake.fail["nvmlDeviceResetGpuLockedClocks"] = nvml_error(real_pynvml.NVML_ERROR_GPU_IS_LOST)
    with (
        pytest.raises(RestoreError, match="journal kept"),
        ClockSession(dev, "lock", 1200, journal_dir=jdir),
    ):
        pass
    assert read_journal(dev, jdir) is not None
    del fake.fail["nvmlDeviceResetGpuLockedClocks"]
    assert "Restored NVIDIA H200" in restore_from_journal(dev, jdir)
    assert read_journal(dev, jdir) is None


def test_second_session_on_same_gpu_in_process_conflicts(tmp_path: Path, jdir: Path) -> None:
    dev = sim(tmp_path / "state")
    with ClockSession(dev, "lock", 1200, journal_dir=jdir):
        with pytest.raises(SessionConflictError):
            ClockSession(dev, "lock", 900, journal_dir=jdir).__enter__()
        with pytest.raises(SessionConflictError):
            recover_pending(dev, jdir)
    assert dev.clock_state().sm_locked_mhz is None


# ------------------------------------------------------------------------ journals left by others


def _write_dead_journal(
    uuid: str,
    jdir: Path,
    original: ClockState,
    *,
    sm: bool = False,
    mem: bool = False,
    pid: int = 2**22 + 17,
    start_ticks: int | None = None,
    updated_at: str | None = None,
) -> Path:
    path = journal_path(jdir, uuid)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(
            {
                "version": 2,
                "uuid": uuid,
                "pid": pid,
                "proc_start_ticks": start_ticks,
                "boot_id": boot_id(),
                "updated_at": updated_at or now_iso(),
                "original": original.to_dict(),
                "changed": {"sm": sm, "mem": mem, "power_limit": False},
            }
        )
    )
    return path


def test_recover_pending_restores_original_and_removes_journal(tmp_path: Path, jdir: Path) -> None:
    dev = sim(tmp_path / "state")
    dev.lock_sm_clocks(600)  # what the killed run left behind
    path = _write_dead_journal(dev.uuid(), jdir, ClockState(1500, None, 700.0), sm=True)
    status = gpu_status(dev, jdir)
    assert status["pending_journal"]["changed"]["sm"] and status["journal_owner_alive"] is False
    assert status["clock_state"]["sm_locked_mhz"] == 600
    msg = recover_pending(dev, jdir)
    assert msg is not None and "SM locked at 1500 MHz" in msg
    assert dev.clock_state().sm_locked_mhz == 1500 and not path.exists()
    assert recover_pending(dev, jdir) is None
    assert "nothing to restore" in restore_from_journal(dev, jdir)


def test_session_enter_recovers_first(tmp_path: Path, jdir: Path) -> None:
    dev = sim(tmp_path / "state")
    dev.lock_sm_clocks(600)
    _write_dead_journal(dev.uuid(), jdir, ClockState(None, None, 700.0), sm=True)
    with ClockSession(dev, "lock", 1200, journal_dir=jdir) as s:
        assert s.recovered_message is not None
        assert s.original == ClockState(None, None, 700.0)  # snapshot taken after the repair
    assert dev.clock_state().sm_locked_mhz is None


def test_journal_of_live_process_is_not_taken_over(tmp_path: Path, jdir: Path) -> None:
    dev = sim(tmp_path / "state")
    ppid = os.getppid()
    ticks = process_start_ticks(ppid)
    _write_dead_journal(
        dev.uuid(), jdir, ClockState(None, None, 700.0), sm=True, pid=ppid, start_ticks=ticks
    )
    with pytest.raises(SessionConflictError, match=f"process {ppid} still holds"):
        recover_pending(dev, jdir)
    with pytest.raises(SessionConflictError):
        ClockSession(dev, "lock", 1200, journal_dir=jdir).__enter__()
    assert gpu_status(dev, jdir)["journal_owner_alive"] is True
    # The GPU lock was never left held by the refused session.
    assert gpu_status(dev, jdir)["lock_held"] is False


def test_reused_pid_is_not_mistaken_for_the_owner(tmp_path: Path, jdir: Path) -> None:
    dev = sim(tmp_path / "state")
    dev.lock_sm_clocks(600)
    ppid = os.getppid()  # alive, but started at another time than the journal says
    ticks = process_start_ticks(ppid)
    assert ticks is not None
    _write_dead_journal(
        dev.uuid(), jdir, ClockState(None, None, 700.0), sm=True, pid=ppid, start_ticks=ticks + 1
    )
    assert gpu_status(dev, jdir)["journal_owner_alive"] is False
    assert recover_pending(dev, jdir) is not None
    assert dev.clock_state().sm_locked_mhz is None
    # A journal without a start time, written before its pid's process started: reused too.
    dev.lock_sm_clocks(600)
    _write_dead_journal(
        dev.uuid(),
        jdir,
        ClockState(None, None, 700.0),
        sm=True,
        pid=ppid,
        updated_at="2000-01-01T00:00:00+00:00",
    )
    assert recover_pending(dev, jdir) is not None and dev.clock_state().sm_locked_mhz is None


def test_corrupt_journal_is_a_clear_error(tmp_path: Path, jdir: Path) -> None:
    dev = sim(tmp_path / "state")
    jdir.mkdir()
    journal_path(jdir, dev.uuid()).write_text("{not json")
    with pytest.raises(DeviceError, match="corrupt") as ei:
        recover_pending(dev, jdir)
    assert f"llm-energy gpu clear --uuid {dev.uuid()}" in str(ei.value)
    status = gpu_status(dev, jdir)
    assert status["pending_journal"] is None and status["journal_state"] == "corrupt"
    assert status["journal_fix"] == f"llm-energy gpu clear --uuid {dev.uuid()}"


def test_gpu_status_reads_only(fake: FakeNvml, jdir: Path) -> None:
    status = gpu_status(NvmlDevice(0), jdir)
    assert status["backend"] == "nvml" and status["sm_clock_mhz"] == 345
    assert status["power_limit_w"] == 700.0 and status["pending_journal"] is None
    assert status["clock_event_reason_names"] == ["gpu_idle"]
    assert status["clock_details"]["app_target_sm_mhz"] == 1980
    assert fake.setter_calls() == []


def test_open_device_simulated_shares_state_across_instances(tmp_path: Path) -> None:
    a = open_device("simulated", 0, state_dir=tmp_path)
    b = open_device("simulated", 0, state_dir=tmp_path)
    a.lock_sm_clocks(1200)
    assert a.uuid() == b.uuid() and b.clock_state().sm_locked_mhz == 1200


def test_no_warnings_on_clean_supported_lock(tmp_path: Path, jdir: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with ClockSession(sim(tmp_path / "state"), "lock", 1200, journal_dir=jdir):
            pass


def test_atomic_journal_write_keeps_old_file_on_failure(tmp_path: Path) -> None:
    from llm_energy.device.base import atomic_write_json, read_json

    path = tmp_path / "j.json"
    atomic_write_json(path, {"a": 1})
    with pytest.raises(TypeError):
        atomic_write_json(path, {"a": object()})  # not JSON-serialisable: fails mid-write
    assert read_json(path) == {"a": 1} and [p.name for p in tmp_path.iterdir()] == ["j.json"]


def test_clock_state_round_trip_and_reason_names() -> None:
    from llm_energy.device.base import describe_clock_event_reasons

    st = ClockState(1200, None, 650.0, locks_known=False)
    assert ClockState.from_dict(json.loads(json.dumps(st.to_dict()))) == st
    assert st.describe() == "SM locked at 1200 MHz, memory unlocked, power limit 650 W"
    assert describe_clock_event_reasons(0x1 | 0x4 | 0x10000) == [
        "gpu_idle",
        "sw_power_cap",
        "0x10000",
    ]
