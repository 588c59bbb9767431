"""The fault-handling building blocks: one-line errors, readers, staged output folders, feasibility.

test_faults_io.py reproduces each fault through the stages; these are the unit tests of the parts
(`run_stage`'s mapping, `staged_dir`, the readers, `clock_cap_problem`).
"""

from __future__ import annotations

import errno
import importlib.util
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from helpers import compose
from llm_energy.errors import InputFileError, OutputError
from llm_energy.io.files import read_json, read_jsonl, read_yaml, staged_dir

REPO = Path(__file__).resolve().parents[2]


def sentinel(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "previous.txt").write_text("previous results\n")


@pytest.mark.parametrize(
    ("overrides", "found", "privileged", "expected"),
    [
        (("gpu.backend=cpu", "gpu.freq=1200"), False, True, "cpu backend has no controllable"),
        (("gpu.freq=1200",), False, True, "gpu.backend=auto found no NVIDIA GPU"),
        (("gpu.backend=nvml", "gpu.freq=1200"), False, True, "NVML finds no NVIDIA GPU"),
        (("gpu.backend=nvml", "gpu.mem_freq=5000"), True, False, "CAP_SYS_ADMIN"),
        (("sweep=freqs", "gpu.backend=cpu"), False, True, "sweep.freqs_mhz"),
        (("gpu.freq=1200",), True, True, None),
        (("gpu.backend=cpu", "gpu.freq=1200", "gpu.control=observe"), False, True, None),
        (("gpu=simulated", "gpu.freq=1200"), False, False, None),
        (("gpu.backend=cpu",), False, False, None),
    ],
)
def test_clock_cap_problem(
    overrides: tuple[str, ...], found: bool, privileged: bool, expected: str | None
) -> None:
    from llm_energy.config.feasibility import clock_cap_problem
    from llm_energy.config.settings import load_config

    cfg = load_config(compose("experiment=ci", *overrides))
    problem = clock_cap_problem(cfg, nvml_gpu_found=found, privileged=privileged)
    assert problem is None if expected is None else expected in (problem or "")


def test_read_only_file_system_names_the_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    final = tmp_path / "out"
    sentinel(final)
    real_mkdir = Path.mkdir

    def erofs(self: Path, *a: Any, **k: Any) -> None:
        if ".out.tmp-" in self.name:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
        real_mkdir(self, *a, **k)

    monkeypatch.setattr(Path, "mkdir", erofs)
    pattern = r"out is on a read-only file system.*unchanged"
    with pytest.raises(OutputError, match=pattern), staged_dir(final):
        pass


def test_output_under_a_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    with pytest.raises(OutputError, match="is in the way"), staged_dir(tmp_path / "afile" / "out"):
        pass


# ------------------------------------------------------------------ staged_dir and readers


def test_staged_dir_swaps_on_success_and_keeps_previous_on_failure(tmp_path: Path) -> None:
    final = tmp_path / "out"
    sentinel(final)
    with pytest.raises(RuntimeError), staged_dir(final) as tmp:
        (tmp / "new.txt").write_text("half")
        raise RuntimeError("boom")
    assert sorted(p.name for p in final.iterdir()) == ["previous.txt"]
    with staged_dir(final) as tmp:
        (tmp / "new.txt").write_text("whole")
    assert sorted(p.name for p in final.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temp or old folder left


def test_staged_dir_keeps_partial_measurements_and_clears_stale_temps(tmp_path: Path) -> None:
    final, partial = tmp_path / "infer", tmp_path / "infer.partial"
    stale = tmp_path / ".infer.tmp-999999999"  # a pid that cannot be alive
    stale.mkdir()
    with pytest.raises(KeyboardInterrupt), staged_dir(final, keep_failed=partial) as tmp:
        (tmp / "requests.jsonl").write_text('{"a": 1}\n')
        raise KeyboardInterrupt
    assert (partial / "requests.jsonl").read_text() == '{"a": 1}\n'
    assert not stale.exists() and not final.exists()


def test_readers_name_file_line_and_fix(tmp_path: Path) -> None:
    bad = tmp_path / "x.jsonl"
    bad.write_bytes(b'{"a": 1}\n\n[1, 2]\n')
    with pytest.raises(InputFileError, match=r"x.jsonl line 3: expected a JSON object"):
        read_jsonl(bad)
    bad.write_bytes(b'{"a": 1}\n{"a": "caf\xe9"}\n')
    with pytest.raises(InputFileError, match=r"line 2: not valid UTF-8 \(byte 0xe9\)"):
        read_jsonl(bad)
    doc = tmp_path / "x.json"
    doc.write_text("")
    with pytest.raises(InputFileError, match="empty file"):
        read_json(doc)
    doc.write_text("[1]")
    with pytest.raises(InputFileError, match="expected a JSON object, got list"):
        read_json(doc, expect=dict)
    conf = tmp_path / "x.yaml"
    conf.write_text("a: 1\nb: [2\nc: 3\n")
    with pytest.raises(InputFileError, match=r"x.yaml line \d+: YAML syntax error"):
        read_yaml(conf, remedy="fix it")
    with pytest.raises(InputFileError, match="file not found; run the thing"):
        read_jsonl(tmp_path / "missing.jsonl", remedy="run the thing")


def test_wrapper_maps_faults_to_one_line_and_keeps_bug_tracebacks(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(compose("experiment=ci")))
    monkeypatch.syspath_prepend(str(REPO / "stages"))
    spec = importlib.util.spec_from_file_location("stage_common", REPO / "stages/_common.py")
    assert spec is not None and spec.loader is not None
    common = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(common)
    monkeypatch.chdir(tmp_path)
    cases = {
        OSError(errno.ENOSPC, "No space left on device"): "no space left on the device",
        OSError(errno.EROFS, "Read-only file system", "/ro/x"): "/ro/x is on a read-only",
        PermissionError(errno.EACCES, "Permission denied", "/p"): "permission denied for /p",
        FileExistsError(errno.EEXIST, "File exists", "/q"): "/q is in the way",
        InputFileError("f.json", "broken", "fix it", line=3): "f.json line 3: broken; fix it",
    }
    for exc, expected in cases.items():

        def fail(cfg: Any, paths: Any, exc: BaseException = exc) -> None:
            raise exc

        with pytest.raises(SystemExit) as info:
            common.run_stage("demo", fail, argv=[])
        assert info.value.code == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err and err.count("\n") == 1
        assert err.startswith("llm-energy demo: error: ") and expected in err

    def bug(cfg: Any, paths: Any) -> None:
        raise KeyError("a bug keeps its traceback")

    with pytest.raises(KeyError):
        common.run_stage("demo", bug, argv=[])
    monkeypatch.setenv("LLM_ENERGY_DEBUG", "1")
    with pytest.raises(OSError):
        common.run_stage("demo", lambda c, p: (_ for _ in ()).throw(OSError(errno.EIO, "x")), [])


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_a_zombie_is_not_a_live_process() -> None:
    # a child that has exited but was not reaped: os.kill(pid, 0) still succeeds on it, and a
    # container whose PID 1 does not reap keeps it so for ever; it restores no clocks
    import subprocess
    import sys
    import time

    from llm_energy.io.files import pid_alive

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    state, deadline = "", time.monotonic() + 20
    while state != "Z" and time.monotonic() < deadline:
        time.sleep(0.02)
        state = Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    assert state == "Z"
    os.kill(child.pid, 0)  # the old check: "alive"
    assert not pid_alive(child.pid)
    child.wait()  # reaped: gone
    assert not pid_alive(child.pid)
    assert pid_alive(os.getpid())
