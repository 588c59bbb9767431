"""Shared glue for stage scripts: params loading, validation, one-line errors.

Stages run under `dvc repro` and as plain `python stages/<name>.py [key=value ...]` (the GPU host
has neither DVC nor Hydra), so params come from the composed params.yaml plus optional overrides.

`run_stage` is the one place that turns expected failures into one line on stderr and exit
status 2: bad params, unusable input files, unavailable hardware, a full disk or a read-only
output. Set LLM_ENERGY_DEBUG=1 to get the traceback as well.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Plain `python stages/x.py` from a checkout without `pip install -e .` still finds the package.
if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))

from llm_energy.cli.stage_server import hand_over  # noqa: E402

# An analysis stage runs in a fork of `llm-energy stage-server` (libraries imported) if one is up.
hand_over(Path(sys.argv[0]).stem)

from llm_energy.config.settings import Config, ConfigError, apply_overrides, load_config  # noqa: E402
from llm_energy.errors import (  # noqa: E402
    InputFileError,
    UserFacingError,
    describe_os_error,
    one_line,
    shown,
)
from llm_energy.io.files import read_yaml  # noqa: E402
from llm_energy.paths import ProjectPaths, project_paths  # noqa: E402

log = logging.getLogger("llm_energy")

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130
RESTORE_PARAMS = (
    "restore it with `git checkout params.yaml` (a refused `dvc exp run -S ...` leaves its "
    "-S values there) or regenerate it with `llm-energy compose`"
)


class StageError(RuntimeError):
    """A user-facing failure: printed as one line, exit status 2, no traceback."""


def setup_logging() -> None:
    logging.basicConfig(
        level=os.environ.get("LLM_ENERGY_LOG", "INFO"), format="%(levelname)s %(name)s: %(message)s"
    )
    for noisy in ("codecarbon", "httpx", "urllib3", "filelock", "datasets", "fsspec"):
        logging.getLogger(noisy).setLevel(logging.ERROR)


def load_params(argv: list[str], paths: ProjectPaths) -> dict:
    """params.yaml (or $LLM_ENERGY_PARAMS) with `key=value` overrides applied."""
    # A host without Hydra can use a params file composed elsewhere (`llm-energy compose --out`).
    params_file = Path(os.environ.get("LLM_ENERGY_PARAMS", paths.params))
    if not params_file.exists():
        raise StageError(
            f"{shown(params_file)} not found: run from the repository root (where dvc.yaml is)"
        )
    params = read_yaml(params_file, remedy=f"fix that line, or {RESTORE_PARAMS}")
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise InputFileError(
            params_file,
            f"expected a mapping of sections at the top level, got {type(params).__name__}",
            RESTORE_PARAMS,
        )
    return apply_overrides(params, argv)


def load_stage_config(argv: list[str]) -> tuple[Config, ProjectPaths]:
    paths = project_paths(os.environ.get("LLM_ENERGY_ROOT", Path.cwd()))
    return load_config(load_params(argv, paths)), paths


def error_line(exc: BaseException) -> str | None:
    """The one line for an expected failure, or None for a bug (which keeps its traceback)."""
    if isinstance(exc, ConfigError | StageError | UserFacingError):
        return one_line(str(exc))
    if isinstance(exc, OSError):  # disk full, read-only or missing paths
        return one_line(describe_os_error(exc))
    return None


def run_stage(
    name: str,
    main: Callable[[Config, ProjectPaths], None],
    argv: list[str] | None = None,
    *,
    hint: str | None = None,
) -> None:
    """Load and validate params, run `main`, and end expected failures in one line, exit 2.

    `hint` is appended to that line (the validate stage says how to get params.yaml back).
    """
    setup_logging()
    try:
        cfg, paths = load_stage_config(list(sys.argv[1:] if argv is None else argv))
        main(cfg, paths)
    except KeyboardInterrupt:
        with contextlib.suppress(ValueError):  # Ctrl-C pressed again: no traceback now
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        print(f"llm-energy {name}: interrupted", file=sys.stderr)
        raise SystemExit(EXIT_INTERRUPTED) from None
    except Exception as exc:
        line = error_line(exc)
        if line is None or os.environ.get("LLM_ENERGY_DEBUG"):
            raise
        suffix = f"; {hint}" if hint else ""
        print(f"llm-energy {name}: error: {line}{suffix}", file=sys.stderr)
        raise SystemExit(EXIT_USER_ERROR) from None
