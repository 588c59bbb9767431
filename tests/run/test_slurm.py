"""A real SLURM (local single node): the grid's job array end to end, then the collect step.

Runs where `sbatch` exists and a cluster answers (`SLURM_CONF`, or the one
scripts/slurm/local-cluster.sh starts as root); skips with one reason line elsewhere.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_queue import dvc, env_for, llm_energy, make_workspace, run

from helpers import experiment_data, experiment_metrics

REPO = Path(__file__).resolve().parents[2]
LOCAL_CONF = Path(os.environ.get("LLM_ENERGY_SLURM_DIR", "/tmp/llm-energy-slurm")) / "slurm.conf"
pytestmark = [pytest.mark.slurm, pytest.mark.slow]

SETS = [
    "gpu=simulated",
    "gpu.simulated_count=2",
    "gpu.index=auto",
    "gpu.max_window_repeats=300",
    # gpu.control=slurm: one unit per cap, the capped one under `srun --gpu-freq` (this node has
    # no GPU GRES, so SLURM accepts the flag and sets nothing; the stage records what it saw)
    "gpu.control=slurm",
    "gpu.freq=null,1305",
    "task=qa",
]
NAMES = ["ci-tiny_gpt2-qa-default", "ci-tiny_gpt2-qa-1305mhz"]


def _node_up(env: dict[str, str]) -> bool:
    try:
        proc = subprocess.run(
            ["sinfo", "-h", "-o", "%t"], env=env, capture_output=True, text=True, timeout=15
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0 and any(
        s.strip("*~#") in ("idle", "mix", "alloc") for s in proc.stdout.split()
    )


@pytest.fixture(scope="module")
def cluster() -> Iterator[dict[str, str]]:
    if not shutil.which("sbatch"):
        pytest.skip("sbatch not found: install slurm-wlm and munge to run the SLURM test")
    env = dict(os.environ)
    if "SLURM_CONF" not in env and LOCAL_CONF.exists():
        env["SLURM_CONF"] = str(LOCAL_CONF)
    started = False
    if not _node_up(env):
        if os.geteuid() != 0:
            pytest.skip("no SLURM node answers and starting the local one needs root")
        script = REPO / "scripts" / "slurm" / "local-cluster.sh"
        proc = subprocess.run(["bash", str(script), "start"], capture_output=True, text=True)
        env["SLURM_CONF"] = str(LOCAL_CONF)
        if proc.returncode != 0 or not _node_up(env):
            reason = (proc.stderr.strip().splitlines() or ["node not idle"])[-1]
            pytest.skip(f"local SLURM could not start: {reason}")
        started = True
    yield env
    if started:
        subprocess.run(["bash", str(REPO / "scripts/slurm/local-cluster.sh"), "stop"], check=False)


def test_array_runs_the_grid_and_collect_shows_both(
    cluster: dict[str, str], tmp_path: Path
) -> None:
    env = env_for(tmp_path / "state")
    env["SLURM_CONF"] = cluster.get("SLURM_CONF", env.get("SLURM_CONF", ""))
    ws = make_workspace(tmp_path / "login", env)
    remote = tmp_path / "remote.git"
    run(["git", "clone", "-q", "--bare", str(ws), str(remote)], tmp_path, env)
    run(["git", "remote", "add", "origin", str(remote)], ws, env)
    sets = [a for s in SETS for a in ("-S", s)]
    run(llm_energy("grid", "--prepare", *sets), ws, env)  # the array's jobs hit the run-cache
    units = tmp_path / "units.tsv"
    run(llm_energy("grid", "--slurm-units", str(units), *sets), ws, env)
    lines = units.read_text().splitlines()
    assert [line.split("\t")[:2] for line in lines] == [[NAMES[0], "-"], [NAMES[1], "1305"]]

    job_env = (
        f"ALL,GRID_REPO={remote},GRID_UNITS={units},GRID_CACHE={ws / '.dvc' / 'cache'},"
        f"TMPDIR={tmp_path}"
    )
    proc = run(
        [
            "sbatch",
            "--wait",
            f"--array=0-{len(lines) - 1}",
            f"--output={tmp_path}/grid-%A_%a.out",
            f"--export={job_env}",
            str(ws / "scripts" / "slurm" / "grid-array.sbatch"),
        ],
        ws,
        env,
        check=False,
        timeout=600,
    )
    logs = {p.name: p.read_text() for p in sorted(tmp_path.glob("grid-*.out"))}
    assert proc.returncode == 0, f"{proc.stderr}\n" + "\n".join(
        f"--- {k}\n{v[-2500:]}" for k, v in logs.items()
    )
    assert len(logs) == 2
    for text in logs.values():
        assert "Stage 'prepare' is cached - skipping run" in text
        assert "pushed" in text
    steps = {
        line.split(" -n ")[1].split()[0]: line
        for text in logs.values()
        for line in text.splitlines()
        if line.startswith("+ ")
    }
    assert steps[NAMES[1]].startswith("+ srun --ntasks=1 --gpu-freq=1305 dvc exp run -n ")
    assert steps[NAMES[0]].startswith("+  dvc exp run -n ")  # no cap: no srun step
    assert all(step.endswith(" stats") for step in steps.values())  # plots render on demand

    collected = run(["bash", "scripts/slurm/collect.sh"], ws, env)
    for name in NAMES:
        assert name in collected.stdout, collected.stdout[-3000:]
    assert "group(s), compared only within themselves" in collected.stdout
    shown = json.loads(run(dvc("exp", "show", "--json", "-A"), ws, env).stdout)
    found = experiment_data(shown, NAMES)
    metrics = {name: experiment_metrics(data) for name, data in found.items()}
    assert sorted(metrics) == sorted(NAMES)
    assert all(m["energy"]["kind"] == "simulated" for m in metrics.values())
    freqs = {name: found[name]["params"]["params.yaml"]["data"]["gpu"]["control"] for name in NAMES}
    assert freqs == dict.fromkeys(NAMES, "slurm")
