"""What a run records about the code it ran: the commit, dirty only when source changed."""

from __future__ import annotations

import subprocess
from pathlib import Path

from llm_energy.run.provenance import git_commit


def _git(root: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)


def test_what_the_pipeline_writes_does_not_make_the_commit_dirty(tmp_path: Path) -> None:
    for name in ("dvc.lock", "params.yaml", "reports/metrics.json", "src/code.py"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("a\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "add", "-A")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x")
    head = git_commit(tmp_path)
    assert head is not None and len(head) == 40
    for name in ("dvc.lock", "params.yaml", "reports/metrics.json"):  # dvc repro / exp run -S
        (tmp_path / name).write_text("b\n")
    assert git_commit(tmp_path) == head
    (tmp_path / "src" / "code.py").write_text("b\n")  # the code itself
    assert git_commit(tmp_path) == f"{head}-dirty"
