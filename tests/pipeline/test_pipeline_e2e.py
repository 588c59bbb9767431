"""End to end: the real DVC pipeline in a temporary copy of the repo, on the shrunk `ci` config."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bench_common import make_workspace
from helpers import experiment_data, experiment_metrics

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = (
        f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # stage cmd `python`
    )
    env.pop("LLM_ENERGY_ROOT", None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # as users run it: __pycache__ lands in deps folders
    return env


def _run(cmd: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        cmd, cwd=cwd, env=child_env(), capture_output=True, text=True, timeout=900
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return proc


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Shrunk: the ci experiment is the default in this copy, so `dvc exp run` composes it too.
    return make_workspace(tmp_path_factory.mktemp("ws"), child_env())


@pytest.fixture(scope="module")
def reproduced(workspace: Path) -> subprocess.CompletedProcess[str]:
    """One `dvc repro` of the whole pipeline, committed as the baseline every test starts from."""
    proc = _run([sys.executable, "-m", "dvc", "repro"], workspace)
    _run(["git", "add", "-A"], workspace)
    _run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "repro"], workspace)
    return proc


@pytest.fixture
def ws(workspace: Path, reproduced: subprocess.CompletedProcess[str]) -> Path:
    """The reproduced workspace, reset to its baseline so no test depends on another's order:
    `dvc exp run` and param edits leave params, lock and outputs changed behind them."""
    _run(["git", "checkout", "--", "."], workspace)
    _run([sys.executable, "-m", "dvc", "checkout", "--force"], workspace)
    return workspace


def test_repro_runs_every_stage_and_writes_outputs(
    ws: Path, reproduced: subprocess.CompletedProcess[str]
) -> None:
    workspace, proc = ws, reproduced
    for stage in ("prepare", "model", "infer", "aggregate", "stats", "plots"):
        assert f"Running stage '{stage}'" in proc.stdout
    rows = [
        json.loads(line)
        for line in (workspace / "data/infer/requests.jsonl").read_text().splitlines()
    ]
    assert len(rows) == 9 and {r["task"] for r in rows} == {"generation", "qa", "summarization"}
    for row in rows:
        assert row["status"] == "ok" and row["energy_source"] in ("rapl", "codecarbon-estimate")
        assert row["energy_j"] > 0 and row["latency_s"] > 0 and row["output_tokens"] >= 1
        assert row["freq_requested_mhz"] is None and row["energy_kind"] in ("measured", "estimated")
    metrics = json.loads((workspace / "reports/metrics.json").read_text())
    assert set(metrics["by_task"]) == {"generation", "qa", "summarization"}
    for task in metrics["by_task"].values():
        assert task["j_per_token"] > 0 and task["tokens_per_s"] > 0 and task["latency_p50_s"] > 0
    assert "freq_applied_mhz" in metrics["gpu"]
    run = json.loads((workspace / "data/infer/run.json").read_text())
    assert run["device"]["backend"] == "cpu" and run["git_commit"]
    pngs = sorted(p.name for p in (workspace / "reports/figures").glob("*.png"))
    assert (
        "energy_vs_freq.png" not in pngs
        and all(  # one clock: no frequency figures
            (workspace / "reports/figures" / p).read_bytes()[:4] == b"\x89PNG" for p in pngs
        )
    )
    by_freq = (workspace / "reports/plots/by_freq.csv").read_text().splitlines()
    assert len(by_freq) == 1 and "freq_mhz" in by_freq[0]  # `dvc plots show`: no one-point plot
    html = (workspace / "reports/report.html").read_text()
    assert "data:image/png;base64," in html and "<script src=" not in html
    assert "ESTIMATED" in html.upper() or "MEASURED" in html.upper()
    # DVC sees metrics and a clean pipeline
    shown = _run([sys.executable, "-m", "dvc", "metrics", "show", "--json"], workspace).stdout
    assert "j_per_token" in shown
    status = _run([sys.executable, "-m", "dvc", "status"], workspace).stdout
    assert "up to date" in status.lower() or status.strip() == ""


def test_stats_param_change_reruns_only_stats_and_plots(ws: Path) -> None:
    workspace = ws
    params = yaml.safe_load((workspace / "params.yaml").read_text())
    params["stats"]["alpha"] = 0.01
    (workspace / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    proc = _run([sys.executable, "-m", "dvc", "repro"], workspace)
    ran = [
        s
        for s in ("prepare", "model", "infer", "aggregate", "stats", "plots")
        if f"Running stage '{s}'" in proc.stdout
    ]
    assert ran == ["stats", "plots"], proc.stdout


def test_freq_cap_without_controllable_gpu_fails_cleanly(ws: Path) -> None:
    workspace = ws
    before = (workspace / "data/infer/requests.jsonl").read_bytes()
    proc = _run(
        [sys.executable, "stages/infer.py", "gpu.backend=cpu", "gpu.freq=1200"],
        workspace,
        check=False,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    error_lines = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(error_lines) == 1 and "1200" in error_lines[0] and "simulated" in error_lines[0]
    assert (workspace / "data/infer/requests.jsonl").read_bytes() == before  # nothing recorded


def test_bad_param_fails_with_one_line(ws: Path) -> None:
    workspace = ws
    proc = _run([sys.executable, "stages/infer.py", "infer.batch_size=0"], workspace, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "params: infer.batch_size = 0 is not allowed" in proc.stderr


def test_exp_run_with_simulated_cap_composes_and_shows(ws: Path) -> None:
    workspace = ws
    # A tiny model's request takes ~10 ms: allow enough repeats for a trusted 1 s window.
    _run(
        [
            sys.executable,
            "-m",
            "dvc",
            "exp",
            "run",
            "-S",
            "gpu=simulated",
            "-S",
            "gpu.freq=1200",
            "-S",
            "gpu.max_window_repeats=300",
            "-n",
            "sim1200",
        ],
        workspace,
    )
    shown = json.loads(
        _run([sys.executable, "-m", "dvc", "exp", "show", "--json"], workspace).stdout
    )
    found = experiment_data(shown, {"sim1200"})
    assert "sim1200" in found, "experiment sim1200 not in dvc exp show"
    metrics = experiment_metrics(found["sim1200"])
    assert metrics["energy"]["kind"] == "simulated"
    assert all(task["j_per_token"] > 0 for task in metrics["by_task"].values())
    assert metrics["gpu"]["freq_applied_mhz"] == 1200 and metrics["counts"]["n_excluded"] == 0
    typo = _run(
        [sys.executable, "-m", "dvc", "exp", "run", "-S", "gpu.freqq=1200"], workspace, check=False
    )
    assert typo.returncode != 0 and "freqq" in (typo.stderr + typo.stdout)


def test_simulated_frequency_sweep_gives_pareto_recommendation_and_timeline(ws: Path) -> None:
    workspace = ws
    _run(
        [
            sys.executable,
            "-m",
            "dvc",
            "exp",
            "run",
            "-n",
            "simsweep",
            "-S",
            "experiment=sim_sweep",
            # A Mistral-7B architecture with random weights: the simulated GPU's roofline puts
            # it in a regime where capping clearly pays (a tiny model is launch-bound), and the
            # forward pass is skipped, so it costs no CPU time.
            "-S",
            "model=mistral_7b",
            "-S",
            "model.weights=random",
            # 6 items: the calibrated simulator saves ~12 % at 990 MHz, which 3 items cannot
            # establish under the study-wide simultaneous interval
            "-S",
            "prepare.n_items=6",
            "-S",
            "infer.output_tokens=8",
            "-S",
            "gpu.max_window_repeats=400",
            "-S",
            "gpu.idle_baseline_s=0.2",
            "-S",
            "gpu.power_timeline_period_s=0.2",
            "-S",
            "emissions.enabled=false",
            # A latency budget that admits the middle caps.
            "-S",
            "stats.latency_budget_pct=15",
        ],
        workspace,
    )
    import pandas as pd

    requests = pd.read_json(workspace / "data/infer/requests.jsonl", lines=True)
    assert set(requests["energy_kind"]) == {"simulated"}
    assert (
        requests["freq_requested_mhz"].isna().sum() == 18
        and requests["freq_requested_mhz"].nunique() == 5
    )
    assert requests["window_trusted"].all() and requests["cap_held"].all()
    pareto = pd.read_csv(workspace / "reports/stats/pareto.csv")
    assert pareto["on_frontier"].any() and len(pareto) == 3 * 6
    rec = pd.read_csv(workspace / "reports/stats/recommendation.csv")
    assert len(rec) == 3 and rec["recommended_freq_mhz"].notna().any()
    metrics = json.loads((workspace / "reports/metrics.json").read_text())
    assert metrics["tradeoff"]["best_saving_pct"] > 0 and metrics["energy"]["kind"] == "simulated"
    freq_tests = pd.read_csv(workspace / "reports/stats/frequency_effect.csv")
    assert (freq_tests["verdict"] == "significant").any()
    timeline = pd.read_csv(workspace / "data/infer/power_timeline.csv")
    assert len(timeline) >= 3 and (timeline["power_w"] > 0).all()
    assert (workspace / "reports/figures/power_timeline.png").exists()
    assert len(pd.read_csv(workspace / "reports/plots/by_freq.csv")) == 3 * 6
    report = (workspace / "reports/report.md").read_text()
    assert "SIMULATED" in report.upper() and "MHz" in report


def test_analysis_stages_in_the_stage_server_write_the_same_bytes(ws: Path) -> None:
    """aggregate, stats and plots handed to `llm-energy stage-server` (cli/stage_server.py)
    write every output byte for byte as they do alone, and DVC finds the pipeline up to date."""

    def outputs(**env: str) -> dict[Path, bytes]:
        for stage in ("aggregate", "stats", "plots"):
            subprocess.run(
                [sys.executable, f"stages/{stage}.py"], cwd=ws, env=child_env() | env, check=True,
                capture_output=True,
            )  # fmt: skip
        files = [p for d in ("data/aggregate", "reports") for p in sorted((ws / d).rglob("*"))]
        return {p: p.read_bytes() for p in files if p.is_file()}

    alone = outputs(LLM_ENERGY_STAGE_SERVER="off")
    cli = [sys.executable, "-m", "llm_energy.cli.main", "stage-server"]
    assert "running" in _run([*cli, "--idle-exit-s", "120"], ws).stdout
    try:
        served = outputs()
        status = _run([*cli, "--status"], ws).stdout
    finally:
        _run([*cli, "--stop"], ws, check=False)
    assert "3 stage(s) served" in status
    assert len(alone) > 20 and served == alone
    dvc_status = _run([sys.executable, "-m", "dvc", "status"], ws).stdout
    assert "up to date" in dvc_status.lower() or dvc_status.strip() == ""
