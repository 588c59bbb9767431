"""Clock-control faults, one test (or parameter set) per row of the faults issue, on the simulated
backend (and the fake NVML for injected NVML errors). Rows about signals run a real child
process through the stages' own `run_stage` and send it real signals.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pynvml as real_pynvml
import pytest
from test_gpu_lock import Child

import llm_energy.control.journal as journal_mod
from fake_nvml import FakeNvml, nvml_error
from helpers import CHILD_SETTINGS, ClockSession, EnergyMeter, open_device, patch_nvml, sim
from llm_energy.cli.main import main as cli
from llm_energy.control.gpulock import lock_held, lock_path
from llm_energy.control.journal import journal_path, now_iso
from llm_energy.control.recovery import restore_from_journal
from llm_energy.device.base import ClockState
from llm_energy.device.errors import DeviceError
from llm_energy.device.identity import boot_id, process_start_ticks
from llm_energy.device.nvml import NvmlDevice

REPO = Path(__file__).resolve().parents[2]
SIGNALS = [signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT]

# A capped "infer stage" run: the stages' run_stage around a loop that measures one row per
# window, each labelled with the cap and the clock the GPU actually ran at.
STAGE = (
    CHILD_SETTINGS
    + r"""
import json, os, sys, time
from pathlib import Path
sys.path.insert(0, os.path.join(os.environ["LLM_ENERGY_ROOT"], "stages"))
from _common import run_stage
from llm_energy.control.session import ClockSession
from llm_energy.control.open import open_device
from llm_energy.sim.device import SimulatedDevice

spec = json.loads(os.environ["FAULT_SPEC"])
state, out = Path(spec["state"]), Path(spec["out"])
if spec.get("user") is not None:  # after the imports: the interpreter may be unreadable to it
    import hashlib, fcntl, shlex, socket, tempfile, uuid, random, math, errno, signal, atexit
    import llm_energy.control.gpulock, llm_energy.control.journal, llm_energy.sim.device
    os.setgid(spec["user"])
    os.setuid(spec["user"])
if spec.get("slow_restore_s"):
    reset = SimulatedDevice.reset_sm_clocks
    def slow_reset(self):
        (out / "restoring").write_text("x")
        time.sleep(spec["slow_restore_s"])
        reset(self)
    SimulatedDevice.reset_sm_clocks = slow_reset

def main(cfg, paths):
    chosen = {"gpu": spec.get("model", "h200"), "count": 2, "noise_rel": 0.0}
    dev = open_device(DeviceSpec.from_dict(DEVICE).but(
        backend="simulated", index=spec.get("index", 0), state_dir=state, exclusive=True, sim=chosen))
    with dev, ClockSession(dev, "lock", 900, journal_dir=state / "journal", **SESSION) as clocks, \
            open(out / "rows.jsonl", "w") as rows:
        for n in range(100000):
            dev.window_begin()
            time.sleep(0.01)
            clock = dev.sm_clock_mhz()
            dev.window_end()
            rows.write(json.dumps({"freq_applied_mhz": clocks.applied_sm_mhz, "sm_clock_mhz": clock}) + "\n")
            rows.flush()
            if n == 2:
                (out / "measuring").write_text("x")

run_stage("infer", main, argv=[])
"""
)


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A directory other users can reach (pytest's tmp_path is 0700 under /tmp/pytest-of-*)."""
    d = Path(tempfile.mkdtemp(prefix="llm-energy-faults-"))
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def start_stage(tmp: Path, ignore: tuple[int, ...] = (), **spec: Any) -> subprocess.Popen[str]:
    out = tmp / "out"
    out.mkdir(exist_ok=True)
    os.chmod(out, 0o777)
    spec = {"state": str(tmp / "state"), "out": str(out)} | spec
    params = tmp / "params.yaml"  # a copy every user can read
    shutil.copyfile(REPO / "params.yaml", params)
    os.chmod(params, 0o644)
    env = os.environ | {
        "LLM_ENERGY_ROOT": str(REPO),
        "LLM_ENERGY_PARAMS": str(params),
        "FAULT_SPEC": json.dumps(spec),
    }

    def preexec() -> None:
        for sig in ignore:  # what nohup / a background job of a non-interactive shell does
            signal.signal(sig, signal.SIG_IGN)

    return subprocess.Popen(
        [sys.executable, "-c", STAGE],
        env=env,
        cwd=tmp,
        preexec_fn=preexec,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(path: Path, proc: subprocess.Popen[str], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if proc.poll() is not None:
            _, err = proc.communicate()
            raise AssertionError(f"child exited {proc.returncode} early: {err}")
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.01)


def rows(tmp: Path) -> list[dict[str, Any]]:
    text = (tmp / "out" / "rows.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def assert_restored_and_ended(tmp: Path, proc: subprocess.Popen[str], signum: int) -> str:
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 128 + signum, err
    assert "Traceback" not in err, err
    dev = sim(tmp / "state")
    assert dev.clock_state().sm_locked_mhz is None
    assert not journal_path(tmp / "state" / "journal", dev.uuid()).exists()
    assert lock_held(lock_path(tmp / "state" / "locks", dev.uuid())) is False
    measured = rows(tmp)
    assert len(measured) >= 3
    # Never a row labelled 900 MHz measured at other clocks: the run ended with the restore.
    assert {(r["freq_applied_mhz"], r["sm_clock_mhz"]) for r in measured} == {(900, 900)}
    return err


# ------------------------------------------------------------------------ signals


@pytest.mark.slow
@pytest.mark.parametrize("signum", SIGNALS, ids=lambda s: signal.Signals(s).name)
@pytest.mark.parametrize("ignored_at_start", [False, True], ids=["default", "ignored"])
def test_signal_restores_clocks_and_ends_the_run(
    tmp_path: Path, signum: int, ignored_at_start: bool
) -> None:
    proc = start_stage(tmp_path, ignore=(signum,) if ignored_at_start else ())
    wait_for(tmp_path / "out" / "measuring", proc)
    assert sim(tmp_path / "state").clock_state().sm_locked_mhz == 900
    proc.send_signal(signum)
    err = assert_restored_and_ended(tmp_path, proc, signum)
    assert "restoring the original GPU clocks" in err


@pytest.mark.slow
@pytest.mark.parametrize("slow_restore_s", [0.0, 0.8], ids=["quick", "during-restore"])
def test_ctrl_c_twice_restores_without_traceback(tmp_path: Path, slow_restore_s: float) -> None:
    proc = start_stage(tmp_path, slow_restore_s=slow_restore_s)
    wait_for(tmp_path / "out" / "measuring", proc)
    proc.send_signal(signal.SIGINT)
    if slow_restore_s:
        wait_for(tmp_path / "out" / "restoring", proc)  # the second press lands mid-restore
    else:
        time.sleep(0.005)
    proc.send_signal(signal.SIGINT)
    err = assert_restored_and_ended(tmp_path, proc, signal.SIGINT)
    assert "KeyboardInterrupt" not in err
    assert [line for line in err.splitlines() if "error" in line or "interrupted" in line] == [
        "llm-energy infer: interrupted"
    ]


def test_session_outside_the_main_thread_refuses_to_cap(tmp_path: Path) -> None:
    dev = sim(tmp_path / "state")
    got: list[BaseException] = []

    def run() -> None:
        try:
            with ClockSession(dev, "lock", 900, journal_dir=tmp_path / "journal"):
                pass
        except BaseException as err:
            got.append(err)

    t = threading.Thread(target=run, name="worker")
    t.start()
    t.join(30)
    assert len(got) == 1 and isinstance(got[0], DeviceError)
    msg = str(got[0])
    assert "\n" not in msg and "main thread" in msg and "worker" in msg
    assert dev.clock_state().sm_locked_mhz is None and not (tmp_path / "journal").exists()
    # Observe mode changes nothing, so it needs no handlers: fine from any thread.
    got.clear()
    t = threading.Thread(
        target=lambda: ClockSession(dev, "observe", journal_dir=tmp_path).__enter__()
    )
    t.start()
    t.join(30)


def test_signal_between_journal_and_setter_is_handled_after_the_setter(tmp_path: Path) -> None:
    dev = sim(tmp_path / "state")
    lock = dev.lock_sm_clocks
    seen: list[int | None] = []

    def lock_then_signalled(freq_mhz: int) -> None:
        os.kill(os.getpid(), signal.SIGTERM)  # arrives after the journal said "changed"
        time.sleep(0.05)  # the handler would run here, mid-change, without the deferral
        lock(freq_mhz)
        seen.append(dev.clock_state().sm_locked_mhz)

    dev.lock_sm_clocks = lock_then_signalled  # type: ignore[method-assign]
    old = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        with pytest.raises(SystemExit) as ei:
            ClockSession(dev, "lock", 900, journal_dir=tmp_path / "journal").__enter__()
    finally:
        signal.signal(signal.SIGTERM, old)
    assert ei.value.code == 128 + signal.SIGTERM
    assert seen == [900]  # the setter finished; then the restore ran
    assert dev.clock_state().sm_locked_mhz is None
    assert not journal_path(tmp_path / "journal", dev.uuid()).exists()


# ------------------------------------------------------------------------ journal owner


def _journal(state: Path, uuid: str, **fields: Any) -> Path:
    data: dict[str, Any] = {
        "version": 2,
        "uuid": uuid,
        "pid": 2**22 + 17,
        "proc_start_ticks": 1,
        "boot_id": boot_id(),
        "host": "here",
        "updated_at": now_iso(),
        "original": ClockState(None, None, 700.0).to_dict(),
        "changed": {"sm": True, "mem": True, "power_limit": False},
    }
    for key, value in fields.items():
        if value is _DROP:
            data.pop(key, None)
        else:
            data[key] = value
    path = journal_path(state / "journal", uuid)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


_DROP = object()


def test_reused_pid_does_not_block_restore_forever(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state"
    dev = sim(state)
    dev.lock_sm_clocks(600)  # left by a killed run whose pid now belongs to our parent
    ppid = os.getppid()
    ticks = process_start_ticks(ppid)
    assert ticks is not None
    path = _journal(state, dev.uuid(), pid=ppid, proc_start_ticks=ticks - 1)
    assert cli(["gpu", "restore", "--state-dir", str(state)]) == 0
    assert "Restored" in capsys.readouterr().out
    assert dev.clock_state().sm_locked_mhz is None and not path.exists()


# ------------------------------------------------------------------------ corrupt journals

CORRUPT = {
    "truncated": '{"version": 2, "uuid": "X", "pid": 12',
    "empty": "",
    "a list": "[1, 2]",
    "a string": '"journal"',
}


@pytest.mark.parametrize("text", list(CORRUPT.values()), ids=list(CORRUPT))
def test_corrupt_journal_is_shown_refused_and_cleared(
    tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state"
    dev = sim(state)
    dev.lock_sm_clocks(600)
    path = journal_path(state / "journal", dev.uuid())
    path.parent.mkdir(parents=True)
    path.write_text(text)
    clear = f"llm-energy gpu clear --uuid {dev.uuid()}"
    # gpu status: shown as corrupt, with the one command that clears it.
    assert (
        cli(["gpu", "status", "--backend", "simulated", "--state-dir", str(state), "--json"]) == 0
    )
    status = json.loads(capsys.readouterr().out)
    entry = next(j for j in status["journals"] if j["uuid"] == dev.uuid())
    assert entry["state"] == "corrupt" and entry["fix"] == clear
    assert status["journal_state"] == "corrupt" and status["journal_fix"] == clear
    # A capped run refuses in one line saying the same; nothing changed.
    with pytest.raises(DeviceError) as ei:
        ClockSession(dev, "lock", 900, journal_dir=state / "journal").__enter__()
    assert "\n" not in str(ei.value) and clear in str(ei.value) and "corrupt" in str(ei.value)
    assert dev.clock_state().sm_locked_mhz == 600 and path.exists()
    # gpu restore says the same in one line.
    assert cli(["gpu", "restore", "--state-dir", str(state)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and clear in err and "Traceback" not in err
    # The command clears it: locks back to the driver default, journal gone; runs work again.
    assert cli(["gpu", "clear", "--uuid", dev.uuid(), "--state-dir", str(state)]) == 0
    assert "driver default" in capsys.readouterr().out
    assert dev.clock_state().sm_locked_mhz is None and not path.exists()
    with ClockSession(dev, "lock", 900, journal_dir=state / "journal"):
        assert dev.clock_state().sm_locked_mhz == 900


DAMAGED = {
    "pid not a number": {"pid": "1234x"},
    "pid missing": {"pid": _DROP},
    "changed missing": {"changed": _DROP},
    "changed not an object": {"changed": "yes"},
    "changed.sm not a bool": {"changed": {"sm": "no", "mem": 1}},
    "original missing": {"original": _DROP},
    "original not an object": {"original": [1500]},
    "sm lock not a number": {"original": {"sm_locked_mhz": "fast", "power_limit_w": 700}},
    "power limit not a number": {"original": {"power_limit_w": "lots"}},
    "owner fields of wrong types": {
        "proc_start_ticks": "x",
        "boot_id": 7,
        "host": [],
        "updated_at": 5,
    },
}


@pytest.mark.parametrize("fields", list(DAMAGED.values()), ids=list(DAMAGED))
def test_damaged_journal_restores_everything_conservatively(
    tmp_path: Path, fields: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state"
    dev = sim(state)
    dev.lock_sm_clocks(600)  # what the killed run left: SM and memory locked
    dev.lock_mem_clocks(2201)
    path = _journal(state, dev.uuid(), **fields)
    assert (
        cli(["gpu", "status", "--backend", "simulated", "--state-dir", str(state), "--json"]) == 0
    )
    assert "Traceback" not in capsys.readouterr().err
    assert cli(["gpu", "restore", "--state-dir", str(state)]) == 0
    out = capsys.readouterr()
    assert "Restored" in out.out and "Traceback" not in out.err
    # Never "restored" while the clocks stay capped: everything is put back.
    assert dev.clock_state() == ClockState(None, None, 700.0)
    assert not path.exists()


# ------------------------------------------------------------------------ state directory


def test_unwritable_state_dir_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dev = sim(tmp_path / "state")

    # A read-only file system under the journal.
    def read_only(*args: object, **kw: object) -> None:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(journal_mod, "atomic_write_text", read_only)
    with pytest.raises(DeviceError) as ei:
        ClockSession(dev, "lock", 900, journal_dir=tmp_path / "journal").__enter__()
    msg = str(ei.value)
    assert "\n" not in msg and "Read-only file system" in msg and "gpu.state_dir" in msg
    assert dev.clock_state().sm_locked_mhz is None  # nothing changed without a journal
    assert lock_held(lock_path(tmp_path / "locks", dev.uuid())) is False
    # A state directory that cannot exist (a file is in the way).
    (tmp_path / "file").write_text("x")
    with pytest.raises(DeviceError) as ei:
        open_device("simulated", "auto", state_dir=tmp_path / "file" / "state")
    assert "\n" not in str(ei.value) and "state directory" in str(ei.value)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a child as another user")
def test_state_dir_not_writable_by_this_user_is_one_line(shared_tmp: Path) -> None:
    state = shared_tmp / "state"
    state.mkdir(mode=0o755)  # root's, not shared: another user cannot lock or journal there
    proc = start_stage(shared_tmp, user=65534)  # a plain user
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err and lines[-1].startswith("llm-energy infer: error:")
    assert "gpu.state_dir" in lines[-1]
    assert sim(state).clock_state().sm_locked_mhz is None


# ------------------------------------------------------------------------ finding journals


def test_killed_run_on_another_simulated_model_is_found_by_restore(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state"
    holder = Child(state=state, exclusive=True, index=1, count=2, model="a100", freq=900)
    assert holder.status == "ready", holder.message
    holder.proc.kill()
    holder.proc.communicate(timeout=10)
    dev = sim(state, index=1, gpu="a100")
    assert dev.clock_state().sm_locked_mhz == 900
    assert cli(["gpu", "status", "--state-dir", str(state), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert [j["uuid"] for j in status["journals"]] == [dev.uuid()]
    # No --backend/--model/--index needed: the journal names its GPU by UUID.
    assert cli(["gpu", "restore", "--state-dir", str(state)]) == 0
    out = capsys.readouterr().out
    assert dev.uuid() in out and "nothing to restore" not in out
    assert dev.clock_state().sm_locked_mhz is None
    assert lock_held(lock_path(state / "locks", dev.uuid())) is False


# The CLI as uid 65534, privileges dropped after the imports (the interpreter may live in a
# directory that user cannot read).
AS_USER = r"""
import os, sys
import hashlib, fcntl, shlex, socket, tempfile, uuid, random, math, errno, signal, atexit
import llm_energy.cli.main, llm_energy.device, llm_energy.control.journal, llm_energy.sim.device
import llm_energy.io.files, llm_energy.device.cpu
os.setgid(65534)
os.setuid(65534)
sys.exit(llm_energy.cli.main.main(sys.argv[1:]))
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to play sudo and a plain user")
def test_journal_left_by_sudo_run_is_visible_to_the_user(shared_tmp: Path) -> None:
    state = shared_tmp / "state"
    holder = Child(state=state, exclusive=True, freq=900)  # the sudo run (this test is root)
    assert holder.status == "ready", holder.message
    holder.proc.kill()
    holder.proc.communicate(timeout=10)
    dev = sim(state)

    def as_user(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", AS_USER, "gpu", *args, "--state-dir", str(state)],
            env=os.environ | {"HOME": "/nonexistent", "USER": "nobody"},
            cwd=shared_tmp,
            capture_output=True,
            text=True,
            timeout=60,
        )

    status = as_user("status", "--backend", "simulated", "--json")
    assert status.returncode == 0, status.stderr
    entry = json.loads(status.stdout)["journals"][0]
    assert entry["uuid"] == dev.uuid() and entry["state"] == "pending"
    assert entry["original"]["sm_locked_mhz"] is None and entry["owner_running"] is False
    restore = as_user("restore")  # found; the simulated GPU's state file is root's
    assert "Traceback" not in restore.stderr and "nothing to restore" not in restore.stdout
    assert dev.uuid() in restore.stdout + restore.stderr
    if restore.returncode:
        assert len(restore.stderr.strip().splitlines()) == 1 and "sudo" in restore.stderr
        assert cli(["gpu", "restore", "--state-dir", str(state)]) == 0  # sudo llm-energy ...
    assert dev.clock_state().sm_locked_mhz is None


# ------------------------------------------------------------------------ NVML errors


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeNvml:
    f = patch_nvml(monkeypatch, FakeNvml(), privileged=True)
    monkeypatch.setenv("LLM_ENERGY_ROOT", str(REPO))
    return f


def _run_stage(main: Any) -> int:
    sys.path.insert(0, str(REPO / "stages"))
    try:
        from _common import run_stage
    finally:
        sys.path.remove(str(REPO / "stages"))
    with pytest.raises(SystemExit) as ei:
        run_stage("infer", main, argv=[])
    return int(ei.value.code or 0)


@pytest.mark.parametrize(
    "failing",
    [
        ["nvmlDeviceGetTotalEnergyConsumption"],
        # Clock and reason reads are optional (the row loses cap_held); the counter is not.
        [
            "nvmlDeviceGetClockInfo",
            "nvmlDeviceGetCurrentClocksEventReasons",
            "nvmlDeviceGetTotalEnergyConsumption",
        ],
    ],
    ids=["energy", "clocks-then-energy"],
)
@pytest.mark.parametrize(
    "code",
    [real_pynvml.NVML_ERROR_GPU_IS_LOST, real_pynvml.NVML_ERROR_UNKNOWN],
    ids=["gpu-lost", "unknown"],
)
def test_nvml_error_mid_window_ends_in_one_line_with_clocks_restored(
    fake: FakeNvml,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    failing: list[str],
    code: int,
) -> None:
    journals = tmp_path / "journal"
    readings: list[Any] = []

    def main(cfg: object, paths: object) -> None:
        dev = NvmlDevice(0)
        meter = EnergyMeter(dev, tick_align=False, min_window_s=0.0, update_period_s=0.001)
        with dev, ClockSession(dev, "lock", 1200, journal_dir=journals):
            assert fake.locked_sm == 1200
            for n in range(4):
                with meter.window(1200) as w:
                    time.sleep(0.005)
                    for name in failing[: n + 1]:  # one more NVML call breaks per window
                        fake.fail[name] = nvml_error(code)
                readings.append(w.reading)

    assert _run_stage(main) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("llm-energy infer: error: Cannot read the GPU energy counter")
    assert not any("Traceback" in line for line in err)
    # Optional reads failing degrade a row; only the counter read ends the run.
    assert len(readings) == len(failing) - 1
    assert fake.locked_sm is None and "nvmlDeviceResetGpuLockedClocks" in fake.setter_calls()
    assert not journal_path(journals, "GPU-fake-0000").exists()


def test_nvml_error_in_the_restore_keeps_the_journal_and_says_so(
    fake: FakeNvml, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    journals = tmp_path / "journal"

    def main(cfg: object, paths: object) -> None:
        dev = NvmlDevice(0)
        with dev, ClockSession(dev, "lock", 1200, journal_dir=journals):
            fake.fail["nvmlDeviceResetGpuLockedClocks"] = nvml_error(
                real_pynvml.NVML_ERROR_GPU_IS_LOST
            )

    assert _run_stage(main) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("llm-energy infer: error: Cannot restore GPU GPU-fake-0000")
    assert "llm-energy gpu restore" in err[-1]
    assert journal_path(journals, "GPU-fake-0000").exists()
    del fake.fail["nvmlDeviceResetGpuLockedClocks"]
    assert "Restored" in restore_from_journal(NvmlDevice(0), journals)
    assert fake.locked_sm is None
