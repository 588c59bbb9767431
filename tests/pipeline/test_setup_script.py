"""`scripts/setup.sh`: the CPU set-up stays the default, `--cuda` installs the same pinned torch as
a CUDA build, a wrong option is one line and exit 2 (all in `--dry-run`: nothing is installed)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def setup(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(REPO / "scripts" / "setup.sh"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


def pinned_torch() -> str:
    text = (REPO / "pyproject.toml").read_text()
    found = re.search(r'"torch==([^"]+)"', text)
    assert found is not None
    return found.group(1)


def test_default_is_the_cpu_setup() -> None:
    got = setup("--dry-run")
    assert got.returncode == 0, got.stderr
    assert "pip install -q -e .[dev]" in got.stdout
    assert "download.pytorch.org" not in got.stdout and "torch==" not in got.stdout


def test_cuda_installs_the_pinned_torch_from_the_cuda_index() -> None:
    got = setup("--cuda", "--dry-run")
    assert got.returncode == 0, got.stderr
    lines = got.stdout.splitlines()
    torch_line = next(i for i, x in enumerate(lines) if "torch==" in x)
    assert f"torch=={pinned_torch()}+cu130" in lines[torch_line]
    assert "nvidia-ml-py" in lines[torch_line]
    assert "--extra-index-url https://download.pytorch.org/whl/cu130" in lines[torch_line]
    # the CUDA torch first, then the same rest as the CPU set-up
    assert lines[torch_line + 1 :] == setup("--dry-run").stdout.splitlines()[-2:]


def test_torch_cuda_picks_another_cuda_build() -> None:
    got = setup("--dry-run", "--cuda", env=os.environ | {"TORCH_CUDA": "cu128"})
    assert f"torch=={pinned_torch()}+cu128" in got.stdout and "/whl/cu128" in got.stdout


def test_wrong_option_is_one_line_and_exit_2() -> None:
    got = setup("--gpu")
    assert got.returncode == 2 and got.stdout == ""
    assert got.stderr.count("\n") == 1 and "--gpu" in got.stderr and "--cuda" in got.stderr
