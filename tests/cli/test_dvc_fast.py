"""cli/dvc_fast.py: DVC with dvc.lock read by the C-backed parser, and DVC run as forks of a
process that imported it. The lock DVC writes must be the same bytes either way, other YAML
files keep DVC's comment-preserving round trip, and a fork behaves as `dvc` would: its exit code,
its output in the log, and Ctrl-C (SIGINT to its group) stopping the stage it runs."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import dvc.dvcfile
import pytest
import yaml
from dvc.utils import serialize, strictyaml
from dvc.utils.serialize import _yaml

from helpers import REPO
from llm_energy.cli import dvc_fast
from llm_energy.io.files import pid_alive

PATCHED = [(dvc.dvcfile, "modify_yaml"), (_yaml, "parse_yaml"), (serialize, "parse_yaml"),
           (strictyaml, "parse_yaml")]  # fmt: skip


@pytest.fixture
def unpatched(monkeypatch: pytest.MonkeyPatch) -> None:
    """DVC as it is, and as it is again after the test (install() patches module globals)."""
    for module, name in PATCHED:
        monkeypatch.setattr(module, name, getattr(module, name))


@pytest.fixture
def patched(unpatched: None) -> None:
    assert dvc_fast.install()


def _edit(path: Path) -> None:
    """What DVC does after a stage: read the lock for update, replace one stage, write it."""
    with dvc.dvcfile.modify_yaml(path) as data:
        data["stages"]["infer"]["cmd"] = "python stages/infer.py --changed"
        data["stages"]["new"] = {"cmd": "true", "outs": [{"path": "x", "hash": "md5"}]}


def test_the_lock_dvc_writes_is_the_same_bytes_with_the_fast_parser(
    tmp_path: Path, unpatched: None
) -> None:
    lock = (REPO / "dvc.lock").read_text()
    slow, fast = tmp_path / "slow" / "dvc.lock", tmp_path / "fast" / "dvc.lock"
    for path in (slow, fast):
        path.parent.mkdir()
        path.write_text(lock)
    original = dvc.dvcfile.modify_yaml
    _edit(slow)
    assert dvc_fast.install() and dvc_fast.install()  # idempotent
    assert dvc.dvcfile.modify_yaml is not original
    _edit(fast)
    assert fast.read_text() == slow.read_text()
    assert "--changed" in fast.read_text()
    with dvc.dvcfile.modify_yaml(fast):  # unchanged data: the file is written back as it was
        pass
    assert fast.read_text() == slow.read_text()


def test_other_yaml_files_keep_their_comments(tmp_path: Path, patched: None) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("# why this value\ngpu:\n  freq: 1200  # MHz\n")
    with dvc.dvcfile.modify_yaml(params) as data:
        data["gpu"]["freq"] = 900
    text = params.read_text()
    assert text.startswith("# why this value\n") and "freq: 900" in text and "# MHz" in text


def test_each_distinct_text_is_parsed_once_and_callers_get_their_own_copy(
    patched: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = (REPO / "params.yaml").read_text()
    first = serialize.parse_yaml(text, "params.yaml")
    calls: list[str] = []
    monkeypatch.setattr("ruamel.yaml.YAML.load", lambda *a: calls.append("parsed"))
    first["gpu"]["freq"] = -1  # a caller changing what it got
    again = strictyaml.parse_yaml(text, "params.yaml")
    assert calls == [] and again == yaml.safe_load(text) and again is not first
    assert _yaml.load_yaml(REPO / "params.yaml") == again  # DVC's loader goes through it too
    assert calls == []
    serialize.parse_yaml("a: 1\n", "other.yaml")  # another text is parsed
    assert calls == ["parsed"]


@pytest.mark.parametrize("module, name", PATCHED)
def test_a_dvc_other_than_the_one_patched_is_left_alone(
    module: object, name: str, unpatched: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    def elsewhere(*args: object, **kwargs: object) -> None:
        raise AssertionError

    monkeypatch.setattr(module, name, elsewhere)
    before = [getattr(m, n) for m, n in PATCHED]
    assert dvc_fast.install() is False
    assert [getattr(m, n) for m, n in PATCHED] == before


def _dvc_repo(root: Path) -> Path:
    root.mkdir()
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    for cmd in (["git", "init", "-q"], [sys.executable, "-m", "dvc", "init", "-q"]):
        subprocess.run(cmd, cwd=root, env=env, check=True)
    (root / "dvc.yaml").write_text(
        "stages:\n  wait:\n    cmd: python -c \"import time; print('waiting', flush=True); "
        'time.sleep(60)"\n  hello:\n    cmd: echo hello > hello.txt\n    outs: [hello.txt]\n'
    )
    return root


def test_forks_run_dvc_with_its_exit_code_and_output_in_the_log(tmp_path: Path) -> None:
    repo, log = _dvc_repo(tmp_path / "repo"), tmp_path / "hello.log"
    preloaded = dvc_fast.PreloadedDVC()
    assert preloaded.start(["repro", "hello"], repo, log).wait() == 0
    assert (repo / "hello.txt").read_text().strip() == "hello"
    assert "Running stage 'hello'" in log.read_text()
    assert "hello" in (repo / "dvc.lock").read_text()
    failed = preloaded.start(["repro", "no-such-stage"], repo, tmp_path / "failed.log")
    assert failed.wait() != 0
    assert "no-such-stage" in (tmp_path / "failed.log").read_text()


def test_sigint_to_a_forks_group_stops_the_stage_it_runs(tmp_path: Path) -> None:
    repo, log = _dvc_repo(tmp_path / "repo"), tmp_path / "wait.log"
    fork = dvc_fast.PreloadedDVC().start(["repro", "wait"], repo, log)
    assert os.getpgid(fork.pid) == fork.pid  # it leads its group once start() returns
    deadline = time.monotonic() + 60
    while "waiting" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "waiting" in log.read_text(), log.read_text()
    t0 = time.monotonic()
    os.killpg(fork.pid, signal.SIGINT)
    assert fork.wait() != 0
    assert time.monotonic() - t0 < 10
    shutil.rmtree(repo)


def test_every_preloaded_module_imports() -> None:
    """The forkserver skips a module that fails to import, silently: a typo would cost each
    unit its imports again."""
    import importlib

    for name in dvc_fast.PRELOAD:
        importlib.import_module(name)


def test_waiting_for_a_fork_lasts_as_long_as_the_fork_even_if_the_forkserver_dies(
    tmp_path: Path,
) -> None:
    """A SIGTERM to the runner's process group kills the forkserver (it is in that group; the
    forks are not): the runner must still wait for its units, which are stopping."""
    import threading

    repo, log = _dvc_repo(tmp_path / "repo"), tmp_path / "wait.log"
    fork = dvc_fast.PreloadedDVC().start(["repro", "wait"], repo, log)
    deadline = time.monotonic() + 60
    while "waiting" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    server = int(Path(f"/proc/{fork.pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    os.kill(server, signal.SIGTERM)
    codes: list[int] = []
    waiter = threading.Thread(target=lambda: codes.append(fork.wait()), daemon=True)
    waiter.start()
    waiter.join(2.0)
    assert waiter.is_alive() and not codes  # the fork is still running its stage
    os.killpg(fork.pid, signal.SIGINT)
    waiter.join(20.0)
    assert codes and codes[0] != 0
    assert not pid_alive(fork.pid)  # ended (a zombie until its new parent reaps it)


def test_a_fork_stops_on_sigint_even_when_the_runner_started_with_sigint_ignored(
    tmp_path: Path,
) -> None:
    """A shell without job control starts a background job (`llm-energy grid --run &`) with
    SIGINT ignored, which every child would inherit: the runner's SIGINT must still stop DVC."""
    repo = _dvc_repo(tmp_path / "repo")
    code = f"""
import os, signal, sys, time
from pathlib import Path
from llm_energy.cli.dvc_fast import PreloadedDVC
if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    log = Path({str(tmp_path / "wait.log")!r})
    fork = PreloadedDVC().start(["repro", "wait"], Path({str(repo)!r}), log)
    while "waiting" not in log.read_text():
        time.sleep(0.1)
    os.killpg(fork.pid, signal.SIGINT)
    sys.exit(0 if fork.wait() != 0 else 1)
"""
    script = tmp_path / "runner.py"
    script.write_text(code)
    done = subprocess.run([sys.executable, str(script)], timeout=60, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
