"""DVC with less CPU per unit: `python -m llm_energy.cli.dvc_fast ARGS` is `dvc ARGS`, and
`PreloadedDVC` runs it as forks of a process that imported DVC once (`grid --run`).

- After each stage DVC reads dvc.lock with ruamel's pure-Python round-trip parser, to keep
  comments a machine-written lock has none of: ~0.15 s a stage. Here dvc.lock alone is read with
  DVC's C-backed `parse_yaml` and written by DVC's own dumper: the same bytes
  (tests/cli/test_dvc_fast.py). Other files keep the round trip.
- A run parses params.yaml ~40 times and dvc.lock ~16 times (5 distinct texts): here each
  distinct text is parsed once and copied after (~0.6 s a unit).
- DVC's imports (celery, networkx, hydra, dulwich, ...) cost ~0.5 s a process.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

# What `dvc exp run` imports (all but ~40 small modules, measured with DVC 3.67)
PRELOAD = ("dvc.cli.parser", "dvc.repo.experiments.run", "dvc.repo.experiments.executor.local",
           "dvc.repo.experiments.queue.workspace", "dvc.repo.experiments.queue.celery",
           "dvc.repo.reproduce", "dvc.repo.index", "dvc.repo.plots", "dvc.repo.stage",
           "dvc.repo.graph", "dvc.repo.open_repo", "dvc.repo.brancher", "dvc.repo.datasets",
           "dvc.repo.artifacts", "dvc.dvcfile", "dvc_data.fs", "dulwich.worktree",
           "dvc.stage.cache", "dvc.cachemgr", "dvc.data_cloud", "dvc.analytics", "dvc.compare",
           "dvc.utils.strictyaml", "dvc.utils.hydra", "dvc_data.index.checkout",
           "dvc_data.hashfile.db.local", "dulwich.porcelain", "dulwich.stash", "pygit2",
           "ruamel.yaml", "_ruamel_yaml", "hydra.compose", "hydra.initialize",
           "hydra._internal.core_plugins", "celery.canvas", "networkx", "requests")  # fmt: skip


def install() -> bool:
    """Patch DVC's YAML reading as the module says; False (and nothing changed) when DVC's
    functions are not the ones this was written against."""
    import dvc.dvcfile
    from dvc.utils import serialize, strictyaml
    from dvc.utils.serialize import _yaml  # where load_yaml looks parse_yaml up

    if getattr(dvc.dvcfile.modify_yaml, "llm_energy_fast", False):
        return True
    parse, homes = _yaml.parse_yaml, (_yaml, serialize, strictyaml)
    if (
        dvc.dvcfile.modify_yaml is not serialize.modify_yaml
        or any(getattr(home, "parse_yaml", None) is not parse for home in homes)
        or list(inspect.signature(parse).parameters) != ["text", "path", "typ"]
        or list(inspect.signature(serialize.dump_yaml).parameters)[:3] != ["path", "data", "fs"]
    ):
        return False
    parsed: dict[str, Any] = {}

    def parse_yaml(text: str, path: Any, typ: str = "safe") -> Any:
        if typ != "safe":
            return parse(text, path, typ)
        data = parsed.get(text)
        if data is None:
            if len(parsed) >= 64:
                parsed.clear()
            data = parsed[text] = parse(text, path, typ)
        return copy.deepcopy(data)  # callers may change what they get

    @contextlib.contextmanager
    def modify_yaml(path: Any, fs: Any = None) -> Iterator[Any]:
        if os.path.basename(os.fspath(path)) != "dvc.lock":
            with serialize.modify_yaml(path, fs=fs) as data:
                yield data
            return
        data = {}
        if fs.exists(os.fspath(path)) if fs else os.path.exists(path):
            with (fs.open if fs else open)(path, encoding="utf-8") as f:
                data = parse_yaml(f.read(), path)
        yield data
        serialize.dump_yaml(path, data, fs=fs)

    modify_yaml.llm_energy_fast = True  # type: ignore[attr-defined]
    dvc.dvcfile.modify_yaml = modify_yaml  # type: ignore[assignment]
    for home in homes:
        home.parse_yaml = parse_yaml  # type: ignore[attr-defined]
    return True


def main(argv: Sequence[str] | None = None) -> int:
    from dvc.cli import main as dvc_main

    install()
    return int(dvc_main(list(sys.argv[1:] if argv is None else argv)) or 0)


def _forked(argv: list[str], cwd: str, env: dict[str, str], log: str) -> None:
    """A fork's body: its own session (the runner signals the group), output to `log`."""
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)  # before start() returns
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    # Ctrl-C semantics even when the runner started with SIGINT ignored (a background job)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    os.setsid()
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    sys.argv = ["dvc", *argv]  # DVC names it in its lock messages
    sys.exit(main(argv))


class Forked:
    """A DVC fork, waited for like a Popen: `wait()` gives its exit code (-N: signal N)."""

    def __init__(self, process: Any, lock: threading.Lock) -> None:
        self.process, self.pid, self.lock = process, process.pid, lock
        try:  # the fork itself: waited for even if the forkserver dies (a SIGTERM to the group)
            self.pidfd: int | None = os.pidfd_open(self.pid)
        except ProcessLookupError:
            self.pidfd = None

    def wait(self) -> int:
        if self.pidfd is not None:
            select.select([self.pidfd], [], [])
            os.close(self.pidfd)
            self.pidfd = None
        with self.lock:  # one reader of the forkserver's exit codes at a time (CPython gh-130895)
            self.process.join()
        return int(self.process.exitcode)


class PreloadedDVC:
    """Starts `dvc ARGS` as forks of one process that imported DVC (multiprocessing's
    forkserver, started on first use and ended with this process)."""

    def __init__(self) -> None:
        import multiprocessing

        self.context = multiprocessing.get_context("forkserver")  # __main__: once, not per fork
        self.context.set_forkserver_preload(["__main__", *PRELOAD, __name__])
        self.lock = threading.Lock()  # start() polls every child: not beside a join()

    def start(self, args: Sequence[str], cwd: Path, log: Path,
              env: Mapping[str, str] | None = None) -> Forked:  # fmt: skip
        """`dvc ARGS` in `cwd`, once the fork leads its process group (a SIGINT to the group
        then reaches DVC, not a fork that still ignores it as the server does)."""
        env = dict(os.environ if env is None else env)
        process = self.context.Process(target=_forked, args=(list(args), str(cwd), env, str(log)))
        with self.lock:
            process.start()
            deadline = time.monotonic() + 10
            while process.is_alive() and time.monotonic() < deadline:
                with contextlib.suppress(ProcessLookupError):
                    if os.getpgid(process.pid) == process.pid:
                        break
                time.sleep(0.002)
            return Forked(process, self.lock)


if __name__ == "__main__":
    sys.exit(main())
