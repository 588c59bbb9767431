"""`llm-energy grid --run -j N` (cli/grid_run.py): units in N slots, each a clone of the commit.

Most tests use a stand-in for DVC (FAKE_DVC below: `exp run` sleeps, records when it ran and
makes the experiment ref DVC would make), so they check the runner itself: slots at once,
refs landing in the repo, a failed unit reported with its log while the others run, a re-run
finishing only what is missing, a dirty tree refused, and Ctrl-C stopping every running unit.
The slow test runs real DVC units on two simulated GPUs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from configobj import ConfigObj

from llm_energy.cli.grid_run import SLOTS_DIR, NodeRunner, exp_ref, make_slot, run_units

FAKE_DVC = r"""
import json, os, signal, subprocess, sys, time
from pathlib import Path
args = sys.argv[1:]
if args[:2] == ["cache", "dir"]:
    if "--local" in args:
        Path(".dvc").mkdir(exist_ok=True)
        Path(".dvc/config.local").write_text("[cache]\n    dir = " + args[-1] + "\n")
    else:
        print(Path(".dvc/cache").resolve())
    sys.exit(0)
assert args[:2] == ["exp", "run"], args
name = args[args.index("-n") + 1]
journal = Path(os.environ["FAKE_JOURNAL"])
def note(event):
    with journal.open("a") as f:
        f.write(json.dumps({"unit": name, "event": event, "t": time.time(), "cwd": os.getcwd(),
                            "args": args}) + "\n")
def interrupted(*_):
    note("interrupted")
    sys.exit(130)
signal.signal(signal.SIGINT, interrupted)
note("start")
time.sleep(float(os.environ.get("FAKE_SLEEP_S", "0.5")))
if "bad" in name:
    print("ERROR: boom in " + name)
    sys.exit(1)
Path("result.txt").write_text(name)
git = lambda *a: subprocess.run(["git", *a], check=True, capture_output=True, text=True).stdout.strip()
base = git("rev-parse", "HEAD")
git("add", "result.txt")
commit = git("commit-tree", git("write-tree"), "-p", base, "-m", name)
git("update-ref", f"refs/exps/{base[:2]}/{base[2:]}/{name}", commit)
note("end")
"""


def _git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=root, check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    root = tmp_path / "repo"
    root.mkdir()
    _git(root, "init", "-q")
    _git(root, "config", "user.name", "t")
    _git(root, "config", "user.email", "t@example.org")
    (root / "params.yaml").write_text("seed: 0\n")
    (root / ".gitignore").write_text("/.dvc/tmp\n")
    _git(root, "add", "-A")
    _git(root, "commit", "-qm", "baseline")
    fake = tmp_path / "fake_dvc.py"
    fake.write_text(FAKE_DVC)
    journal = tmp_path / "journal.jsonl"
    monkeypatch.setenv("FAKE_JOURNAL", str(journal))
    return {"root": root, "dvc": [sys.executable, str(fake)], "journal": journal,
            "baseline": _git(root, "rev-parse", "HEAD")}  # fmt: skip


def _units(*names: str) -> list[SimpleNamespace]:
    return [SimpleNamespace(name=n, overrides=(f"meta.seed={i}",)) for i, n in enumerate(names)]


def _events(journal: Path) -> list[dict[str, Any]]:
    return (
        [json.loads(line) for line in journal.read_text().splitlines()] if journal.exists() else []
    )


def _landed(repo: dict[str, Any]) -> set[str]:
    refs = _git(repo["root"], "for-each-ref", "--format=%(refname)", "refs/exps")
    return {r.rsplit("/", 1)[-1] for r in refs.split()}


def test_units_run_in_parallel_slots_and_land_as_experiments_here(
    repo: dict[str, Any], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_SLEEP_S", "1.0")
    started: list[bool] = []
    code = run_units(repo["root"], _units("u0", "u1", "u2"), 2, "stats", False,
                     before=lambda: started.append(True), dvc=repo["dvc"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    assert started == [True]
    assert _landed(repo) == {"u0", "u1", "u2"}
    for name in ("u0", "u1", "u2"):  # the experiment is the baseline plus that unit's run
        ref = exp_ref(repo["baseline"], name)
        assert _git(repo["root"], "show", f"{ref}:result.txt") == name
        assert _git(repo["root"], "rev-parse", f"{ref}^") == repo["baseline"]
    events = _events(repo["journal"])
    starts = {e["unit"]: e for e in events if e["event"] == "start"}
    ends = {e["unit"]: e["t"] for e in events if e["event"] == "end"}
    assert {Path(e["cwd"]).name for e in starts.values()} == {"slot-0", "slot-1"}
    assert starts["u0"]["args"][-1] == "stats" and "meta.seed=0" in starts["u0"]["args"]
    at_once = [sum(starts[u]["t"] <= e["t"] < ends[u] for u in starts) for e in starts.values()]
    assert max(at_once) == 2, events  # two slots busy together, never three
    assert "3 unit(s) done, 0 failed, 0 not started" in out
    local = ConfigObj(str(repo["root"] / SLOTS_DIR / "slot-0" / ".dvc" / "config.local"))
    assert local["cache"]["dir"] == str(repo["root"] / ".dvc" / "cache")  # this repo's cache


def test_with_a_preloaded_dvc_the_runner_starts_dvc_through_it_and_git_as_it_is(
    repo: dict[str, Any],
) -> None:
    """`grid --run` hands its DVC commands to cli/dvc_fast.PreloadedDVC (here a stand-in that
    records them and runs the fake DVC); git commands still run as processes."""
    started: list[list[str]] = []

    class Preloaded:
        def start(self, args: list[str], cwd: Path, log: Path) -> subprocess.Popen[bytes]:
            started.append(list(args))
            with log.open("ab") as out:
                return subprocess.Popen([*repo["dvc"], *args], cwd=cwd, stdout=out,
                                        stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip

    for slot in range(2):
        make_slot(repo["root"], repo["root"] / SLOTS_DIR / f"slot-{slot}", str(repo["root"]))
    runner = NodeRunner(repo["root"], _units("u0", "u1", "u2"), 2, repo["dvc"], "stats",
                        repo["baseline"], preloaded=Preloaded())  # type: ignore[arg-type]  # fmt: skip
    assert [o.returncode for o in runner.run()] == [0, 0, 0]
    assert sorted(a[a.index("-n") + 1] for a in started) == ["u0", "u1", "u2"]
    assert all(a[:2] == ["exp", "run"] and a[-1] == "stats" for a in started)
    assert _landed(repo) == {"u0", "u1", "u2"}  # pushed back by git, not by the stand-in


def test_a_failed_unit_is_reported_with_its_log_and_a_rerun_runs_only_what_is_missing(
    repo: dict[str, Any], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_SLEEP_S", "0.1")
    code = run_units(repo["root"], _units("a", "bad", "c"), 1, "stats", False, dvc=repo["dvc"])
    out = capsys.readouterr().out
    assert code == 1
    assert _landed(repo) == {"a", "c"}  # the failure did not stop the units after it
    log = repo["root"] / SLOTS_DIR / "logs" / "bad.log"
    assert "bad: FAILED" in out and "last line: ERROR: boom in bad" in out and str(log) in out
    assert "ERROR: boom in bad" in log.read_text()
    assert "2 unit(s) done, 1 failed" in out and "run the same command again" in out
    runs_before = len(_events(repo["journal"]))
    code = run_units(repo["root"], _units("a", "bad", "c"), 2, "stats", False, dvc=repo["dvc"])
    out = capsys.readouterr().out
    assert code == 1
    assert "skipping 2 unit(s) already run" in out and "a, c" in out
    assert [e["unit"] for e in _events(repo["journal"])[runs_before:]] == ["bad"]


def test_uncommitted_changes_are_refused_before_anything_runs(
    repo: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    (repo["root"] / "params.yaml").write_text("seed: 1\n")
    code = run_units(repo["root"], _units("u0"), 1, "stats", False, dvc=repo["dvc"])
    assert code == 2
    assert "uncommitted changes (params.yaml): commit them first" in capsys.readouterr().err
    assert not _events(repo["journal"]) and not (repo["root"] / SLOTS_DIR).exists()


def test_dry_run_prints_each_slot_command_and_runs_nothing(
    repo: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_units(repo["root"], _units("u0"), 2, "stats", True, dvc=repo["dvc"]) == 0
    out = capsys.readouterr().out
    assert f"would run in a slot: git checkout -q -f --detach {repo['baseline']}" in out
    assert "exp run -n u0 -S meta.seed=0 stats" in out
    assert f"git push -q -f origin {exp_ref(repo['baseline'], 'u0')}" in out
    assert not _events(repo["journal"])


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_interrupts_every_running_unit_and_starts_no_other(
    repo: dict[str, Any], tmp_path: Path, sig: signal.Signals
) -> None:
    driver = tmp_path / "driver.py"
    driver.write_text(
        "import sys; from types import SimpleNamespace as U; from pathlib import Path\n"
        "from llm_energy.cli.grid_run import run_units\n"
        "units = [U(name=f'u{i}', overrides=()) for i in range(4)]\n"
        f"sys.exit(run_units(Path({str(repo['root'])!r}), units, 2, 'stats', False, "
        f"dvc={repo['dvc']!r}))\n"
    )
    env = os.environ | {"FAKE_SLEEP_S": "60", "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    proc = subprocess.Popen([sys.executable, str(driver)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while sum(e["event"] == "start" for e in _events(repo["journal"])) < 2:
            assert time.monotonic() < deadline and proc.poll() is None, "units did not start"
            time.sleep(0.1)
        t0 = time.monotonic()
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130, out
    assert time.monotonic() - t0 < 10  # not the 60 s the units would have taken
    events = _events(repo["journal"])
    assert sorted(e["unit"] for e in events if e["event"] == "interrupted") == ["u0", "u1"]
    assert not [e for e in events if e["unit"] in ("u2", "u3")]
    assert not _landed(repo)
    assert "0 unit(s) done, 2 failed, 2 not started" in out, out


@pytest.mark.slow
def test_real_units_run_at_once_on_two_simulated_gpus_and_show_as_experiments(
    tmp_path: Path,
) -> None:
    from test_queue import (
        SIM,
        SWEEP,
        dvc,
        env_for,
        exp_requests,
        exp_run_json,
        llm_energy,
        make_workspace,
        run,
    )

    from helpers import experiment_data, experiment_metrics
    from llm_energy.cli import stage_server

    ws, state = tmp_path / "ws", tmp_path / "state"
    ws.mkdir()
    env = env_for(state)
    make_workspace(ws, env)
    sets = [a for s in [*SIM, *SWEEP, "task=generation,qa"] for a in ("-S", s)]
    run(llm_energy("grid", "--prepare", *sets), ws, env)
    try:
        out = run(llm_energy("grid", "--run", "-j", "2", *sets), ws, env).stdout
    finally:
        run(llm_energy("stage-server", "--stop"), ws, env, check=False)
    names = ["ci-tiny_gpt2-generation", "ci-tiny_gpt2-qa"]
    assert "2 unit(s) done, 0 failed, 0 not started" in out, out
    shown = json.loads(run(dvc("exp", "show", "--json"), ws, env).stdout)
    found = {n: experiment_metrics(d) for n, d in experiment_data(shown, names).items()}
    assert sorted(found) == names
    assert all(m["energy"]["kind"] == "simulated" for m in found.values())
    uuids = {n: exp_run_json(ws, n)["device"]["uuid"] for n in names}
    spans = {n: (min(r["started_at"] for r in rows), max(r["ended_at"] for r in rows))
             for n in names for rows in [exp_requests(ws, n)]}  # fmt: skip
    assert uuids[names[0]] != uuids[names[1]]
    assert spans[names[0]][0] <= spans[names[1]][1] and spans[names[1]][0] <= spans[names[0]][1]
    for name in names:
        log = (ws / SLOTS_DIR / "logs" / f"{name}.log").read_text()
        assert "Stage 'prepare' is cached - skipping run" in log, log[-2000:]
        assert f"-m llm_energy.cli.dvc_fast exp run -n {name}" in log  # forks of a preloaded DVC
        assert "Running stage 'stats'" in log and "Running stage 'plots'" not in log
    entries = stage_server.read_log(str(state))
    assert not [e for e in entries if "refused" in e], entries
    served = sorted(Path(e["argv"][0]).stem for e in entries if "argv" in e)
    assert served == ["aggregate", "aggregate", "stats", "stats"]
    again = run(llm_energy("grid", "--run", "-j", "2", *sets), ws, env).stdout
    assert "skipping 2 unit(s) already run" in again


def test_a_dvc_that_cannot_run_stops_before_any_unit_with_one_line(
    repo: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken_dvc.py"
    broken.write_text(
        "import sys\nprint('ERROR: not a DVC repository', file=sys.stderr)\nsys.exit(1)\n"
    )
    code = run_units(
        repo["root"], _units("u0"), 1, "stats", False, dvc=[sys.executable, str(broken)]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [
        "llm-energy grid: error: slots not ready: `dvc cache dir` failed: ERROR: not a DVC repository"
    ]
    assert not _landed(repo)


def test_a_second_runner_on_the_same_slots_is_refused_naming_the_first(
    repo: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; "
         "from llm_energy.cli.grid_run import lock_slots; lock_slots(Path(sys.argv[1])); "
         "print('locked', flush=True); time.sleep(60)", str(repo["root"])],
        stdout=subprocess.PIPE, text=True,
        env=os.environ | {"PYTHONPATH": str(Path(__file__).parents[2] / "src")},
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        code = run_units(repo["root"], _units("u0"), 1, "stats", False, dvc=repo["dvc"])
    finally:
        holder.kill()
        holder.wait()
    assert code == 2
    err = capsys.readouterr().err
    assert f"another `llm-energy grid --run` (pid {holder.pid}) is using" in err, err
    assert not _events(repo["journal"])
    assert run_units(repo["root"], _units("u0"), 1, "stats", False, dvc=repo["dvc"]) == 0  # freed
