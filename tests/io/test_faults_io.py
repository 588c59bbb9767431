"""Input and output faults end in one line and exit 2, and never cost the previous outputs.

One test per row of the fault-injection table: a broken or incomplete prepared record, non-UTF-8
samples, a truncated requests.jsonl, a params.yaml syntax error, a full disk during infer, a
read-only output folder, and a refused clock cap (the `validate` stage runs before DVC deletes
anything). Stages run as `python stages/x.py` in a temp folder where practical; faults that need
a patched call (ENOSPC, EROFS, read-only as root) run the stage in-process through `run_stage`.
OOM at one configuration is covered by test_runner.py (the run records it and continues).
"""

from __future__ import annotations

import errno
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from analysis_fixtures import infer_record
from helpers import compose
from llm_energy.io import files
from llm_energy.io.files import JsonlAppender, read_jsonl

REPO = Path(__file__).resolve().parents[2]
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


# ------------------------------------------------------------------ helpers


@pytest.fixture(scope="module")
def ci_params() -> dict[str, Any]:
    return compose("experiment=ci")


@pytest.fixture
def ws(tmp_path: Path, ci_params: dict[str, Any]) -> Path:
    """A bare workspace: params.yaml, the samples and the prompt templates; stages run here."""
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(ci_params, sort_keys=False))
    shutil.copytree(REPO / "data" / "samples", tmp_path / "data" / "samples")
    shutil.copytree(REPO / "prompts", tmp_path / "prompts")
    return tmp_path


def run_script(stage: str, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LLM_ENERGY_LOG": "WARNING"}
    env.pop("LLM_ENERGY_ROOT", None)
    return subprocess.run(
        [sys.executable, str(REPO / "stages" / f"{stage}.py"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def one_error_line(stderr: str, stage: str) -> str:
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if "error:" in line]
    assert len(lines) == 1 and lines[0].startswith(f"llm-energy {stage}: error: "), stderr
    return lines[0]


def sentinel(folder: Path) -> bytes:
    """A previous output that a failed stage must leave as it was."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "previous.txt").write_bytes(b"previous results\n")
    return b"previous results\n"


def load_stage(name: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(REPO / "stages"))
    spec = importlib.util.spec_from_file_location(f"stage_{name}", REPO / "stages" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_in_process(
    stage: str, cwd: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str]:
    module = load_stage(stage, monkeypatch)
    monkeypatch.chdir(cwd)
    monkeypatch.delenv("LLM_ENERGY_ROOT", raising=False)
    try:
        module.run_stage(stage, module.main, argv=[])
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, capsys.readouterr().err


def prepared_rows() -> list[dict[str, Any]]:
    return [
        {
            "task": "qa",
            "kind": "qa",
            "dataset": "samples_qa",
            "item_id": f"q{i}",
            "fields": {"context": "Paris is in France.", "question": "Where is Paris?"},
            "references": ["France"],
            "source_row": i,
        }
        for i in range(3)
    ]


def write_lines(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


# ------------------------------------------------------------------ prepared data (infer)


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        ("broken_line", "data/prepared/qa.jsonl line 2: not valid JSON"),
        ("missing_key", "data/prepared/qa.jsonl line 2, key 'item_id': record has no such key"),
        ("wrong_kind", "data/prepared/qa.jsonl line 2: kind is 'summarization'"),
    ],
)
def test_bad_prepared_record_is_one_line_and_keeps_previous_results(
    ws: Path, damage: str, expected: str
) -> None:
    rows = [json.dumps(r) for r in prepared_rows()]
    if damage == "broken_line":
        rows[1] = rows[1][:25]
    elif damage == "missing_key":
        rows[1] = json.dumps({k: v for k, v in prepared_rows()[1].items() if k != "item_id"})
    else:
        rows[1] = json.dumps({**prepared_rows()[1], "kind": "summarization"})
    write_lines(ws / "data/prepared/qa.jsonl", rows)
    params = yaml.safe_load((ws / "params.yaml").read_text())
    params["task"] = {"qa": params["task"]["qa"]}
    (ws / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    previous = sentinel(ws / "data/infer")
    proc = run_script("infer", ws)
    line = one_error_line(proc.stderr, "infer")
    assert proc.returncode == 2 and expected in line and "re-run the prepare stage" in line
    assert (ws / "data/infer/previous.txt").read_bytes() == previous
    assert not list((ws / "data").glob(".infer.tmp-*"))


# ------------------------------------------------------------------ samples (prepare, model)


def _latin1_sample(ws: Path) -> None:
    path = ws / "data/samples/qa.jsonl"
    lines = path.read_bytes().split(b"\n")
    lines[3] = lines[3].replace(b"the", "th\u00e9".encode("latin-1"), 1)
    path.write_bytes(b"\n".join(lines))


def test_non_utf8_sample_prepare_names_file_and_line(
    ws: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _latin1_sample(ws)
    previous = sentinel(ws / "data/prepared")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf"))  # never a cached good copy
    proc = run_script("prepare", ws)
    line = one_error_line(proc.stderr, "prepare")
    assert proc.returncode == 2
    assert "data/samples/qa.jsonl line 4 (byte 0xe9) is not valid UTF-8" in line
    assert (ws / "data/prepared/previous.txt").read_bytes() == previous


def test_non_utf8_sample_model_names_file_and_line(ws: Path) -> None:
    _latin1_sample(ws)
    previous = sentinel(ws / "models/materialized")
    proc = run_script("model", ws)
    line = one_error_line(proc.stderr, "model")
    assert proc.returncode == 2 and "data/samples/qa.jsonl line 4: not valid UTF-8" in line
    assert "git checkout data/samples/qa.jsonl" in line
    assert (ws / "models/materialized/previous.txt").read_bytes() == previous


# ------------------------------------------------------------------ records (aggregate)


def _records(n: int) -> list[dict[str, Any]]:
    base = infer_record(
        run_id="r1",
        task="qa",
        task_kind="qa",
        energy_j=1.5,
        latency_s=0.5,
        output_tokens=4,
        energy_source="codecarbon-estimate",
        energy_kind="estimated",
        references=["France"],
    )
    return [{**base, "item_id": f"q{i}", "prediction": "x" * 40} for i in range(n)]


@pytest.mark.parametrize("cut", ["mid_record", "whole_lines"])
def test_truncated_requests_is_one_line(ws: Path, cut: str) -> None:
    text = "".join(json.dumps(r) + "\n" for r in _records(4))
    infer = ws / "data/infer"
    infer.mkdir(parents=True)
    files.write_json(infer / "run.json", {"run_id": "r1", "totals": {"requests_ok": 4}})
    kept = text[:-30] if cut == "mid_record" else "".join(text.splitlines(True)[:3])
    (infer / "requests.jsonl").write_text(kept)
    previous = sentinel(ws / "data/aggregate")
    proc = run_script("aggregate", ws)
    line = one_error_line(proc.stderr, "aggregate")
    assert proc.returncode == 2 and "re-run the infer stage" in line
    if cut == "mid_record":
        assert "requests.jsonl line 4: not valid JSON" in line and "truncated" in line
    else:
        assert "holds 3 records but run.json counts 4" in line
    assert (ws / "data/aggregate/previous.txt").read_bytes() == previous


def test_record_missing_a_key_is_one_line(ws: Path) -> None:
    rows = _records(3)
    del rows[1]["references"]
    write_lines(ws / "data/infer/requests.jsonl", [json.dumps(r) for r in rows])
    files.write_json(ws / "data/infer/run.json", {"run_id": "r1"})
    line = one_error_line(run_script("aggregate", ws).stderr, "aggregate")
    assert "requests.jsonl line 2, key 'references': record has no such key" in line


def test_damaged_run_json_is_one_line(ws: Path) -> None:
    write_lines(ws / "data/infer/requests.jsonl", [json.dumps(r) for r in _records(2)])
    (ws / "data/infer/run.json").write_text('{"run_id": "r1", ')
    line = one_error_line(run_script("aggregate", ws).stderr, "aggregate")
    assert "data/infer/run.json line 1: not valid JSON" in line


# ------------------------------------------------------------------ params.yaml


def test_params_yaml_syntax_error_is_one_line(ws: Path) -> None:
    params = ws / "params.yaml"
    params.write_text(params.read_text().replace("  seed: 0\n", "  seed: [0\n", 1))
    for stage in ("validate", "aggregate"):
        proc = run_script(stage, ws)
        line = one_error_line(proc.stderr, stage)
        assert proc.returncode == 2 and "params.yaml line" in line and "YAML syntax error" in line
        assert "git checkout params.yaml" in line


def test_params_yaml_of_wrong_shape_is_one_line(ws: Path) -> None:
    (ws / "params.yaml").write_text("- a\n- b\n")
    line = one_error_line(run_script("stats", ws).stderr, "stats")
    assert "expected a mapping of sections" in line and "git checkout params.yaml" in line


# ------------------------------------------------------------------ validate: refused caps


def test_validate_refuses_cap_without_controllable_clocks_fast_and_without_torch(
    ws: Path,
) -> None:
    probe = (
        "import runpy, sys\n"
        f"sys.path.insert(0, {str(REPO / 'stages')!r})\n"
        "sys.argv = ['validate.py', 'gpu.backend=cpu', 'gpu.freq=1200']\n"
        "try:\n"
        f"    runpy.run_path({str(REPO / 'stages/validate.py')!r}, run_name='__main__')\n"
        "finally:\n"
        "    print('torch loaded:', 'torch' in sys.modules)\n"
    )
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", probe], cwd=ws, capture_output=True, text=True, timeout=60
    )
    elapsed = time.perf_counter() - start
    line = one_error_line(proc.stderr, "validate")
    assert proc.returncode == 2 and "torch loaded: False" in proc.stdout
    assert "gpu.freq = 1200" in line and "simulated" in line
    assert "git checkout params.yaml" in line and "dvc exp run" in line
    assert elapsed < 2.0, f"validate took {elapsed:.2f} s"
    assert not (ws / "data/validated.txt").exists()


def test_validate_passes_simulated_cap_and_writes_constant_marker(ws: Path) -> None:
    proc = run_script("validate", ws, "gpu.backend=simulated", "gpu.freq=1200")
    assert proc.returncode == 0, proc.stderr
    first = (ws / "data/validated.txt").read_bytes()
    assert run_script("validate", ws, "stats.alpha=0.01").returncode == 0
    assert (ws / "data/validated.txt").read_bytes() == first  # downstream never re-runs for it


@pytest.mark.slow
def test_refused_dvc_exp_run_keeps_outputs_and_says_how_back(tmp_path: Path) -> None:
    from test_pipeline_e2e import child_env

    from bench_common import make_workspace

    ws = tmp_path / "repo"
    ws.mkdir()
    make_workspace(ws, child_env())

    def run(*cmd: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            cmd, cwd=ws, env=child_env(), capture_output=True, text=True, timeout=900
        )

    git = ("git", "-c", "user.name=t", "-c", "user.email=t@t")
    repro = run(sys.executable, "-m", "dvc", "repro")
    assert repro.returncode == 0, repro.stderr[-3000:]
    assert run("git", "add", "-A").returncode == 0
    assert run(*git, "commit", "-qm", "baseline").returncode == 0
    before = (ws / "data/infer/requests.jsonl").read_bytes()

    proc = run(
        sys.executable, "-m", "dvc", "exp", "run", "-S", "gpu.backend=cpu", "-S", "gpu.freq=1200"
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "llm-energy validate: error:" in out, out[-3000:]
    assert "git checkout params.yaml" in out and "Running stage 'infer'" not in out
    assert (ws / "data/infer/requests.jsonl").read_bytes() == before  # nothing was deleted
    assert yaml.safe_load((ws / "params.yaml").read_text())["gpu"]["freq"] == 1200  # DVC left it

    assert run("git", "checkout", "params.yaml").returncode == 0  # the way back the line names
    again = run(sys.executable, "-m", "dvc", "repro")
    assert again.returncode == 0, again.stderr[-3000:]
    ran = [s for s in ("prepare", "model", "infer") if f"Running stage '{s}'" in again.stdout]
    assert ran == [], again.stdout  # the constant marker re-runs nothing downstream


# ------------------------------------------------------------------ disk full during infer


@pytest.mark.slow
def test_disk_full_during_infer_is_one_line_keeps_previous_and_restores_clocks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    params = compose("experiment=ci", "gpu=simulated", "task=[qa]")
    params["gpu"].update(freq=1200, idle_baseline_s=0.0)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    shutil.copytree(REPO / "data/samples", tmp_path / "data/samples")
    shutil.copytree(REPO / "prompts", tmp_path / "prompts")
    for stage in ("prepare", "model"):
        assert run_in_process(stage, tmp_path, monkeypatch, capsys)[0] == 0
    previous = sentinel(tmp_path / "data/infer")

    class FullDisk:  # the file object of requests.jsonl: the third record finds the disk full
        def __init__(self, fh: Any) -> None:
            self.fh, self.writes = fh, 0

        def write(self, text: str) -> int:
            self.writes += 1
            if self.writes >= 3:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return self.fh.write(text)

        def __getattr__(self, name: str) -> Any:
            return getattr(self.fh, name)

    original = JsonlAppender.__init__

    def full_disk_init(self: JsonlAppender, path: Path) -> None:
        original(self, path)
        self._fh = FullDisk(self._fh)  # type: ignore[assignment]

    monkeypatch.setattr(JsonlAppender, "__init__", full_disk_init)
    code, err = run_in_process("infer", tmp_path, monkeypatch, capsys)
    line = one_error_line(err, "infer")
    assert code == 2 and "no space left on the device while writing" in line
    assert "data/infer/requests.jsonl" in line and "the previous data/infer is unchanged" in line
    assert (tmp_path / "data/infer/previous.txt").read_bytes() == previous
    assert not list((tmp_path / "data").glob(".infer.tmp-*"))
    assert len(read_jsonl(tmp_path / "data/infer.partial/requests.jsonl")) == 2
    from llm_energy.control.open import DeviceSpec, open_device

    state_dir = Path(os.environ["LLM_ENERGY_STATE_DIR"])
    # reopened only to read its clocks, as `llm-energy gpu status` does
    with open_device(DeviceSpec.for_tool("simulated", 0, state_dir)) as dev:
        assert dev.clock_state() == dev.default_state()  # the cap was undone
    assert not [p for p in (state_dir / "journal").glob("*") if p.is_file()]


# ------------------------------------------------------------------ read-only outputs


def _aggregate_inputs(ws: Path) -> None:
    write_lines(ws / "data/infer/requests.jsonl", [json.dumps(r) for r in _records(2)])
    files.write_json(ws / "data/infer/run.json", {"run_id": "r1"})


@pytest.mark.skipif(IS_ROOT, reason="root ignores chmod; the patched test below covers root")
def test_read_only_output_folder_chmod(ws: Path) -> None:
    previous = sentinel(ws / "data/aggregate")
    os.chmod(ws / "data/aggregate", 0o555)
    try:
        proc = run_script("aggregate", ws)
    finally:
        os.chmod(ws / "data/aggregate", 0o755)
    line = one_error_line(proc.stderr, "aggregate")
    assert proc.returncode == 2 and "permission denied for data/aggregate" in line
    assert (ws / "data/aggregate/previous.txt").read_bytes() == previous


def test_read_only_output_folder_patched(
    ws: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    previous = sentinel(ws / "data/aggregate")
    real_access = os.access
    target = str(ws / "data/aggregate")

    def no_write(path: Any, mode: int, **kw: Any) -> bool:
        return False if str(path) == target and mode & os.W_OK else real_access(path, mode, **kw)

    monkeypatch.setattr(files.os, "access", no_write)
    stage = load_stage("aggregate", monkeypatch)
    # Only the write matters here: the scoring is stubbed out.
    monkeypatch.setattr(stage, "score_requests", lambda df: df.assign(quality_applicable=True))
    monkeypatch.setattr(stage, "summarize", lambda *a, **k: stage.pd.DataFrame())
    monkeypatch.setattr(stage, "corpus_quality", lambda *a, **k: stage.pd.DataFrame())
    _aggregate_inputs(ws)
    monkeypatch.chdir(ws)
    with pytest.raises(SystemExit) as exit_info:
        stage.run_stage("aggregate", stage.main, argv=[])
    line = one_error_line(capsys.readouterr().err, "aggregate")
    assert exit_info.value.code == 2 and "permission denied for data/aggregate" in line
    assert "chmod -R u+rwX data/aggregate" in line
    assert (ws / "data/aggregate/previous.txt").read_bytes() == previous


def test_output_folder_in_the_way_is_one_line(ws: Path) -> None:
    _aggregate_inputs(ws)
    (ws / "data/aggregate").write_text("a file where the output folder belongs")
    line = one_error_line(run_script("aggregate", ws).stderr, "aggregate")
    assert "data/aggregate is in the way" in line


# Numbers that were once wrong: the statistical unit is the window.
def test_aggregate_refuses_records_of_an_unfinished_run(tmp_path: Path) -> None:
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    infer_dir = tmp_path / "data" / "infer"
    infer_dir.mkdir(parents=True)
    row = infer_record(run_id="abc", task="qa", task_kind="qa", item_id="qa-0", prediction="x")
    (infer_dir / "requests.jsonl").write_text(json.dumps(row) + "\n")
    env = {**os.environ, "LLM_ENERGY_ROOT": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, str(REPO / "stages" / "aggregate.py")],
        env=env,
        capture_output=True,
        text=True,
    )
    assert (
        proc.returncode == 2 and "did not finish" in proc.stderr and "Traceback" not in proc.stderr
    )
    (infer_dir / "run.json").write_text(json.dumps({"run_id": "other"}))
    proc = subprocess.run(
        [sys.executable, str(REPO / "stages" / "aggregate.py")],
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "does not belong" in proc.stderr
    assert not (tmp_path / "data" / "aggregate").exists()
