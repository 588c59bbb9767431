"""One GPU per run: per-UUID flock locks, `gpu.index=auto`, re-entrant sessions, torch/NVML UUID
matching, and the state directory. Cross-process cases run real child processes.

`Child` is also used by test_faults_clock.py.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import llm_energy.device.nvml as nvml_mod
from fake_nvml import FakeNvml
from helpers import CHILD_SETTINGS, ClockSession, SimulatedDevice, open_device, patch_nvml
from llm_energy.control.gpulock import (
    ensure_shared_dir,
    holds_gpu,
    lock_held,
    lock_path,
    read_holder,
    try_acquire_gpu,
)
from llm_energy.control.gpupick import pick_gpu
from llm_energy.control.journal import journal_path
from llm_energy.device.errors import DeviceNotFoundError, SessionConflictError
from llm_energy.device.identity import cuda_index_for_uuid, format_cuda_uuid
from llm_energy.paths import DEFAULT_STATE_DIR, project_paths, resolve_state_dir
from llm_energy.sim.busy import find_simulated_gpu, simulated_gpus

REPO = Path(__file__).resolve().parents[2]

# A child that takes a GPU (as a stage: open_device(exclusive), or as a clock session) and holds
# it until told to stop on stdin; "ready <json>" on stdout once it holds, "refused <line>" if not.
CHILD = (
    CHILD_SETTINGS
    + r"""
import json, sys, time
from pathlib import Path
from llm_energy.control.session import ClockSession
from llm_energy.device.errors import DeviceError
from llm_energy.control.open import open_device
spec = json.loads(sys.argv[1])
state = Path(spec["state"])
try:
    index = spec.get("index", 0)
    chosen = {"count": spec.get("count", 1), "gpu": spec.get("model", "h200"), "noise_rel": 0.0}
    dev = open_device(DeviceSpec.from_dict(DEVICE).but(
        backend="simulated", index=index, state_dir=state, exclusive=spec["exclusive"], sim=chosen))
    session = None
    if spec.get("freq"):
        session = ClockSession(dev, "lock", spec["freq"], journal_dir=state / "journal", **SESSION)
        session.__enter__()
except DeviceError as err:
    print("refused " + str(err), flush=True)
    sys.exit(2)
print("ready " + json.dumps({"index": dev.index, "uuid": dev.uuid()}), flush=True)
sys.stdin.readline()
if session is not None:
    session.__exit__(None, None, None)
"""
)


class Child:
    """A child process holding a simulated GPU (see CHILD)."""

    def __init__(self, **spec: Any) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                CHILD,
                json.dumps({k: str(v) if k == "state" else v for k, v in spec.items()}),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        self.status, _, rest = line.partition(" ")
        self.info: dict[str, Any] = json.loads(rest) if self.status == "ready" else {}
        self.message = rest

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> int:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.write("\n")
            self.proc.stdin.flush()
        self.proc.communicate(timeout=30)
        return self.proc.returncode


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def children() -> Iterator[list[Child]]:
    started: list[Child] = []
    yield started
    for c in started:
        if c.proc.poll() is None:
            c.proc.kill()
            c.proc.communicate(timeout=10)


# ------------------------------------------------------------------------ two processes, one GPU


def test_second_session_on_the_gpu_refuses_naming_the_holder_and_never_resets_it(
    state: Path, children: list[Child]
) -> None:
    holder = Child(state=state, exclusive=False, freq=900)
    children.append(holder)
    assert holder.status == "ready", holder.message
    dev = SimulatedDevice(0, state_dir=state, noise_rel=0.0)
    assert dev.clock_state().sm_locked_mhz == 900
    loser = Child(state=state, exclusive=False, freq=1200)
    children.append(loser)
    assert loser.status == "refused" and loser.stop() == 2
    msg = loser.message
    assert "\n" not in msg and f"pid {holder.pid}" in msg and "in use by" in msg
    # The loser left: the holder's cap and journal are untouched.
    assert dev.clock_state().sm_locked_mhz == 900
    assert json.loads(journal_path(state / "journal", dev.uuid()).read_text())["pid"] == holder.pid
    # In this process too: refused before any setter, the holder's lock intact.
    with pytest.raises(SessionConflictError, match=f"pid {holder.pid}"):
        ClockSession(dev, "lock", 1500, journal_dir=state / "journal").__enter__()
    assert dev.clock_state().sm_locked_mhz == 900
    assert holder.stop() == 0
    assert dev.clock_state().sm_locked_mhz is None
    assert not journal_path(state / "journal", dev.uuid()).exists()


def test_fixed_index_in_use_refuses_in_one_line_naming_the_holder(
    state: Path, children: list[Child]
) -> None:
    holder = Child(state=state, exclusive=True, index=0)
    children.append(holder)
    assert holder.status == "ready"
    with pytest.raises(SessionConflictError) as ei:
        open_device("simulated", 0, state_dir=state, exclusive=True)
    msg = str(ei.value)
    assert "\n" not in msg and f"pid {holder.pid}" in msg and "gpu.index=auto" in msg
    assert "started 20" in msg and "`" in msg  # start time and command of the holder
    # Not exclusive (gpu status, a power timeline): opening to read is never refused.
    assert open_device("simulated", 0, state_dir=state).uuid() == holder.info["uuid"]


def test_auto_picks_different_gpus_then_refuses_when_all_are_taken(
    state: Path, children: list[Child]
) -> None:
    a = Child(state=state, exclusive=True, index="auto", count=2)
    children.append(a)
    b = Child(state=state, exclusive=True, index="auto", count=2)
    children.append(b)
    assert a.status == b.status == "ready"
    assert {a.info["index"], b.info["index"]} == {0, 1}
    assert a.info["uuid"] != b.info["uuid"]
    assert [u for _, u in simulated_gpus("h200", 2)] == sorted(
        [a.info["uuid"], b.info["uuid"]], key=[u for _, u in simulated_gpus("h200", 2)].index
    )
    c = Child(state=state, exclusive=True, index="auto", count=2)
    children.append(c)
    assert c.status == "refused" and "\n" not in c.message
    assert f"pid {a.pid}" in c.message and f"pid {b.pid}" in c.message
    assert b.stop() == 0  # the GPU b held is free again: auto takes it
    d = open_device("simulated", "auto", state_dir=state, sim={"count": 2})
    with d:
        assert d.uuid() == b.info["uuid"] and d.lease is not None
    assert d.lease.released and lock_held(lock_path(state / "locks", d.uuid())) is False


def test_sigkill_frees_the_lock(state: Path, children: list[Child]) -> None:
    holder = Child(state=state, exclusive=False, freq=900)
    children.append(holder)
    assert holder.status == "ready"
    uuid = holder.info["uuid"]
    path = lock_path(state / "locks", uuid)
    assert lock_held(path) is True and read_holder(path) is not None
    holder.proc.send_signal(signal.SIGKILL)
    holder.proc.communicate(timeout=10)
    assert lock_held(path) is False  # the kernel dropped the flock with the process
    lease = try_acquire_gpu(state / "locks", uuid)
    assert lease is not None
    lease.release()
    # The cap the killed run left is repaired by the next session, which gets the lock.
    dev = SimulatedDevice(0, state_dir=state, noise_rel=0.0)
    assert dev.clock_state().sm_locked_mhz == 900
    with ClockSession(dev, "lock", 1200, journal_dir=state / "journal") as s:
        assert s.recovered_message is not None
    assert dev.clock_state().sm_locked_mhz is None


WORKER = (
    CHILD_SETTINGS
    + r"""
import sys, time
from pathlib import Path
from llm_energy.control.session import ClockSession
from llm_energy.device.errors import DeviceError
from llm_energy.control.open import open_device
state = Path(sys.argv[1])
dev = open_device(DeviceSpec.from_dict(DEVICE).but(
    backend="simulated", index=0, state_dir=state, sim={"noise_rel": 0.0}))
for line in sys.stdin:
    _, t0, freq = line.split()
    while time.time() < float(t0):
        pass
    session = ClockSession(dev, "lock", int(freq), journal_dir=state / "journal", **SESSION)
    try:
        session.__enter__()
        print("locked", flush=True)
    except DeviceError as err:
        session = None
        print("refused " + str(err), flush=True)
    sys.stdin.readline()
    if session is not None:
        session.__exit__(None, None, None)
    print("released", flush=True)
"""
)


SIMULTANEOUS_TRIALS = 40  # the issue saw both sessions lock in 23 of 96 such trials


def test_sessions_starting_at_the_same_instant_never_both_lock(state: Path) -> None:
    trials = SIMULTANEOUS_TRIALS
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(state)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    dev = SimulatedDevice(0, state_dir=state, noise_rel=0.0)
    both = winners_seen = 0
    try:
        for trial in range(trials):
            t0 = time.time() + 0.05
            for w, freq in zip(workers, (900, 1200), strict=True):
                assert w.stdin is not None
                w.stdin.write(f"go {t0} {freq}\n")
                w.stdin.flush()
            out = [w.stdout.readline().strip() for w in workers if w.stdout is not None]
            locked = [i for i, o in enumerate(out) if o == "locked"]
            both += len(locked) == 2
            assert len(locked) == 1, (trial, out)
            winner, loser = locked[0], 1 - locked[0]
            winners_seen |= 1 << winner
            assert f"pid {workers[winner].pid}" in out[loser]
            # The loser changed nothing: the winner's cap is in force.
            assert dev.clock_state().sm_locked_mhz == (900, 1200)[winner]
            for w in workers:
                assert w.stdin is not None
                w.stdin.write("release\n")
                w.stdin.flush()
            assert [w.stdout.readline().strip() for w in workers if w.stdout] == ["released"] * 2
            assert dev.clock_state().sm_locked_mhz is None
    finally:
        for w in workers:
            w.kill()
            w.communicate(timeout=10)
    assert both == 0
    assert not journal_path(state / "journal", dev.uuid()).exists()


# ------------------------------------------------------------------------ in one process


def test_session_reuses_the_lock_the_stage_holds(state: Path) -> None:
    locks = state / "locks"
    with open_device(
        "simulated", "auto", state_dir=state, sim={"count": 2, "noise_rel": 0.0}
    ) as dev:
        assert dev.lease is not None and holds_gpu(locks, dev.uuid())
        with ClockSession(dev, "lock", 900, journal_dir=state / "journal") as s:
            assert s.applied_sm_mhz == 900
        # The session's exit dropped only its own reference: the run still holds the GPU.
        assert holds_gpu(locks, dev.uuid()) and lock_held(lock_path(locks, dev.uuid()))
    assert not holds_gpu(locks, dev.uuid())
    assert read_holder(lock_path(locks, dev.uuid())) is None  # a free lock names nobody


def test_pick_gpu_fixed_index_out_of_range_and_no_gpu(tmp_path: Path) -> None:
    cands = simulated_gpus("a100", 2)
    with pytest.raises(DeviceNotFoundError, match=r"indexes 0\.\.1"):
        pick_gpu(cands, 5, tmp_path, wait_for_gpu_s=0)
    with pytest.raises(DeviceNotFoundError, match="no GPU is allowed"):
        pick_gpu([], "auto", tmp_path, wait_for_gpu_s=0)
    i, uuid, lease = pick_gpu(cands, 1, tmp_path, wait_for_gpu_s=0)
    assert (i, uuid) == cands[1]
    lease.release()


def test_simulated_uuids_are_distinct_and_found_whatever_the_model() -> None:
    uuids = [u for key in ("h200", "h100", "a100") for _, u in simulated_gpus(key, 64)]
    assert len(set(uuids)) == len(uuids)
    assert find_simulated_gpu(simulated_gpus("a100", 8)[7][1]) == ("a100", 7)
    assert find_simulated_gpu("GPU-not-simulated") is None


# ------------------------------------------------------------------------ NVML: allowed GPUs


def test_allowed_gpus_follow_cuda_visible_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = patch_nvml(
        monkeypatch, FakeNvml(n_gpus=4, uuids=["GPU-aaaa", "GPU-bbbb", "GPU-cccc", "GPU-dddd"])
    )
    assert nvml_mod.allowed_gpus() == [
        (0, "GPU-aaaa"),
        (1, "GPU-bbbb"),
        (2, "GPU-cccc"),
        (3, "GPU-dddd"),
    ]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-dd,GPU-bb")  # by UUID, in the listed order
    assert nvml_mod.allowed_gpus() == [(0, "GPU-dddd"), (1, "GPU-bbbb")]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,0")  # integers: NVML (PCI bus) order
    assert nvml_mod.allowed_gpus() == [(0, "GPU-cccc"), (1, "GPU-aaaa")]
    assert fake.setter_calls() == []


def test_nvml_auto_skips_a_gpu_another_process_holds(
    state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    patch_nvml(monkeypatch, FakeNvml(n_gpus=2, uuids=["GPU-aaaa", "GPU-bbbb"]))
    code = (
        "import sys, time; from pathlib import Path; from llm_energy.control.gpulock import try_acquire_gpu;"
        f"l = try_acquire_gpu(Path({str(state / 'locks')!r}), 'GPU-aaaa'); print('held', flush=True);"
        "sys.stdin.readline()"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with open_device("nvml", "auto", state_dir=state) as dev:
            assert dev.uuid() == "GPU-bbbb" and dev.index == 1
        with pytest.raises(SessionConflictError, match=f"pid {holder.pid}"):
            open_device("nvml", 0, state_dir=state, exclusive=True)
    finally:
        holder.communicate("\n", timeout=10)


# ------------------------------------------------------------------------ torch <-> NVML


class _CUuuid:
    """Like torch._C._CUuuid: `.bytes` is 16 ints, str() the 8-4-4-4-12 hex form."""

    def __init__(self, hex32: str) -> None:
        self.bytes = list(bytes.fromhex(hex32))

    def __str__(self) -> str:
        h = bytes(self.bytes).hex()
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


A = "4c8a0f52" + "1111" + "2222" + "3333" + "444455556666"
B = "9e1d77aa" + "0000" + "1111" + "2222" + "333344445555"
NVML_A = "GPU-4c8a0f52-1111-2222-3333-444455556666"
NVML_B = "GPU-9e1d77aa-0000-1111-2222-333344445555"


def test_cuda_uuid_format_matches_nvml() -> None:
    assert format_cuda_uuid(_CUuuid(A)) == NVML_A
    assert format_cuda_uuid(str(_CUuuid(A))) == NVML_A
    assert format_cuda_uuid(NVML_A.upper().replace("GPU-", "gpu-")) == NVML_A


def test_cuda_index_is_chosen_by_uuid_not_by_index() -> None:
    # CUDA fastest-first put NVML's GPU 1 first: the model must go to cuda:0 for NVML_B.
    assert cuda_index_for_uuid(NVML_B, [NVML_B, NVML_A]) == 0
    assert cuda_index_for_uuid(NVML_A, [NVML_B, NVML_A]) == 1
    with pytest.raises(DeviceNotFoundError) as ei:
        cuda_index_for_uuid(NVML_A, [NVML_B])
    msg = str(ei.value)
    assert "\n" not in msg and NVML_A in msg and "cuda:0=" + NVML_B in msg
    assert "CUDA_DEVICE_ORDER=PCI_BUS_ID" in msg


def test_torch_device_for_matches_uuid_and_refuses_a_mismatch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import torch

    from llm_energy.run import engine

    props = {0: types.SimpleNamespace(uuid=_CUuuid(B)), 1: types.SimpleNamespace(uuid=_CUuuid(A))}
    cuda = types.SimpleNamespace(
        is_available=lambda: True, device_count=lambda: 2, get_device_properties=props.__getitem__
    )
    monkeypatch.setattr(torch, "cuda", cuda)
    assert engine.torch_device_for("nvml", NVML_A) == "cuda:1"
    assert engine.torch_device_for("simulated", NVML_A) == "cpu"
    with pytest.raises(DeviceNotFoundError) as ei:
        engine.torch_device_for("nvml", "GPU-00000000-0000-0000-0000-000000000000")
    assert "\n" not in str(ei.value) and "does not see it" in str(ei.value)
    cuda.is_available = lambda: False  # a CPU-only torch on a GPU host: never run on the CPU
    with pytest.raises(DeviceNotFoundError, match="cannot use CUDA"):
        engine.torch_device_for("nvml", NVML_A)


def test_nvml_synchronize_uses_the_cuda_device_with_its_uuid(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    patch_nvml(monkeypatch, FakeNvml(n_gpus=2, uuids=[NVML_A, NVML_B]))
    synced: list[int] = []
    props = {0: types.SimpleNamespace(uuid=_CUuuid(B)), 1: types.SimpleNamespace(uuid=_CUuuid(A))}
    cuda = types.SimpleNamespace(
        is_available=lambda: True,
        is_initialized=lambda: True,
        synchronize=synced.append,
        device_count=lambda: 2,
        get_device_properties=props.__getitem__,
    )
    monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(cuda=cuda))
    nvml_mod.NvmlDevice(0).synchronize()  # NVML GPU 0 (A) is CUDA device 1
    assert synced == [1]


# ------------------------------------------------------------------------ state directory


def test_state_dir_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LLM_ENERGY_STATE_DIR")
    monkeypatch.setenv("HOME", "/root-or-anyone")  # sudo changes HOME: the state dir must not move
    assert resolve_state_dir(None) == DEFAULT_STATE_DIR == Path("/var/tmp/llm-energy")
    monkeypatch.setenv("LLM_ENERGY_STATE_DIR", str(tmp_path / "env"))
    assert project_paths(tmp_path).state_dir == tmp_path / "env"
    paths = project_paths(tmp_path)
    assert paths.gpu_state_dir("/srv/gpu-state") == Path("/srv/gpu-state")  # gpu.state_dir wins
    assert paths.gpu_state_dir("rel/state") == tmp_path / "rel" / "state"


def test_state_dir_is_created_shared(tmp_path: Path) -> None:
    d = ensure_shared_dir(tmp_path / "a" / "state")
    assert stat.S_IMODE(d.stat().st_mode) == 0o1777
    lease = try_acquire_gpu(d / "locks", "GPU-x")
    assert lease is not None
    assert stat.S_IMODE(lock_path(d / "locks", "GPU-x").stat().st_mode) == 0o666
    lease.release()
    (tmp_path / "link").symlink_to(tmp_path / "a")
    assert ensure_shared_dir(tmp_path / "link") == tmp_path / "link"  # not world-writable: fine
    os.chmod(tmp_path, 0o777)
    try:
        with pytest.raises(Exception, match="symbolic link"):
            ensure_shared_dir(tmp_path / "link")  # planted in a world-writable directory
    finally:
        os.chmod(tmp_path, 0o700)
