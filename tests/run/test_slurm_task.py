"""One task of the SLURM array (scripts/slurm/grid-array.sbatch) run by bash, no SLURM needed.

An uncapped unit needs no `srun`, so the script runs as the array would run its task 0: it
clones the remote into $TMPDIR, points DVC at the shared cache, runs the unit and pushes its
experiment ref; its unit's aggregate and stats run in the stage server it starts. The whole array under a real SLURM is tests/run/test_slurm.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from test_queue import dvc, env_for, llm_energy, make_workspace, run

from llm_energy.cli import stage_server
from llm_energy.cli.grid_run import exp_ref

pytestmark = pytest.mark.slow
SETS = ["gpu=simulated", "gpu.max_window_repeats=300", "sweep.freqs_mhz=[1305]", "task=qa"]
NAME = "ci-tiny_gpt2-qa"


def test_one_array_task_runs_its_unit_and_pushes_the_experiment(tmp_path: Path) -> None:
    env = env_for(tmp_path / "state")
    ws = make_workspace(tmp_path / "login", env)
    remote = tmp_path / "remote.git"
    run(["git", "clone", "-q", "--bare", str(ws), str(remote)], tmp_path, env)
    sets = [a for s in SETS for a in ("-S", s)]
    run(llm_energy("grid", "--prepare", *sets), ws, env)
    units = tmp_path / "units.tsv"
    run(llm_energy("grid", "--slurm-units", str(units), *sets), ws, env)
    cache = ws / ".dvc" / "cache"
    task_env = env | {"GRID_REPO": str(remote), "GRID_UNITS": str(units), "GRID_KEEP": "1",
                      "GRID_CACHE": str(cache), "TMPDIR": str(tmp_path),
                      "SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_JOB_ID": "7", "SLURM_JOB_ID": "8"}  # fmt: skip
    script = ws / "scripts" / "slurm" / "grid-array.sbatch"
    try:
        log = run(["bash", str(script)], tmp_path, task_env).stdout
    finally:
        run(llm_energy("stage-server", "--stop"), tmp_path, env, check=False)  # the task's
    entries = stage_server.read_log(env["LLM_ENERGY_STATE_DIR"])
    assert not [e for e in entries if "refused" in e], entries
    assert sorted(Path(e["argv"][0]).stem for e in entries if "argv" in e) == ["aggregate", "stats"]
    assert "Stage 'prepare' is cached - skipping run" in log and f"unit {NAME} pushed" in log, log
    assert f"python -m llm_energy.cli.dvc_fast exp run -n {NAME}" in log, log  # the faster DVC
    clone = tmp_path / "llm-energy-7-0"
    assert run(dvc("cache", "dir"), clone, env).stdout.strip() == str(cache)
    base = run(["git", "rev-parse", "HEAD"], clone, env).stdout.strip()
    ref = exp_ref(base, NAME)  # where DVC keeps it; the script builds the same name in bash
    pushed = run(["git", "rev-parse", ref], remote, env).stdout.strip()
    assert pushed == run(["git", "rev-parse", ref], clone, env).stdout.strip()
    lock = yaml.safe_load(run(["git", "show", f"{pushed}:dvc.lock"], remote, env).stdout)
    assert lock["stages"]["infer"]["params"]["params.yaml"]["sweep"]["freqs_mhz"] == [1305]
    for out in lock["stages"]["stats"]["outs"]:  # outputs are in the shared cache
        md5 = out["md5"].removesuffix(".dir")
        assert (cache / "files" / "md5" / md5[:2] / out["md5"][2:]).exists(), out
