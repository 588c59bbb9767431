"""Test-wide settings: never touch the Hugging Face hub; keep GPU state files in a temp dir."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATASETS = REPO.parent / "shared" / "datasets"
# the package, the benchmarks' workspace, the shared helpers in tests/ and every test folder (a
# few tests reuse another folder's fixtures: found whatever order pytest collects them in)
TEST_DIRS = sorted(p for p in (REPO / "tests").iterdir() if p.is_dir() and p.name != "__pycache__")
for folder in (REPO / "src", REPO / "benchmarks", REPO / "tests", *TEST_DIRS):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))


@pytest.fixture(autouse=True)
def _state_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_ENERGY_STATE_DIR", str(tmp_path_factory.mktemp("state")))


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO
