"""Models that span several GPUs: a `DeviceGroup` metered, locked, journalled and restored as one
device, against a patched `pynvml` with several GPUs and against several simulated GPUs; plus
waiting for a free GPU (gpu.wait_for_gpu_s) and the MIG refusal."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

import llm_energy.device.nvml as nvml_mod
from fake_nvml import FakeNvml, nvml_error
from helpers import CHILD_SETTINGS, ClockSession, EnergyMeter, compose, open_device, patch_nvml
from llm_energy.config.settings import load_config
from llm_energy.control.gpulock import holds_gpu, lock_path
from llm_energy.control.gpupick import pick_gpu, pick_gpus
from llm_energy.control.journal import journal_path, list_journals, uuid_from_journal_path
from llm_energy.control.open import DeviceSpec, open_device_by_uuid
from llm_energy.control.open import open_device as open_device_
from llm_energy.control.recovery import recover_pending
from llm_energy.device.errors import NotSupportedError, RestoreError, SessionConflictError
from llm_energy.device.group import DeviceGroup
from llm_energy.sim import model as simmodel
from llm_energy.sim.busy import simulated_gpus
from llm_energy.sim.generate import workload_for

UUIDS = ["GPU-aaaaaaaa-0000", "GPU-bbbbbbbb-1111", "GPU-cccccccc-2222"]


class MultiFakeNvml(FakeNvml):
    """FakeNvml whose GPUs keep their own energy counter, clocks and locks (by handle)."""

    def __init__(self, n: int = 3) -> None:
        super().__init__(n_gpus=n, uuids=UUIDS[:n])
        self.energy = {f"h{i}": 1_000_000 * (i + 1) for i in range(n)}  # mJ, distinct
        self.step = {f"h{i}": 0 for i in range(n)}  # mJ added per read
        self.power = {f"h{i}": 100_000 + 10_000 * i for i in range(n)}  # mW
        self.sm = {f"h{i}": 345 for i in range(n)}
        self.locked = {f"h{i}": None for i in range(n)}
        self.fail_on: dict[tuple[str, str], Exception] = {}  # (function, handle) -> error

    def _rec_h(self, name: str, h: str, *args: Any) -> None:
        self._rec(name, h, *args)
        if (name, h) in self.fail_on:
            raise self.fail_on[(name, h)]

    def nvmlDeviceGetTotalEnergyConsumption(self, h: str) -> int:
        self._rec_h("nvmlDeviceGetTotalEnergyConsumption", h)
        self.energy[h] += self.step[h]
        return self.energy[h]

    def nvmlDeviceGetPowerUsage(self, h: str) -> int:
        self._rec_h("nvmlDeviceGetPowerUsage", h)
        return self.power[h]

    def nvmlDeviceGetClockInfo(self, h: str, kind: int) -> int:
        self._rec_h("nvmlDeviceGetClockInfo", h, kind)
        return self.sm[h] if kind == nvml_mod.pynvml.NVML_CLOCK_SM else self.mem_clock

    def nvmlDeviceSetGpuLockedClocks(self, h: str, lo: int, hi: int) -> None:
        self._rec_h("nvmlDeviceSetGpuLockedClocks", h, lo, hi)
        self.locked[h] = hi
        self.sm[h] = hi

    def nvmlDeviceResetGpuLockedClocks(self, h: str) -> None:
        self._rec_h("nvmlDeviceResetGpuLockedClocks", h)
        self.locked[h] = None
        self.sm[h] = 345


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> MultiFakeNvml:
    return patch_nvml(monkeypatch, MultiFakeNvml(), privileged=True)


def _calls(fake: FakeNvml, name: str) -> list[tuple[Any, ...]]:
    return [args for n, args in fake.calls if n == name]


# ------------------------------------------------------------------------ metering


def test_group_opens_every_gpu_and_holds_every_lock(fake: MultiFakeNvml, tmp_path: Path) -> None:
    with open_device("nvml", 0, state_dir=tmp_path, exclusive=True, indices="all") as dev:
        assert isinstance(dev, DeviceGroup)
        assert [m.uuid() for m in dev.member_devices()] == UUIDS
        assert dev.uuid() == "_".join(UUIDS)
        assert all(holds_gpu(tmp_path / "locks", u) for u in UUIDS)
    assert not any(holds_gpu(tmp_path / "locks", u) for u in UUIDS)
    with open_device("nvml", 0, state_dir=tmp_path, exclusive=True, indices=[2, 0]) as dev:
        assert [m.uuid() for m in dev.member_devices()] == [UUIDS[2], UUIDS[0]]
        assert not holds_gpu(tmp_path / "locks", UUIDS[1])


def test_group_window_energy_is_the_sum_of_the_members(fake: MultiFakeNvml, tmp_path: Path) -> None:
    with open_device("nvml", 0, state_dir=tmp_path, exclusive=True, indices="all") as dev:
        start = dev.energy_counter_j()
        assert start == pytest.approx((1_000_000 + 2_000_000 + 3_000_000) / 1000)
        meter = EnergyMeter(
            dev, min_window_periods=1, min_window_s=0.0, tick_align=False, update_period_s=0.1
        )
        used_mj = {"h0": 1000, "h1": 2000, "h2": 7000}  # 1 J, 2 J and 7 J of work
        fake.calls.clear()
        with meter.window() as w:
            for h, mj in used_mj.items():
                fake.energy[h] += mj
        assert w.reading is not None
        assert w.reading.energy_j == pytest.approx(10.0)  # the members' sum
        reads = [a[0] for a in _calls(fake, "nvmlDeviceGetTotalEnergyConsumption")]
        # the others are read only when the first member's counter moved (the opening edge
        # reuses what was read at its last move): never more than once per edge
        assert sorted(reads) == ["h0", "h0", "h1", "h2"]
        assert dev.power_w() == pytest.approx(100 + 110 + 120)


def test_group_counter_moves_with_its_first_member_only(
    fake: MultiFakeNvml, tmp_path: Path
) -> None:
    """The others are read when the first member ticks: the group's update period and tick
    alignment are one GPU's, not three interleaved counters'."""
    with open_device("nvml", 0, state_dir=tmp_path, exclusive=True, indices="all") as dev:
        e0 = dev.energy_counter_j()
        fake.energy["h1"] += 5000  # a second member ticks alone
        assert dev.energy_counter_j() == e0
        fake.energy["h0"] += 1000  # the first member ticks: everything is read again
        assert dev.energy_counter_j() == pytest.approx(e0 + 1 + 5)


def test_group_clock_reads_pool_members(fake: MultiFakeNvml, tmp_path: Path) -> None:
    with open_device("nvml", 0, state_dir=tmp_path, exclusive=True, indices="all") as dev:
        fake.sm.update({"h0": 1200, "h1": 1185, "h2": 1200})
        assert dev.sm_clock_mhz() == 1185  # the slowest member
        fake.throttle_fields_ns = None
        fake.violation_ns = {
            fake.NVML_PERF_POLICY_POWER: 1_000_000_000,
            fake.NVML_PERF_POLICY_THERMAL: 0,
        }
        thr = dev.throttle_counters()
        assert thr is not None and thr.power_s == pytest.approx(3.0)  # summed over 3 GPUs


# ------------------------------------------------------------------------ lock / restore


def test_lock_and_restore_hit_every_gpu(fake: MultiFakeNvml, tmp_path: Path) -> None:
    jdir = tmp_path / "journal"
    with (
        open_device("nvml", 0, state_dir=tmp_path, exclusive=True, indices="all") as dev,
        ClockSession(dev, "lock", 1200, journal_dir=jdir, install_signal_handlers=False) as s,
    ):
        assert s.applied_sm_mhz == 1200
        assert fake.locked == {"h0": 1200, "h1": 1200, "h2": 1200}
        journal = json.loads(journal_path(jdir, dev.uuid()).read_text())
        assert [m["uuid"] for m in journal["original"]["members"]] == UUIDS
    assert fake.locked == {"h0": None, "h1": None, "h2": None}
    assert sorted(a[0] for a in _calls(fake, "nvmlDeviceResetGpuLockedClocks")) == [
        "h0",
        "h1",
        "h2",
    ]
    assert list_journals(jdir) == []


def test_a_member_failing_to_restore_does_not_stop_the_others(
    fake: MultiFakeNvml, tmp_path: Path
) -> None:
    jdir = tmp_path / "journal"
    fake.fail_on[("nvmlDeviceResetGpuLockedClocks", "h1")] = nvml_error(
        nvml_mod.pynvml.NVML_ERROR_UNKNOWN
    )
    dev = open_device("nvml", 0, state_dir=tmp_path, exclusive=True, indices="all")
    with (
        pytest.raises(RestoreError, match=UUIDS[1]) as err,
        dev,
        ClockSession(dev, "lock", 1200, journal_dir=jdir, install_signal_handlers=False),
    ):
        pass
    assert "\n" not in str(err.value)
    assert fake.locked == {"h0": None, "h1": 1200, "h2": None}  # the others were restored
    uuid = "_".join(UUIDS)
    assert journal_path(jdir, uuid).exists()  # kept for `llm-energy gpu restore`
    # Fixed: `gpu restore` reopens the whole group from the journal's name and finishes.
    del fake.fail_on[("nvmlDeviceResetGpuLockedClocks", "h1")]
    (found,) = list_journals(jdir)
    with open_device_by_uuid(uuid_from_journal_path(found), state_dir=tmp_path) as again:
        msg = recover_pending(again, jdir)
    assert msg and "Restored" in msg
    assert fake.locked == {"h0": None, "h1": None, "h2": None}
    assert list_journals(jdir) == []


KILLED = (
    CHILD_SETTINGS
    + r"""
import os, signal, sys
from pathlib import Path
from llm_energy.control.session import ClockSession
from llm_energy.control.open import open_device
state = Path(sys.argv[1])
dev = open_device(DeviceSpec.from_dict(DEVICE).but(backend="simulated", index=0, state_dir=state,
                  exclusive=True, indices="all", sim={"noise_rel": 0.0, "count": 3}))
s = ClockSession(dev, "lock", 1200, journal_dir=state / "journal", **SESSION)
s.__enter__()
print("locked", flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""
)


def test_a_killed_group_run_is_restored_whole(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", KILLED, str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == -signal.SIGKILL and "locked" in out.stdout, out.stderr
    uuids = [u for _, u in simulated_gpus("h200", 3)]
    members = [open_device_by_uuid(u, state_dir=tmp_path) for u in uuids]
    assert [m.clock_state().sm_locked_mhz for m in members] == [1200, 1200, 1200]
    # A single-GPU run on one of them refuses (restoring it alone would split the journal) ...
    with pytest.raises(SessionConflictError, match="llm-energy gpu restore") as err:
        ClockSession(members[1], "lock", 900, journal_dir=tmp_path / "journal").__enter__()
    assert "\n" not in str(err.value)
    assert members[1].clock_state().sm_locked_mhz == 1200  # untouched
    # ... an observing one warns; `gpu restore` puts the whole set back.
    with pytest.warns(RuntimeWarning, match="multi-GPU clock journal"):
        ClockSession(members[1], "observe", journal_dir=tmp_path / "journal").__enter__()
    (found,) = list_journals(tmp_path / "journal")
    group = open_device_by_uuid(uuid_from_journal_path(found), state_dir=tmp_path)
    assert isinstance(group, DeviceGroup)
    assert recover_pending(group, tmp_path / "journal")
    assert [m.clock_state().sm_locked_mhz for m in members] == [None, None, None]
    assert list_journals(tmp_path / "journal") == []


def test_a_new_group_session_repairs_a_killed_group_first(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", KILLED, str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == -signal.SIGKILL, out.stderr
    dev = open_device(
        "simulated",
        0,
        state_dir=tmp_path,
        exclusive=True,
        indices="all",
        sim={"count": 3, "noise_rel": 0.0},
    )
    with (
        dev,
        ClockSession(
            dev, "lock", 900, journal_dir=tmp_path / "journal", install_signal_handlers=False
        ) as s,
    ):
        assert s.recovered_message and "Restored" in s.recovered_message
        assert {m.clock_state().sm_locked_mhz for m in dev.member_devices()} == {900}
    assert {m.clock_state().sm_locked_mhz for m in dev.member_devices()} == {None}


# ------------------------------------------------------------------------ locks held elsewhere

HOLDER = r"""
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o666)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
time.sleep(float(sys.argv[2]))
"""


@contextmanager
def holding(path: Path, seconds: float) -> Iterator[None]:
    """Another process holds the GPU lock at `path` for up to `seconds` (killed on exit)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        yield
    finally:
        proc.kill()
        proc.wait()


def test_group_is_all_or_nothing_when_one_gpu_is_busy(tmp_path: Path) -> None:
    cands = simulated_gpus("h200", 3)
    with holding(lock_path(tmp_path, cands[1][1]), 30):
        with pytest.raises(SessionConflictError) as err:
            pick_gpus(cands, None, tmp_path, wait_for_gpu_s=0)
        assert cands[1][1] in str(err.value) and "\n" not in str(err.value)
        assert not holds_gpu(tmp_path, cands[0][1])  # nothing kept from the failed attempt
        chosen, lease = pick_gpus(cands, [0, 2], tmp_path, wait_for_gpu_s=0)
        assert [u for _, u in chosen] == [cands[0][1], cands[2][1]]
        lease.release()


def test_wait_for_gpu_takes_it_when_it_frees(tmp_path: Path) -> None:
    cands = simulated_gpus("h200", 1)
    with holding(lock_path(tmp_path, cands[0][1]), 3.0):
        with pytest.raises(SessionConflictError, match="in use"):
            pick_gpu(cands, 0, tmp_path, wait_for_gpu_s=0)  # 0: refuse at once
        t0 = time.monotonic()
        i, uuid, lease = pick_gpu(cands, "auto", tmp_path, wait_for_gpu_s=20)
        waited = time.monotonic() - t0
        assert (i, uuid) == cands[0] and 0.3 < waited < 10
        lease.release()


def test_wait_for_gpu_gives_up_after_its_timeout(tmp_path: Path) -> None:
    cands = simulated_gpus("h200", 2)
    with holding(lock_path(tmp_path, cands[1][1]), 30):
        t0 = time.monotonic()
        with pytest.raises(SessionConflictError, match=r"still after waiting 0\.7 s") as err:
            pick_gpu(cands, 1, tmp_path, wait_for_gpu_s=0.7)
        assert 0.6 < time.monotonic() - t0 < 5
        assert "\n" not in str(err.value)


# ------------------------------------------------------------------------ MIG


def test_a_gpu_in_mig_mode_is_refused(fake: MultiFakeNvml, tmp_path: Path) -> None:
    fake.mig_mode = 1
    with pytest.raises(NotSupportedError, match="MIG mode is enabled") as err:
        open_device("nvml", "auto", state_dir=tmp_path)
    assert "\n" not in str(err.value)
    assert not any(holds_gpu(tmp_path / "locks", u) for u in UUIDS)  # lock released again
    with pytest.raises(NotSupportedError, match="MIG"):
        open_device("auto", "auto", state_dir=tmp_path)  # never silently falls back to cpu


def test_a_mig_slice_in_cuda_visible_devices_is_refused(
    fake: MultiFakeNvml, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "MIG-4f1c2d3e-aaaa-bbbb-cccc-0123456789ab")
    with pytest.raises(NotSupportedError, match="MIG slice") as err:
        open_device("nvml", "auto", state_dir=tmp_path)
    assert "whole GPU" in str(err.value) and "\n" not in str(err.value)


def test_mig_disabled_or_unsupported_is_accepted(fake: MultiFakeNvml, tmp_path: Path) -> None:
    fake.fail["nvmlDeviceGetMigMode"] = nvml_error(nvml_mod.pynvml.NVML_ERROR_NOT_SUPPORTED)
    with open_device("nvml", "auto", state_dir=tmp_path) as dev:
        assert dev.uuid() == UUIDS[0]


def test_power_timeline_reopens_the_group_without_taking_its_locks(tmp_path: Path) -> None:
    dev = open_device(
        "simulated", 0, state_dir=tmp_path, exclusive=True, indices=[1, 0], sim={"count": 2}
    )
    with dev:
        spec = dev.open_spec()
        assert spec["indices"] == [1, 0] and spec["index"] == 1  # open_device ignores it
        reader = open_device_(DeviceSpec.from_dict(spec))  # what energy/timeline.py does
        assert isinstance(reader, DeviceGroup) and reader.uuid() == dev.uuid()
        assert reader.lease is None
        assert reader.power_w() == pytest.approx(dev.power_w(), rel=0.05)


def test_simulated_group_runs_the_work_on_its_first_gpu_while_the_others_idle(
    tmp_path: Path,
) -> None:
    group = open_device(
        "simulated",
        0,
        state_dir=tmp_path,
        indices="all",
        sim={"count": 3, "noise_rel": 0.0},
    )
    assert isinstance(group, DeviceGroup)
    group.use_workload_clock()
    group.lock_sm_clocks(1200)
    cfg = load_config(compose("model=mistral_7b", "model.weights=random"))
    work = workload_for(cfg.model, batch=8, prompt_tokens=512, new_tokens=64, engine="eager",
                        compiled=False)  # fmt: skip
    expected = simmodel.run_workload(simmodel.get_gpu_model("h200"), work, 1200)
    idle_w = simmodel.idle_power_w(simmodel.get_gpu_model("h200"), 1200)
    meter = EnergyMeter(group, min_window_s=0.0, min_window_periods=1)
    with meter.window(1200) as w:
        timing = group.run_workload(work)
    r = w.reading
    assert r is not None and timing.accounted and r.cap_held and r.tick_aligned
    assert r.busy_s == pytest.approx(expected.cost.time_s, abs=1e-8)
    # the first GPU's work plus two GPUs idling through it; the tail idles on all three
    want = expected.energy_j + 2 * idle_w * r.busy_s + 3 * idle_w * r.tail_s
    assert r.energy_j == pytest.approx(want, rel=1e-6)
    # idle baselines see all three, so the dynamic energy is the work's alone
    assert meter.measure_idle_power_w(0.3) == pytest.approx(3 * idle_w, rel=1e-6)
    group.reset_sm_clocks()
