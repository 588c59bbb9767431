"""Several simulated GPUs on one node through DVC's experiment queue (issue 9, item 1).

A copy of the repo with the tiny `ci` experiment; `llm-energy grid --prepare --queue` then
`dvc queue start -j N`. Each queued worker takes a free simulated GPU with `gpu.index=auto`.
Also: a run finding every GPU taken (fails with one line, or waits), and a worker killed with
SIGKILL (its GPU lock is freed, its clock journal recovered by the next run, `grid status`
shows it lost). Shared helpers (`make_workspace`, `dvc`, `exp_run_json`) serve test_slurm too.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from bench_common import make_workspace
from helpers import experiment_data, experiment_metrics
from llm_energy.cli import stage_server
from llm_energy.control.gpulock import try_acquire_gpu
from llm_energy.io.compose import compose_params
from llm_energy.paths import gpu_journal_dir, gpu_lock_dir
from llm_energy.sim.busy import simulated_gpus

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow

SIM = [
    "gpu=simulated",
    "gpu.simulated_count=2",
    "gpu.index=auto",
    "gpu.max_window_repeats=300",
]
# Three caps with a 1.5 s settle after each clock change: each infer lasts seconds of wall time,
# so two workers started together overlap measurably (request timestamps have 1 s resolution).
SWEEP = ["sweep.freqs_mhz=[1005,1305,1605]", "gpu.cooldown_s=1.5"]


def env_for(state_dir: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["LLM_ENERGY_STATE_DIR"] = str(state_dir)
    for key in ("LLM_ENERGY_ROOT", "LLM_ENERGY_PROGRESS_DIR", "DVC_EXP_NAME"):
        env.pop(key, None)
    env.update(extra)
    return env


def run(
    cmd: list[str], cwd: Path, env: dict[str, str], check: bool = True, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return proc


def dvc(*args: str) -> list[str]:
    return [sys.executable, "-m", "dvc", *args]


def llm_energy(*args: str) -> list[str]:
    return [sys.executable, "-m", "llm_energy.cli.main", *args]


def exp_infer_file(ws: Path, name: str, relpath: str) -> str:
    """A file of experiment `name`'s data/infer, read from the cache through its dvc.lock."""
    refs = run(["git", "for-each-ref", "--format=%(refname)", "refs/exps"], ws, env_for(ws)).stdout
    ref = next(r for r in refs.split() if r.rsplit("/", 1)[-1] == name)
    lock = yaml.safe_load(run(["git", "show", f"{ref}:dvc.lock"], ws, env_for(ws)).stdout)
    out = next(o for o in lock["stages"]["infer"]["outs"] if o["path"] == "data/infer")
    cache = ws / ".dvc" / "cache" / "files" / "md5"
    listing = json.loads((cache / out["md5"][:2] / out["md5"][2:]).read_text())
    md5 = {e["relpath"]: e["md5"] for e in listing}[relpath]
    return (cache / md5[:2] / md5[2:]).read_text()


def exp_run_json(ws: Path, name: str) -> dict[str, Any]:
    return json.loads(exp_infer_file(ws, name, "run.json"))


def exp_requests(ws: Path, name: str) -> list[dict[str, Any]]:
    text = exp_infer_file(ws, name, "requests.jsonl")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def wait_queue_done(ws: Path, env: dict[str, str], timeout_s: float = 300) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = run(dvc("queue", "status"), ws, env).stdout
        if "Running" not in status and "Queued" not in status:
            return status
        time.sleep(2)
    raise AssertionError(f"queue still busy after {timeout_s} s:\n{status}")


def wait_key_available() -> bool:
    """gpu.wait_for_gpu_s is being added by another change; the waiting test needs it."""
    from llm_energy.config.settings import load_config

    try:
        load_config(compose_params(REPO / "conf", ["gpu.wait_for_gpu_s=1"]))
    except Exception:
        return False
    return True


def _interval(rows: list[dict[str, Any]]) -> tuple[str, str]:
    return min(r["started_at"] for r in rows), max(r["ended_at"] for r in rows)


@pytest.fixture(scope="module")
def queued(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One queue session: 2 units on 2 simulated GPUs with -j 2, or 3 units with -j 3 and
    gpu.wait_for_gpu_s where available (the third waits for a GPU to free)."""
    ws = tmp_path_factory.mktemp("queue_ws")
    state = tmp_path_factory.mktemp("queue_state")
    env = env_for(state)
    make_workspace(ws, env)
    three = wait_key_available()
    tasks = "task=generation,qa,summarization" if three else "task=generation,qa"
    extra = ["gpu.wait_for_gpu_s=120"] if three else []
    sets = [a for s in [*SIM, *SWEEP, *extra, tasks] for a in ("-S", s)]
    run(llm_energy("grid", "--prepare", *sets), ws, env)
    run(llm_energy("grid", "--queue", *sets), ws, env)
    started = time.monotonic()
    try:
        run(dvc("queue", "start", "-j", "3" if three else "2"), ws, env)
        status = wait_queue_done(ws, env)
    finally:
        run(dvc("queue", "stop", "--kill"), ws, env, check=False)
        run(llm_energy("stage-server", "--stop"), ws, env, check=False)  # grid --queue started it
    names = [f"ci-tiny_gpt2-{t}" for t in ("generation", "qa", "summarization")][
        : 3 if three else 2
    ]
    return {
        "ws": ws,
        "env": env,
        "state": state,
        "names": names,
        "status": status,
        "wall_s": time.monotonic() - started,
    }


def test_two_workers_run_at_once_on_different_gpus(queued: dict[str, Any]) -> None:
    ws, names = queued["ws"], queued["names"]
    assert queued["status"].count("Success") == len(names), queued["status"]
    runs = {n: exp_run_json(ws, n) for n in names}
    spans = {n: _interval(exp_requests(ws, n)) for n in names}
    uuids = {n: r["device"]["uuid"] for n, r in runs.items()}
    assert set(uuids.values()) <= {u for _, u in simulated_gpus("h200", 2)}
    overlapping = [
        (a, b)
        for i, a in enumerate(names)
        for b in names[i + 1 :]
        if spans[a][0] <= spans[b][1] and spans[b][0] <= spans[a][1]
    ]
    assert overlapping, f"no two experiments ran at the same time: {spans}"
    for a, b in overlapping:  # never two at once on one GPU
        assert uuids[a] != uuids[b], (a, b, uuids, spans)


def test_workers_restore_prepare_and_model_from_the_run_cache(queued: dict[str, Any]) -> None:
    for name in queued["names"]:
        logs = run(dvc("queue", "logs", name), queued["ws"], queued["env"]).stdout
        assert "Stage 'prepare' is cached - skipping run" in logs, logs[-2000:]
        assert "Stage 'model' is cached - skipping run" in logs
        assert "Running stage 'infer'" in logs


def test_units_stop_at_stats_and_render_their_report_on_demand(
    queued: dict[str, Any], tmp_path: Path
) -> None:
    name = queued["names"][0]
    logs = run(dvc("queue", "logs", name), queued["ws"], queued["env"]).stdout
    assert "Running stage 'stats'" in logs and "Running stage 'plots'" not in logs, logs[-2000:]
    # On demand, in a clone (the queue workspace stays as the other tests expect it).
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(queued["ws"]), str(clone)], check=True)
    run(["git", "fetch", "-q", str(queued["ws"]), "refs/exps/*:refs/exps/*"], clone, queued["env"])
    run(dvc("cache", "dir", "--local", str(queued["ws"] / ".dvc" / "cache")), clone, queued["env"])
    run(dvc("exp", "apply", name), clone, queued["env"])
    rendered = run(dvc("repro", "plots"), clone, queued["env"]).stdout
    assert "Running stage 'plots'" in rendered and "Running stage 'infer'" not in rendered
    metrics = json.loads((clone / "reports" / "metrics.json").read_text())
    assert metrics["energy"]["kind"] == "simulated" and (clone / "reports" / "report.md").exists()


def test_the_queue_analysis_stages_ran_in_the_stage_server(queued: dict[str, Any]) -> None:
    entries = stage_server.read_log(str(queued["state"]))
    assert not [e for e in entries if "refused" in e], entries  # the workers' env matches
    served = [(Path(e["argv"][0]).stem, e["returncode"]) for e in entries if "argv" in e]
    assert sorted(served) == sorted(
        (s, 0) for s in ("aggregate", "stats") for _ in queued["names"]
    ), served


def test_third_experiment_waits_for_a_free_gpu(queued: dict[str, Any]) -> None:
    if len(queued["names"]) < 3:
        pytest.skip("gpu.wait_for_gpu_s is not in conf/ yet: the waiting test needs it")
    ws, names = queued["ws"], queued["names"]
    spans = {n: _interval(exp_requests(ws, n)) for n in names}
    uuids = {n: exp_run_json(ws, n)["device"]["uuid"] for n in names}
    assert len(set(uuids.values())) == 2  # three runs shared two GPUs ...
    logs = [run(dvc("queue", "logs", n), ws, queued["env"]).stdout for n in names]
    assert sum("waiting up to 120 s for a free GPU" in text for text in logs) >= 1
    for a in names:  # ... one after another on each
        for b in names:
            if a < b and uuids[a] == uuids[b]:
                assert spans[a][1] <= spans[b][0] or spans[b][1] <= spans[a][0], spans


def test_results_and_progress_of_every_unit_are_shown(queued: dict[str, Any]) -> None:
    ws, env, names = queued["ws"], queued["env"], queued["names"]
    shown = json.loads(run(dvc("exp", "show", "--json"), ws, env).stdout)
    found = {name: experiment_metrics(data) for name, data in experiment_data(shown, names).items()}
    assert sorted(found) == sorted(names)
    for metrics in found.values():
        assert metrics["energy"]["kind"] == "simulated"
        assert all(task["j_per_token"] > 0 for task in metrics["by_task"].values())
    status = json.loads(run(llm_energy("grid", "status", "--json"), ws, env).stdout)
    units = {u["unit"]: u for u in status["units"]}
    assert sorted(units) == sorted(names)
    for name in names:
        u = units[name]
        assert u["state"] == "done" and u["batches_done"] == u["batches_total"] == 9, u
        assert u["gpu_uuid"] == exp_run_json(ws, name)["device"]["uuid"]
    table = run(llm_energy("grid", "status"), ws, env).stdout
    assert f"{len(names)} unit(s): {len(names)} done" in table


@pytest.fixture(scope="module")
def prepared(queued: dict[str, Any]) -> dict[str, Any]:
    """The queue workspace with prepare + model outputs checked out (for direct stage runs)."""
    run(dvc("repro", "prepare", "model"), queued["ws"], queued["env"])
    return queued


def _infer(*overrides: str, index: str = "auto") -> list[str]:
    base = ["gpu.backend=simulated", "gpu.simulated_count=2", f"gpu.index={index}"]
    return [sys.executable, "stages/infer.py", *base, "gpu.max_window_repeats=300", *overrides]


def test_all_gpus_taken_fails_with_one_line_when_not_waiting(
    prepared: dict[str, Any], tmp_path: Path
) -> None:
    state = tmp_path / "state"
    env = env_for(state, DVC_EXP_NAME="busy-unit")
    leases = [try_acquire_gpu(gpu_lock_dir(state), uuid) for _, uuid in simulated_gpus("h200", 2)]
    assert all(leases)
    try:
        t0 = time.monotonic()
        no_wait = ["gpu.wait_for_gpu_s=0"] if wait_key_available() else []  # 0: the default
        proc = run(_infer(*no_wait), prepared["ws"], env, check=False)
        took_s = time.monotonic() - t0
    finally:
        for lease in leases:
            lease.release()  # type: ignore[union-attr]
    errors = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert len(errors) == 1 and "in use" in errors[0], proc.stderr[-2000:]
    assert took_s < 60
    progress = json.loads((state / "progress" / "busy-unit.json").read_text())
    assert progress["state"] == "failed" and "in use" in progress["error"]


def test_killed_worker_frees_its_gpu_and_its_journal_is_recovered(
    prepared: dict[str, Any], tmp_path: Path
) -> None:
    ws, state = prepared["ws"], tmp_path / "state"
    env = env_for(state, DVC_EXP_NAME="killed-unit")
    progress_file = state / "progress" / "killed-unit.json"
    # Locked caps (a journal is written) and a long settle after each: killed while measuring.
    cmd = _infer("gpu.control=lock", "sweep.freqs_mhz=[1005,1305]", "gpu.cooldown_s=60")
    proc = subprocess.Popen(cmd, cwd=ws, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if progress_file.exists() and json.loads(progress_file.read_text())["gpu_uuid"]:
                break
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]  # type: ignore[union-attr]
            time.sleep(0.3)
        uuid = json.loads(progress_file.read_text())["gpu_uuid"]
        journals = gpu_journal_dir(state)
        deadline = time.monotonic() + 60
        while not list(journals.glob("*")) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert list(journals.glob("*")), "the run never journalled its clocks"
        assert try_acquire_gpu(gpu_lock_dir(state), uuid) is None  # held while it runs
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    lease = try_acquire_gpu(gpu_lock_dir(state), uuid)  # flock released on process death
    assert lease is not None
    lease.release()
    status = json.loads(run(llm_energy("grid", "status", "--json"), ws, env).stdout)
    assert [u["state"] for u in status["units"]] == ["lost"]
    # The next run on that GPU restores the clocks the killed one locked and clears its journal.
    index = next(i for i, u in simulated_gpus("h200", 2) if u == uuid)
    env = env_for(state, DVC_EXP_NAME="next-unit")
    after = run(_infer("gpu.control=lock", "gpu.freq=1305", index=str(index)), ws, env)
    assert not list(journals.glob("*")), after.stderr[-2000:]
    assert "restored" in after.stderr or "recover" in after.stderr.lower(), after.stderr[-2000:]
