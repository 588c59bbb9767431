"""`llm-energy grid --run -j N`: a study's units on this node, N at a time, without DVC's queue.

Each of N slots is a clone of this repo (`git clone --shared`, in .dvc/tmp/grid-slots) that
uses this repo's DVC cache. A unit runs in a free slot as a SLURM array task runs it
(scripts/slurm/grid-array.sbatch): reset to the baseline commit, `dvc exp run -n NAME -S ...
stats`, and its experiment ref pushed back here, where `dvc exp show` lists it. Each slot has its
own DVC lock, so units that finish together do not queue on one experiment lock (DVC's queue
retries that lock once a second: benchmarks/scaling.py).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from llm_energy.cli.dvc_fast import Forked, PreloadedDVC
from llm_energy.errors import one_line

SLOTS_DIR = Path(".dvc") / "tmp" / "grid-slots"


@dataclass
class UnitOutcome:
    name: str
    returncode: int | None = None  # None: not started (interrupted first)
    wall_s: float = 0.0
    log: Path | None = None
    error: str = ""


def exp_ref(baseline: str, name: str) -> str:
    """Where DVC keeps experiment `name` of `baseline` (refs/exps/ab/cdef.../name)."""
    return f"refs/exps/{baseline[:2]}/{baseline[2:]}/{name}"


def _git(*args: str, cwd: Path) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"git {shlex.join(args)} failed: {proc.stderr.strip()[-500:]}")
    return proc.stdout.strip()


def baseline_of(root: Path) -> str:
    """HEAD, if the tracked files are as committed: slots clone commits, not work in progress."""
    status = subprocess.run(["git", "status", "--porcelain", "-z", "--untracked-files=no"],
                            cwd=root, capture_output=True, text=True, check=True)  # fmt: skip
    if dirty := [entry[3:] for entry in status.stdout.split("\0") if entry[2:3] == " "]:
        files = ", ".join(dirty[:5])
        raise RuntimeError(
            f"uncommitted changes ({files}): commit them first; the slots run the commit, "
            "as SLURM tasks do (dvc exp run --queue would carry them in its stash)"
        )
    return _git("rev-parse", "HEAD", cwd=root)


def existing_names(root: Path, baseline: str) -> set[str]:
    refs = _git("for-each-ref", "--format=%(refname)", exp_ref(baseline, "").rstrip("/"), cwd=root)
    return {r.rsplit("/", 1)[-1] for r in refs.split()}


def make_slot(root: Path, path: Path, cache_dir: str) -> None:
    """A clone sharing this repo's objects, DVC cache and local DVC config."""
    from configobj import ConfigObj  # DVC's config format; DVC depends on it

    if not (path / ".git").is_dir():
        shutil.rmtree(path, ignore_errors=True)
        _git("clone", "-q", "--shared", "--no-checkout", str(root.resolve()), str(path), cwd=root)
    for key in ("user.name", "user.email"):
        value = subprocess.run(["git", "config", key], cwd=root, capture_output=True, text=True)
        _git("config", key, value.stdout.strip() or "llm-energy grid", cwd=path)
    (path / ".dvc").mkdir(exist_ok=True)
    local = ConfigObj(str(root / ".dvc" / "config.local"))  # empty when there is none
    cache = local.setdefault("cache", {})
    cache["dir"] = cache_dir
    if "type" not in cache and "type" not in ConfigObj(str(root / ".dvc" / "config")).get(
        "cache", {}
    ):
        cache["type"] = "reflink,hardlink,copy"  # not a copy of a model's weights per slot
    local.filename = str(path / ".dvc" / "config.local")
    local.write()


def lock_slots(root: Path) -> int:
    """An exclusive flock on the slots for this process's life (two runners would share them),
    or RuntimeError naming the runner that holds it."""
    path = root / SLOTS_DIR / "runner.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)  # not inherited by DVC
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise RuntimeError(
            f"another `llm-energy grid --run` (pid {holder}) is using {path.parent}: "
            "wait for it to end or stop it"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def unit_commands(unit: Any, baseline: str, dvc: Sequence[str], target: str) -> list[list[str]]:
    """What a slot runs for one unit (printed by --dry-run)."""
    ref = exp_ref(baseline, unit.name)
    sets = [a for o in unit.overrides for a in ("-S", o)]
    return [
        ["git", "checkout", "-q", "-f", "--detach", baseline],
        ["git", "update-ref", "-d", ref],  # an earlier try's result in this slot
        [*dvc, "exp", "run", "-n", unit.name, *sets, target],
        ["git", "push", "-q", "-f", "origin", f"{ref}:{ref}"],
    ]


class NodeRunner:
    """Runs units in `jobs` slots; Ctrl-C or SIGTERM interrupts every running unit."""

    def __init__(self, root: Path, units: Sequence[Any], jobs: int, dvc: Sequence[str],
                 target: str, baseline: str, preloaded: PreloadedDVC | None = None) -> None:  # fmt: skip
        self.root, self.units, self.jobs, self.dvc = root, list(units), jobs, list(dvc)
        self.preloaded = preloaded  # runs the `dvc` commands as forks when set
        self.target, self.baseline = target, baseline
        self.logs = root / SLOTS_DIR / "logs"
        self.outcomes = [UnitOutcome(u.name) for u in self.units]
        self._next = 0
        self._lock = threading.RLock()  # the SIGTERM handler takes it too
        self._stop, self._all_done, self._live = threading.Event(), threading.Event(), 0
        self._running: dict[int, subprocess.Popen[bytes] | Forked] = {}

    def _say(self, text: str) -> None:
        with self._lock:
            print(text, flush=True)

    def _take(self) -> int | None:
        with self._lock:
            if self._stop.is_set() or self._next >= len(self.units):
                return None
            self._next += 1
            return self._next - 1

    def _slot_loop(self, slot: int) -> None:
        path = self.root / SLOTS_DIR / f"slot-{slot}"
        try:
            while (i := self._take()) is not None:
                self._run_unit(slot, path, i)
        finally:
            with self._lock:
                self._live -= 1
                if not self._live:
                    self._all_done.set()

    def _run_unit(self, slot: int, path: Path, i: int) -> None:
        unit, outcome = self.units[i], self.outcomes[i]
        outcome.log = self.logs / f"{unit.name}.log"
        n = len(self.units)
        self._say(f"[{i + 1}/{n}] {unit.name}: started in slot {slot} (log: {outcome.log})")
        t0 = time.monotonic()
        outcome.log.write_bytes(b"")
        with outcome.log.open("ab") as log:  # appending: a DVC fork writes to it by path
            for cmd in unit_commands(unit, self.baseline, self.dvc, self.target):
                log.write(f"$ {shlex.join(cmd)}\n".encode())
                log.flush()
                with self._lock:  # a finished run is still pushed; nothing starts after a stop
                    if self._stop.is_set() and cmd[1] != "push":
                        outcome.error = "interrupted"
                        break
                    proc = self._start(cmd, path, log, outcome.log)
                    self._running[slot] = proc
                code = proc.wait()
                with self._lock:
                    self._running.pop(slot, None)
                if code != 0:
                    outcome.error = f"`{shlex.join(cmd[:4])} ...` exited {code}"
                    break
        outcome.wall_s = time.monotonic() - t0
        outcome.returncode = 1 if outcome.error else 0
        if not outcome.error:
            self._say(f"[{i + 1}/{n}] {unit.name}: done in {outcome.wall_s:.1f} s")
        else:
            self._say(f"[{i + 1}/{n}] {unit.name}: FAILED in {outcome.wall_s:.1f} s: "
                      f"{outcome.error}; {last_line(outcome.log)}")  # fmt: skip

    def _start(self, cmd: list[str], cwd: Path, log: BinaryIO, log_path: Path) -> Any:
        if self.preloaded and cmd[: len(self.dvc)] == self.dvc:
            return self.preloaded.start(cmd[len(self.dvc) :], cwd, log_path)
        return subprocess.Popen(cmd, cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip

    @property
    def interrupted(self) -> bool:
        return self._stop.is_set()

    def interrupt(self) -> None:
        """No new units; SIGINT to every running unit's process group: DVC stops as on Ctrl-C
        and the infer stage restores the clocks it changed."""
        with self._lock:
            self._stop.set()
            for proc in self._running.values():
                try:
                    os.killpg(proc.pid, signal.SIGINT)
                except ProcessLookupError:  # a fork that ended before leading its group
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(proc.pid, signal.SIGINT)

    def run(self) -> list[UnitOutcome]:
        self.logs.mkdir(parents=True, exist_ok=True)
        self._live = min(self.jobs, len(self.units))
        if not self._live:
            return self.outcomes
        for s in range(self._live):
            threading.Thread(target=self._slot_loop, args=(s,), daemon=True).start()
        # Event.wait, not Thread.join: a KeyboardInterrupt inside join() can mark a running
        # thread as stopped (CPython 3.11), and its unit would go unreported.
        try:
            while not self._all_done.wait(0.2):
                pass
        except KeyboardInterrupt:
            self._say("interrupted: stopping the running units (their clocks are restored) ...")
            self.interrupt()
            while not self._all_done.wait(0.2):
                pass
        return self.outcomes


def last_line_of(text: str) -> str:
    lines = [x for x in text.splitlines() if x.strip()]
    return one_line(lines[-1], 300) if lines else "no output"


def last_line(log: Path | None) -> str:
    """The log's last non-empty line, for the one-line failure report."""
    try:
        text = log.read_text(errors="replace") if log else ""
    except OSError:
        text = ""
    return f"last line: {last_line_of(text)}"


def run_units(root: Path, units: Sequence[Any], jobs: int, target: str, dry_run: bool,
              before: Callable[[], None] = lambda: None, dvc: Sequence[str] = ()) -> int:  # fmt: skip
    """`grid --run`: 0 when every unit ran (or had run), 1 when one failed, 130 interrupted.
    `before()` runs once the units are known to run (`grid` starts the stage server there);
    `dvc` is the command that runs DVC (tests pass a stand-in); by default DVC runs as forks
    of one process that imported it (cli/dvc_fast.py)."""
    preloaded = None if dvc else PreloadedDVC()
    dvc = list(dvc) or [sys.executable, "-m", "llm_energy.cli.dvc_fast"]
    try:
        baseline = baseline_of(root)
        done = existing_names(root, baseline)
    except RuntimeError as exc:
        print(f"llm-energy grid: error: {exc}", file=sys.stderr)
        return 2
    todo = [u for u in units if u.name not in done]
    if len(todo) < len(units):
        skipped = ", ".join(u.name for u in units if u.name in done)
        print(f"skipping {len(units) - len(todo)} unit(s) already run on {baseline[:7]}: "
              f"{skipped} (`dvc exp remove NAME` to run one again)")  # fmt: skip
    if dry_run:
        for unit in todo:
            for cmd in unit_commands(unit, baseline, dvc, target):
                print(f"would run in a slot: {shlex.join(cmd)}")
        return 0
    if not todo:
        return 0
    jobs = max(1, min(jobs, len(todo)))
    try:
        lock_fd = lock_slots(root)
    except (RuntimeError, OSError) as exc:
        print(f"llm-energy grid: error: {exc}", file=sys.stderr)
        return 2
    try:
        return _run_locked(root, todo, jobs, dvc, target, baseline, before, preloaded)
    finally:
        os.close(lock_fd)  # releases the slots


def _run_locked(root: Path, todo: Sequence[Any], jobs: int, dvc: list[str], target: str,
                baseline: str, before: Callable[[], None], preloaded: PreloadedDVC | None) -> int:  # fmt: skip
    before()
    try:
        cache = subprocess.run([*dvc, "cache", "dir"], cwd=root, capture_output=True, text=True)
        if cache.returncode != 0:
            raise RuntimeError(f"`dvc cache dir` failed: {last_line_of(cache.stderr)}")
        for s in range(jobs):
            make_slot(root, root / SLOTS_DIR / f"slot-{s}", cache.stdout.strip())
    except (RuntimeError, OSError) as exc:
        print(f"llm-energy grid: error: slots not ready: {exc}", file=sys.stderr)
        return 2
    print(f"{len(todo)} unit(s) in {jobs} slot(s) on {baseline[:7]}; progress: "
          "llm-energy grid status", flush=True)  # fmt: skip
    runner = NodeRunner(root, todo, jobs, dvc, target, baseline, preloaded)
    previous = signal.signal(signal.SIGTERM, lambda *_: runner.interrupt())
    try:
        outcomes = runner.run()
    finally:
        signal.signal(signal.SIGTERM, previous)
    failed = [o for o in outcomes if o.returncode not in (0, None)]
    skipped_now = [o for o in outcomes if o.returncode is None]
    ok = len(outcomes) - len(failed) - len(skipped_now)
    print(f"{ok} unit(s) done, {len(failed)} failed, {len(skipped_now)} not started"
          + "".join(f"\n  {o.name}: {o.error or 'failed'} (log: {o.log})" for o in failed)
          + ("\nrun the same command again to run what is missing" if failed or skipped_now
             else "\nresults: dvc exp show; llm-energy compare"))  # fmt: skip
    if runner.interrupted:
        return 130
    return 1 if failed else 0
