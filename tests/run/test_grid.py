"""`llm-energy grid`: expansion into units, validation, queue/SLURM commands; unit progress."""

from __future__ import annotations

import json
import shlex
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from llm_energy.cli import grid as cli_grid
from llm_energy.cli import main as cli
from llm_energy.paths import PROGRESS_DIR_ENV, progress_dir
from llm_energy.run.grid import (
    Composition,
    GridError,
    expand,
    parse_sweep,
    prepare_overrides,
    queue_command,
    safe_name,
    slurm_unit_line,
    split_top_level,
)
from llm_energy.run.progress import (
    LOST,
    STALE,
    ProgressTracker,
    effective_state,
    eta_s,
    format_status,
    iso,
    status_rows,
)

REPO = Path(__file__).resolve().parents[2]


def fake_describe(control: str = "lock", freqs: Sequence[int | None] = (None, 1005)) -> Any:
    seen: list[list[str]] = []

    def describe(overrides: Sequence[str]) -> Composition:
        seen.append(list(overrides))
        model = next((o.split("=", 1)[1] for o in overrides if o.startswith("model=")), "gpt2")
        return Composition("paper", model, ("wikitext", "squad_v2"), tuple(freqs), control)

    describe.seen = seen  # type: ignore[attr-defined]
    return describe


# ---------------------------------------------------------------- parsing and names
def test_sweep_values_split_outside_brackets_and_quotes() -> None:
    assert split_top_level("a,[b,c],'d,e'") == ["a", "[b,c]", "'d,e'"]
    assert parse_sweep("model=gpt2,mistral_7b") == ("model", ["gpt2", "mistral_7b"])
    assert parse_sweep("task=[qa,squad_v2]") == ("task", ["[qa,squad_v2]"])
    for bad in ("model", "=x", "model=", "model=a,,b"):
        with pytest.raises(GridError):
            parse_sweep(bad)


def test_names_are_valid_experiment_names() -> None:
    assert safe_name("paper", "gpt2", "squad_v2") == "paper-gpt2-squad_v2"
    assert safe_name("a b", "x/y", "c..d") == "a_b-x_y-c.d"


# ---------------------------------------------------------------- expansion
def test_one_unit_per_model_and_task_with_the_clock_sweep_inside() -> None:
    describe = fake_describe()
    units = expand(
        ["experiment=paper"],
        {"model": ["gpt2", "mistral_7b"], "gpu.freq": ["1005", "1305"]},
        describe,
    )
    assert [u.name for u in units] == [
        "paper-gpt2-wikitext",
        "paper-gpt2-squad_v2",
        "paper-mistral_7b-wikitext",
        "paper-mistral_7b-squad_v2",
    ]
    assert units[1].overrides == (
        "experiment=paper",
        "model=gpt2",
        "task=[squad_v2]",
        "sweep.freqs_mhz=[1005,1305]",
    )
    assert all(u.freqs_mhz == (1005, 1305) and u.slurm_freq_mhz is None for u in units)


def test_a_swept_task_list_and_other_keys_multiply_units() -> None:
    units = expand(
        [], {"task": ["qa", "[xsum,squad_v2]"], "infer.batch_size": ["1", "8"]}, fake_describe()
    )
    names = [u.name for u in units]
    assert names == [
        "paper-gpt2-qa-batch_size1",
        "paper-gpt2-xsum-batch_size1",
        "paper-gpt2-squad_v2-batch_size1",
        "paper-gpt2-qa-batch_size8",
        "paper-gpt2-xsum-batch_size8",
        "paper-gpt2-squad_v2-batch_size8",
    ]
    assert "infer.batch_size=8" in units[-1].overrides and "task=[squad_v2]" in units[-1].overrides
    # the experiment's own sweep stays in params: no clock override added
    assert not any(o.startswith("sweep.freqs_mhz") for u in units for o in u.overrides)


def test_slurm_control_gives_one_unit_per_cap_with_its_gpu_freq() -> None:
    units = expand(["task=[qa]"], {"task": ["qa"]}, fake_describe("slurm", (None, 1005, 1305)))
    assert [(u.name, u.slurm_freq_mhz) for u in units] == [
        ("paper-gpt2-qa-default", None),
        ("paper-gpt2-qa-1005mhz", 1005),
        ("paper-gpt2-qa-1305mhz", 1305),
    ]
    assert units[1].overrides[-1] == "sweep.freqs_mhz=[1005]"
    assert slurm_unit_line(units[0]).split("\t")[:2] == ["paper-gpt2-qa-default", "-"]
    assert slurm_unit_line(units[2]).split("\t") == [
        "paper-gpt2-qa-1305mhz",
        "1305",
        "task=[qa]",
        "task=[qa]",
        "sweep.freqs_mhz=[1305]",
    ]


def test_single_cap_under_slurm_stays_one_unit_with_its_cap() -> None:
    units = expand([], {"gpu.freq": ["1305"], "task": ["qa"]}, fake_describe("slurm", (1305,)))
    assert len(units) == 1 and units[0].slurm_freq_mhz == 1305
    assert "gpu.freq=1305" in units[0].overrides


def test_duplicate_names_and_empty_grids_are_refused() -> None:
    with pytest.raises(GridError, match="both be named"):
        expand([], {"infer.seed": ["a b", "a_b"]}, fake_describe())
    empty = lambda o: Composition("x", "m", (), (), "lock")  # noqa: E731
    with pytest.raises(GridError, match="empty"):
        expand([], {}, empty)


def test_queue_and_prepare_commands() -> None:
    units = expand(["experiment=paper"], {"gpu.freq": ["1005", "1305"]}, fake_describe())
    cmd = queue_command(units[0])
    assert cmd[:6] == ["dvc", "exp", "run", "--queue", "-n", "paper-gpt2-wikitext"]
    assert cmd[6:] == [
        "-S",
        "experiment=paper",
        "-S",
        "task=[wikitext]",
        "-S",
        "sweep.freqs_mhz=[1005,1305]",
        "stats",  # a unit stops at its statistics; plots render on demand
    ]
    # prepare/model do not read clocks: one run per model/task set
    assert prepare_overrides(units) == [
        ("experiment=paper", "task=[wikitext]"),
        ("experiment=paper", "task=[squad_v2]"),
    ]


# ---------------------------------------------------------------- the CLI on the real conf/
def _grid(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(["--root", str(REPO), "grid", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_expands_the_paper_study(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _grid(capsys, "-e", "paper", "--json")
    units = json.loads(out)
    assert code == 0
    models = ["falcon_7b", "mistral_7b", "t5_3b", "gpt2", "gpt_j_6b", "gpt_neo_2_7b"]
    tasks = ["wikitext", "squad_v2", "xsum", "cnn_dailymail"]  # generation, QA, summarization x2
    assert [u["name"] for u in units] == [f"paper-{m}-{t}" for m in models for t in tasks]
    assert units[1]["freqs_mhz"] == [None, 1.0, 0.8, 0.65, 0.5, 0.35]  # inside; fits any GPU
    # printed first: the size (6 caps x 2 inputs x 2 outputs x 2 batch sizes per unit; 100 items
    # x 3 repetitions) and an estimated GPU time, labelled an estimate
    size = err.strip()
    assert size.startswith("24 unit(s) (6 model(s) x 4 task dataset(s)), 1152 sweep points, ")
    assert "345,600 measured requests" in size and "(estimate: simulated H200" in size
    hours = float(size.split("~")[1].split()[0])
    assert 10 < hours < 1000  # 7B models, 345,600 requests of up to 128 tokens
    code, out, _ = _grid(capsys, "-e", "paper", "-S", "model=gpt2,t5_3b", "-S", "task=xsum")
    assert code == 0
    assert [line.split()[0] for line in out.splitlines()] == ["paper-gpt2-xsum", "paper-t5_3b-xsum"]


def test_cli_refuses_a_bad_unit_in_one_line_before_queueing(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ran: list[Any] = []
    monkeypatch.setattr(cli_grid.subprocess, "run", lambda *a, **k: ran.append(a))
    code, out, err = _grid(capsys, "-S", "model=tiny_gpt2", "-S", "infer.batch_size=1,0", "--queue")
    assert code == 2 and ran == [] and "$ " not in out
    assert err.count("\n") == 1 and "infer.batch_size = 0 is not allowed" in err
    code, _, err = _grid(capsys, "-S", "model=nope", "--queue")
    assert code == 2 and err.count("\n") == 1 and "model/nope" in err and ran == []


def test_cli_queue_dry_run_and_real_commands(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sets = ("-e", "ci", "-S", "gpu=simulated", "-S", "task=qa,generation", "--prepare", "--queue")
    code, out, _ = _grid(capsys, *sets, "--dry-run")
    cmds = [shlex.split(line.removeprefix("would run: ")) for line in out.splitlines()]
    assert code == 0 and len(cmds) == 2 + 1 + 2
    assert cmds[0][3:] == [
        "exp", "run", "--temp", "-n", "grid-prepare-0",
        "-S", "experiment=ci", "-S", "gpu=simulated", "-S", "task=[qa]", "prepare", "model",
    ]  # fmt: skip
    assert cmds[2][3:] == ["exp", "remove", "grid-prepare-0", "grid-prepare-1"]
    assert cmds[3][3:] == [
        "exp",
        "run",
        "--queue",
        "-n",
        "ci-tiny_gpt2-qa",
        "-S",
        "experiment=ci",
        "-S",
        "gpu=simulated",
        "-S",
        "task=[qa]",
        "stats",
    ]
    ran: list[list[str]] = []

    class Done:
        returncode = 0

    monkeypatch.setattr(cli_grid.subprocess, "run", lambda cmd, **k: ran.append(cmd) or Done())
    servers: list[
        bool
    ] = []  # after queueing, the analysis stages' server starts (not on --dry-run)
    monkeypatch.setattr(cli_grid, "start_stage_server", lambda *_: servers.append(True))
    code, _, _ = _grid(capsys, *sets)
    assert code == 0 and ran == cmds and servers == [True]


def test_cli_writes_the_slurm_unit_list(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    target = tmp_path / "units.tsv"
    code, out, _ = _grid(capsys, "-e", "ci", "--slurm-units", str(target))
    lines = target.read_text().splitlines()
    assert code == 0 and len(lines) == 3 and "--array=0-2" in out
    name, freq, *overrides = lines[0].split("\t")
    assert (name, freq, overrides) == (
        "ci-tiny_gpt2-generation",
        "-",
        ["experiment=ci", "task=[generation]"],
    )


# ---------------------------------------------------------------- progress
class Clock:
    def __init__(self) -> None:
        self.t = 1_000_000.0

    def __call__(self) -> float:
        return self.t


def test_tracker_writes_state_counts_eta_and_throttles() -> None:
    clock, cpu, written = Clock(), Clock(), []
    tracker = ProgressTracker("u1", host="h", pid=42, write=written.append, now=clock, cpu_s=cpu)
    assert written[-1]["state"] == "starting" and written[-1]["batches_total"] is None
    cpu.t = 2.5  # start-up CPU: not the measurement's
    tracker.set_gpu("GPU-1", "H200")
    tracker(points_done=0, points_total=2, batches_done=0, batches_total=4)
    assert written[-1]["state"] == "running" and written[-1]["gpu_uuid"] == "GPU-1"
    clock.t += 10
    tracker(points_done=0, points_total=2, batches_done=1, batches_total=4)
    assert written[-1]["eta_s"] == pytest.approx(30.0)  # 3 left at 10 s each
    n = len(written)
    clock.t += 0.2
    tracker(points_done=0, points_total=2, batches_done=2, batches_total=4)
    assert len(written) == n  # throttled: under min_interval_s since the last write
    clock.t += 5
    tracker(points_done=2, points_total=2, batches_done=4, batches_total=4)
    cpu.t = 4.0
    tracker.finish("done")
    last = written[-1]
    assert last["state"] == "done" and last["eta_s"] == 0.0 and last["batches_done"] == 4
    assert last["measured_cpu_s"] == pytest.approx(1.5)  # from the first measured batch on
    assert last["updated_at"] == iso(clock.t) and last["pid"] == 42
    tracker.finish("failed", "boom")
    assert written[-1]["error"] == "boom"
    with pytest.raises(ValueError):
        tracker.finish("running")


def test_eta_needs_a_batch() -> None:
    assert eta_s(0, 10, 5.0) is None and eta_s(5, 10, 5.0) == 5.0 and eta_s(10, 10, 9.0) == 0.0


def test_dead_local_worker_reads_lost_and_silent_remote_reads_stale() -> None:
    now = 2_000_000.0
    rec = {"state": "running", "host": "here", "pid": 7, "updated_at": iso(now - 5)}
    alive = {7: True}
    kw = {"now_s": now, "this_host": "here", "pid_alive": lambda p: alive.get(p, False)}
    assert effective_state(rec, **kw) == "running"
    alive[7] = False
    assert effective_state(rec, **kw) == LOST
    remote = rec | {"host": "node2", "updated_at": iso(now - 3600)}
    assert effective_state(remote, **kw) == STALE
    assert effective_state(remote | {"updated_at": iso(now - 5)}, **kw) == "running"
    assert effective_state(rec | {"state": "done"}, **kw) == "done"


def test_status_table_shows_every_unit_and_totals() -> None:
    now = 2_000_000.0
    recs = [
        {"unit": "b", "state": "running", "host": "h", "pid": 1, "batches_done": 3,
         "batches_total": 9, "eta_s": 125.0, "gpu_uuid": "GPU-b", "updated_at": iso(now)},
        {"unit": "a", "state": "failed", "host": "h", "pid": 2, "batches_done": 0,
         "batches_total": 9, "gpu_uuid": None, "error": "GPU in use", "updated_at": iso(now)},
    ]  # fmt: skip
    rows = status_rows(recs, now_s=now, this_host="h", pid_alive=lambda p: True)
    assert [r["unit"] for r in rows] == ["a", "b"] and rows[0]["eta_s"] is None
    text = format_status(rows)
    lines = text.splitlines()
    assert lines[0].split() == ["unit", "state", "done/total", "ETA", "GPU", "host"]
    assert lines[2].split() == ["b", "running", "3/9", "2m05s", "GPU-b", "h"]
    assert "2 unit(s): 1 failed, 1 running; batches 3/18" in text and "a: GPU in use" in text


def test_progress_dir_from_env_else_state_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(PROGRESS_DIR_ENV, raising=False)
    assert progress_dir(tmp_path) == tmp_path / "progress"
    monkeypatch.setenv(PROGRESS_DIR_ENV, str(tmp_path / "p"))
    assert progress_dir(tmp_path / "x") == tmp_path / "p"


def test_cli_status_reads_the_progress_dir(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    import os
    import socket

    (tmp_path / "u.json").write_text(
        json.dumps({"unit": "u", "state": "running", "host": socket.gethostname(),
                    "pid": os.getpid(), "batches_done": 1, "batches_total": 2,
                    "updated_at": iso(0)})
    )  # fmt: skip
    (tmp_path / "junk.json").write_text("{")
    code, out, err = _grid(capsys, "status", "--progress-dir", str(tmp_path), "--json")
    assert code == 0 and "skipped unreadable" in err
    assert [(u["unit"], u["state"]) for u in json.loads(out)["units"]] == [("u", "running")]
    code, out, _ = _grid(capsys, "status", "--progress-dir", str(tmp_path / "none"))
    assert code == 0 and "no unit has reported progress" in out


def test_cli_run_refuses_parallel_units_pinned_to_one_gpu(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, _, err = _grid(capsys, "-e", "ci", "-S", "gpu=simulated", "--run", "-j", "2")
    assert code == 2
    assert "--run -j 2 with gpu.index=0: the units would all want that GPU" in err
    assert "add -S gpu.index=auto" in err
    code, _, err = _grid(capsys, "-e", "ci", "--run", "-j", "0")
    assert code == 2 and "-j 0: at least one unit must run at a time" in err


def test_run_jobs_problem_accepts_auto_one_job_and_the_cpu_backend() -> None:
    def cfg(index: object, backend: str = "simulated") -> Any:
        return SimpleNamespace(gpu=SimpleNamespace(index=index, backend=backend))

    assert cli_grid.run_jobs_problem(4, [cfg("auto"), cfg("auto")]) is None
    assert cli_grid.run_jobs_problem(1, [cfg(0)]) is None
    assert cli_grid.run_jobs_problem(2, [cfg(0, "cpu")]) is None
    assert "gpu.index=1" in (cli_grid.run_jobs_problem(2, [cfg("auto"), cfg(1)]) or "")
