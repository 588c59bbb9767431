"""The stage server: analysis stages hand over to a preloaded fork and behave as if run alone.

Fake stage scripts (named like the real ones, since the name decides what is served) report what
process they ran in; a real server runs in a per-module state dir (its socket's name includes it).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from llm_energy.cli import stage_server

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="abstract sockets: Linux only")

FAKE_STAGE = """
import sys
sys.path.insert(0, {src!r})
from llm_energy.cli.stage_server import hand_over
hand_over({stage!r})
import json, os, time
import llm_energy
print(json.dumps({{"pid": os.getpid(), "served": os.environ.get("LLM_ENERGY_STAGE_SERVED"),
    "pandas": "pandas" in sys.modules, "code": llm_energy.__file__, "argv": sys.argv[1:],
    "cwd": os.getcwd()}}), flush=True)
mode = sys.argv[1] if len(sys.argv) > 1 else ""
if mode == "fail":
    print("bad input: fix it", file=sys.stderr)
    sys.exit(2)
if mode == "sleep":
    time.sleep(60)
"""


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "llm_energy.cli.main", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A running server, the environment that reaches it, and fake stages on a copy of src/."""
    root = tmp_path_factory.mktemp("served")
    env = dict(os.environ, LLM_ENERGY_STATE_DIR=str(root / "state"))
    env.pop(stage_server.SWITCH_ENV, None)
    shutil.copytree(REPO / "src" / "llm_energy", root / "src" / "llm_energy")
    (root / "stages").mkdir()
    for stage in ("stats", "infer"):
        text = FAKE_STAGE.format(src=str(root / "src"), stage=stage)
        (root / "stages" / f"{stage}.py").write_text(text)
    started = cli("stage-server", "--idle-exit-s", "300", env=env)
    assert started.returncode == 0 and "stage server running" in started.stdout, started.stderr
    yield {"root": root, "env": env}
    cli("stage-server", "--stop", env=env)


def stage(served: Any, name: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, f"stages/{name}.py", *args]
    full_env = served["env"] | env
    return subprocess.run(
        cmd, cwd=served["root"], env=full_env, capture_output=True, text=True, timeout=60
    )


def facts(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    return json.loads(proc.stdout.splitlines()[0])


def server_log(served: Any) -> list[dict[str, Any]]:
    return stage_server.read_log(served["env"]["LLM_ENERGY_STATE_DIR"])


def test_an_analysis_stage_runs_in_a_preloaded_fork_with_its_own_code(served: Any) -> None:
    proc = stage(served, "stats", "a=1", "b")
    seen = facts(proc)
    assert proc.returncode == 0 and seen["served"] == "1" and seen["pandas"]
    assert seen["argv"] == ["a=1", "b"] and seen["cwd"] == str(served["root"])
    # the workspace's llm_energy (a copy here), never the server's own checkout
    assert seen["code"] == str(served["root"] / "src" / "llm_energy" / "__init__.py")
    entry = server_log(served)[-1]
    assert entry["returncode"] == 0 and entry["cpu_s"] > 0 and entry["argv"][1:] == ["a=1", "b"]


def test_exit_status_and_stderr_come_back_unchanged(served: Any) -> None:
    proc = stage(served, "stats", "fail")
    assert facts(proc)["served"] == "1"
    assert proc.returncode == 2 and proc.stderr == "bad input: fix it\n"


def test_hardware_stages_and_the_off_switch_run_alone(served: Any) -> None:
    assert facts(stage(served, "infer"))["served"] is None
    off = stage(served, "stats", **{stage_server.SWITCH_ENV: "off"})
    assert off.returncode == 0 and facts(off)["served"] is None and not facts(off)["pandas"]


def test_a_different_import_environment_runs_alone_and_says_why(served: Any) -> None:
    proc = stage(served, "stats", OMP_NUM_THREADS="3")
    assert proc.returncode == 0 and facts(proc)["served"] is None
    assert server_log(served)[-1]["refused"] == "$OMP_NUM_THREADS differs from the server's"


def test_without_a_server_the_stage_runs_alone(served: Any, tmp_path: Path) -> None:
    proc = stage(served, "stats", LLM_ENERGY_STATE_DIR=str(tmp_path))  # another server's name
    assert proc.returncode == 0 and facts(proc)["served"] is None


def _gone(pid: int, within_s: float = 10.0) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_a_signalled_or_killed_stage_takes_its_fork_down(served: Any, sig: int) -> None:
    proc = subprocess.Popen(
        [sys.executable, "stages/stats.py", "sleep"],
        cwd=served["root"],
        env=served["env"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    fork = json.loads(proc.stdout.readline())
    assert fork["served"] == "1" and fork["pid"] != proc.pid
    proc.send_signal(sig)
    assert proc.wait(timeout=10) == -sig  # SIGTERM: relayed, and the stage ends by it
    assert _gone(fork["pid"])


def test_cli_status_stop_and_idle_exit(served: Any, tmp_path: Path) -> None:
    status = cli("stage-server", "--status", env=served["env"])
    assert status.returncode == 0 and "stage(s) served" in status.stdout
    again = cli("stage-server", env=served["env"])  # one per interpreter and state dir
    assert again.returncode == 0 and f"pid {facts_pid(status.stdout)}" in again.stdout
    env = served["env"] | {"LLM_ENERGY_STATE_DIR": str(tmp_path)}
    assert cli("stage-server", "--idle-exit-s", "0.5", env=env).returncode == 0
    deadline = time.monotonic() + 20
    while cli("stage-server", "--status", env=env).returncode == 0:
        assert time.monotonic() < deadline, "the idle server did not exit"
        time.sleep(0.5)
    gone = cli("stage-server", "--stop", env=env)
    assert gone.returncode == 1 and "no stage server" in gone.stdout


def facts_pid(line: str) -> int:
    return int(line.split("pid ", 1)[1].split(",", 1)[0])


def test_changed_libraries_or_interpreter_are_refused() -> None:
    import importlib

    for name in stage_server.PRELOAD:
        importlib.import_module(name)

    stamps = stage_server.library_stamps()
    req = {"executable": sys.executable, "flags": list(sys.flags), "env": dict(os.environ)}
    assert stage_server.refusal(req, stamps) is None
    assert "changed on disk" in str(stage_server.refusal(req, stamps | {"pandas": 1}))
    assert "interpreter" in str(stage_server.refusal(req | {"executable": "/x"}, stamps))


@pytest.mark.parametrize("stage", sorted(p.stem for p in (REPO / "stages").glob("[!_]*.py")))
def test_a_stage_imports_common_first_so_a_served_one_hands_over_before_heavy_imports(
    stage: str,
) -> None:
    """Importing _common hands the stage over; an import above it (pandas in aggregate once) ran
    in the client anyway, ~0.3 s of CPU a unit for nothing. pyproject's isort section keeps it."""
    import ast

    tree = ast.parse((REPO / "stages" / f"{stage}.py").read_text())
    imports = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
    first = next(
        n for n in imports if not (isinstance(n, ast.ImportFrom) and n.module == "__future__")
    )
    assert isinstance(first, ast.ImportFrom) and first.module == "_common", ast.unparse(first)
