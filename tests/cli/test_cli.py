"""The console script: compose check, gpu status/restore on the simulated backend, compare."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import die_holding_a_cap
from llm_energy.cli.main import main
from llm_energy.control.open import DeviceSpec, open_device

REPO = Path(__file__).resolve().parents[2]


def test_compose_check_passes_on_committed_params(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--root", str(REPO), "compose", "--check"]) == 0
    assert "matches" in capsys.readouterr().out


def test_compose_rejects_invalid_values(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "conf").symlink_to(REPO / "conf")
    assert main(["--root", str(tmp_path), "compose", "infer.batch_size=0"]) == 2
    assert "infer.batch_size = 0" in capsys.readouterr().err
    assert not (tmp_path / "params.yaml").exists()


def test_gpu_status_shows_pending_journal_and_restore_recovers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state"
    monkeypatch.setenv("LLM_ENERGY_STATE_DIR", str(state))
    die_holding_a_cap(state, DeviceSpec.for_tool("simulated", 0, state), on_other_processes="warn")
    assert (
        open_device(DeviceSpec.for_tool("simulated", 0, state)).clock_state().sm_locked_mhz == 1200
    )
    assert main(["--root", str(tmp_path), "gpu", "status", "--backend", "simulated"]) == 0
    screen = capsys.readouterr().out  # for a reader: one fact per line, the fix included
    assert "SM lock        locked at 1200 MHz" in screen
    assert "its run is gone: `llm-energy gpu restore` puts the clocks back" in screen
    assert not screen.lstrip().startswith("{")
    argv = ["--root", str(tmp_path), "gpu", "status", "--backend", "simulated", "--json"]
    assert main(argv) == 0
    status = json.loads(capsys.readouterr().out)  # for scripts: every field
    assert status["clock_state"]["sm_locked_mhz"] == 1200 and status["pending_journal"]
    assert main(["--root", str(tmp_path), "gpu", "restore", "--backend", "simulated"]) == 0
    assert "restor" in capsys.readouterr().out.lower()
    assert (
        open_device(DeviceSpec.for_tool("simulated", 0, state)).clock_state().sm_locked_mhz is None
    )


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_restore_right_after_sigkill_needs_no_reaping(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A capped run is killed with SIGKILL and nothing reaps it (this test is its parent and does
    # not wait, like a container's PID 1 without --init once `dvc exp run` above it is killed
    # too): a zombie holds no session, so `gpu restore` works at once instead of refusing.
    import os
    import signal
    import subprocess
    import sys
    import time

    state = tmp_path / "state"
    monkeypatch.setenv("LLM_ENERGY_STATE_DIR", str(state))
    run = subprocess.Popen(
        [sys.executable, "-c", CAPPED_RUN, str(state)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO / "src")},
    )
    try:
        assert run.stdout is not None and run.stdout.readline().strip() == "locked"
        os.kill(run.pid, signal.SIGKILL)
        t0 = time.monotonic()
        while main(["--root", str(tmp_path), "gpu", "restore", "--backend", "simulated"]) != 0:
            assert time.monotonic() - t0 < 0.5, capsys.readouterr()
        elapsed_s = time.monotonic() - t0
        stat = Path(f"/proc/{run.pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
        assert stat in ("Z", "X")  # not reaped in between: a zombie the whole time
        assert elapsed_s < 0.5 and "restor" in capsys.readouterr().out.lower()
        spec = DeviceSpec.for_tool("simulated", 0, state)
        assert open_device(spec).clock_state().sm_locked_mhz is None
    finally:
        run.kill()
        run.wait()


CAPPED_RUN = """
import sys, time
from pathlib import Path
from llm_energy.control.open import DeviceSpec, open_device
from llm_energy.control.session import ClockSession
state = Path(sys.argv[1])
dev = open_device(DeviceSpec.for_tool("simulated", 0, state))
ClockSession(dev, "lock", 1200, journal_dir=state / "journal", on_other_processes="warn").__enter__()
print("locked", flush=True)
time.sleep(60)
"""


def test_gpu_status_without_gpu_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--root", str(tmp_path), "gpu", "status", "--backend", "nvml"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("llm-energy gpu status: error:") and "\n" not in err


def test_compare_from_dvc_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def rev(name: str, freq: int | None, jpt: float, lat: float) -> dict:
        return {
            "rev": name * 4,
            "name": name,
            "data": {
                "params": {
                    "params.yaml": {"data": {"gpu": {"freq": freq}, "model": {"name": "m"}}}
                },
                "metrics": {
                    "reports/metrics.json": {
                        "data": {
                            "energy": {
                                "j_per_token": jpt,
                                "j_per_token_ci_low": jpt * 0.98,  # no saving without a CI
                                "j_per_token_ci_high": jpt * 1.02,
                                "kind": "simulated",
                            },
                            "perf": {"latency_p50_s": lat},
                            "gpu": {"freq_applied_mhz": freq},
                            "config": {"model": "m", "task": "qa"},
                        }
                    }
                },
            },
        }

    exps = [rev("base", None, 1.0, 1.0), rev("f1500", 1500, 0.8, 1.03), rev("f900", 900, 0.7, 1.4)]
    data = [
        {"rev": "workspace", "name": None, "data": exps[0]["data"], "experiments": None},
        {
            "rev": "abc",
            "name": "main",
            "data": exps[0]["data"],
            "experiments": [{"revs": [e], "name": e["name"], "executor": None} for e in exps],
        },
    ]
    src = tmp_path / "exp.json"
    src.write_text(json.dumps(data))
    assert main(["--root", str(tmp_path), "compare", "--json-file", str(src)]) == 0
    out = capsys.readouterr().out
    assert "f1500" in out and (tmp_path / "reports/compare/experiments.csv").exists()
    assert (tmp_path / "reports/compare/tradeoff.png").read_bytes()[:4] == b"\x89PNG"
    import pandas as pd

    table = pd.read_csv(tmp_path / "reports/compare/experiments.csv")
    best = table[table["best_within_budget"].astype(bool)]
    assert best["experiment"].tolist() == [
        "f1500"
    ]  # 20 % saving at +3 % latency; 900 MHz is over budget


def test_every_flag_the_top_level_help_advertises_exists() -> None:
    import argparse
    import re

    from llm_energy.cli import main as cli_main

    parser = cli_main.build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    command, checked = None, 0
    for line in (cli_main.__doc__ or "").splitlines():
        if line.startswith("llm-energy "):
            command = line.split()[1]
        if command is None:
            continue
        accepted = {o for a in commands.choices[command]._actions for o in a.option_strings}
        for flag in re.findall(r"(?<![\w-])--[a-z][\w-]*", line):
            assert flag in accepted, f"`llm-energy {command}` advertises {flag}"
            checked += 1
    assert checked >= 8


def test_a_typo_in_a_key_gets_a_did_you_mean(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "conf").symlink_to(REPO / "conf")
    assert main(["--root", str(tmp_path), "compose", "gpu.frq=1200"]) == 2  # through Hydra
    err = capsys.readouterr().err.strip()
    assert "did you mean gpu.freq?" in err and "\n" not in err
    assert not (tmp_path / "params.yaml").exists()
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    for typo, meant in (("gpu.frq=1200", "gpu.freq"), ("infer.batchsize=2", "infer.batch_size")):
        assert main(["--root", str(tmp_path), "doctor", typo]) == 2  # params.yaml, no Hydra
        assert f"did you mean {meant}?" in capsys.readouterr().err
    assert main(["--root", str(tmp_path), "doctor", "gpu=simulated"]) == 2
    err = capsys.readouterr().err
    assert "picks a config group" in err and "`llm-energy compose gpu=simulated`" in err
