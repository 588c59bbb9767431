"""Shared glue for stage scripts: params loading, validation, one-line errors.

Stages run under `dvc repro` and as plain `python stages/<name>.py [key=value ...]` (the GPU host
has neither DVC nor Hydra), so params come from the composed params.yaml plus optional overrides.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Plain `python stages/x.py` from a checkout without `pip install -e .` still finds the package.
if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))

from llm_energy.config import Config, ConfigError, apply_overrides, load_config  # noqa: E402
from llm_energy.io.files import read_yaml  # noqa: E402
from llm_energy.paths import ProjectPaths, project_paths  # noqa: E402

log = logging.getLogger("llm_energy")


class StageError(RuntimeError):
    """A user-facing failure: printed as one line, exit status 2, no traceback."""


def setup_logging() -> None:
    logging.basicConfig(
        level=os.environ.get("LLM_ENERGY_LOG", "INFO"), format="%(levelname)s %(name)s: %(message)s"
    )
    for noisy in ("codecarbon", "httpx", "urllib3", "filelock", "datasets", "fsspec"):
        logging.getLogger(noisy).setLevel(logging.ERROR)


def load_stage_config(argv: list[str]) -> tuple[Config, ProjectPaths]:
    paths = project_paths(os.environ.get("LLM_ENERGY_ROOT", Path.cwd()))
    # A host without Hydra can use a params file composed elsewhere (`llm-energy compose --out`).
    params_file = Path(os.environ.get("LLM_ENERGY_PARAMS", paths.params))
    if not params_file.exists():
        raise StageError(
            f"{params_file} not found: run from the repository root (where dvc.yaml is)"
        )
    params = apply_overrides(read_yaml(params_file) or {}, argv)
    return load_config(params), paths


def run_stage(
    name: str, main: Callable[[Config, ProjectPaths], None], argv: list[str] | None = None
) -> None:
    """Validate params, run the stage, and turn expected failures into one line and exit code 2."""
    setup_logging()
    from llm_energy.errors import UserFacingError

    try:
        cfg, paths = load_stage_config(list(sys.argv[1:] if argv is None else argv))
        main(cfg, paths)
    except (ConfigError, StageError, UserFacingError) as exc:
        print(f"llm-energy {name}: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        print(f"llm-energy {name}: interrupted", file=sys.stderr)
        raise SystemExit(130) from None
