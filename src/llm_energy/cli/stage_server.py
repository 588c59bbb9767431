"""The stage server: analysis stages run in a fork of a process that has imported their libraries.

A fresh `aggregate`, `stats` or `plots` spends 1-2 s of CPU importing pandas, scipy and
statsmodels. `llm-energy stage-server` imports them once and listens on an abstract Unix socket
named after the user, the interpreter and the state dir; a stage that reaches it hands over its
argv, cwd, environment, sys.path and stdio, and exits with the status of the fork that ran it
(else, or with LLM_ENERGY_STAGE_SERVER=off, it runs itself). The fork drops every llm_energy
module, so it runs the workspace code DVC hashed. Stages that touch hardware are never served."""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import os
import random
import runpy
import selectors
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

SERVED_STAGES = frozenset({"aggregate", "stats", "plots"})
PRELOAD = ("numpy", "pandas", "yaml", "tabulate", "scipy.stats",  # scipy.stats: scipy.special too
           "statsmodels.regression.linear_model", "statsmodels.stats.multitest")  # fmt: skip
# Variables these libraries (or Python) read while importing: a stage whose values differ from
# the server's runs itself, since the fork would carry the server's.
IMPORT_ENV_PREFIXES = ("PYTHON", "OMP_", "OPENBLAS_", "MKL_", "NUMEXPR_", "NPY_", "SCIPY_", "LD_")
SWITCH_ENV = "LLM_ENERGY_STAGE_SERVER"  # "off": never hand over
SERVED_ENV = "LLM_ENERGY_STAGE_SERVED"  # set inside a served fork
DEFAULT_IDLE_EXIT_S = 3600.0
MAX_MESSAGE = 1 << 20
PROTOCOL = 1  # in the socket's name: a client never talks to a server of another protocol


def server_key(state_dir: str | None = None) -> str:
    """One server per user, interpreter and state dir ($LLM_ENERGY_STATE_DIR unless given)."""
    from llm_energy.paths import STATE_DIR_ENV

    state = state_dir if state_dir is not None else os.environ.get(STATE_DIR_ENV)
    ident = [PROTOCOL, os.getuid(), os.path.realpath(sys.executable), sys.prefix, sys.version]
    ident.append(os.path.realpath(state or "-"))
    return hashlib.sha256(repr(ident).encode()).hexdigest()[:16]


def address() -> bytes:
    return f"\0llm-energy-stage-server-{server_key()}".encode()


def log_path(state_dir: str | None = None) -> Path:
    from llm_energy.paths import resolve_state_dir

    return resolve_state_dir(state_dir) / "stage-server" / f"{server_key(state_dir)}.log"


def read_log(state_dir: str | None = None) -> list[dict[str, Any]]:
    """The log's entries, oldest first: each start (pid, preload CPU), stage served or refused."""
    lines = log_path(state_dir).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.startswith("{")]


def _send(sock: socket.socket, obj: dict[str, Any]) -> None:
    sock.send(json.dumps(obj).encode())


def _recv(sock: socket.socket) -> dict[str, Any]:
    """The next message, or {} when the other side has gone."""
    with contextlib.suppress(ConnectionError):
        return json.loads(sock.recv(MAX_MESSAGE) or b"{}")
    return {}


def _connect() -> socket.socket | None:
    if sys.platform != "linux":  # abstract sockets and pidfds are Linux's
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        sock.connect(address())
    except OSError:
        sock.close()
        return None
    return sock


# --- the stage's side ------------------------------------------------------------------------


def hand_over(stage: str) -> None:
    """Run this stage in the server's fork if a server serves this interpreter; return only when
    it runs here (not an analysis stage, no server, or refused)."""
    off = os.environ.get(SERVED_ENV) or os.environ.get(SWITCH_ENV) == "off"
    sock = None if off or stage not in SERVED_STAGES else _connect()
    if sock is None:
        return
    with sock:
        stdio = [[getattr(s, "encoding", None), getattr(s, "errors", None)]
                 for s in (sys.stdin, sys.stdout, sys.stderr)]  # fmt: skip
        request = {"argv": sys.argv, "cwd": os.getcwd(), "env": dict(os.environ),
                   "path": sys.path, "flags": list(sys.flags), "executable": sys.executable,
                   "stdio": stdio}  # fmt: skip
        try:
            socket.send_fds(sock, [json.dumps(request).encode()], [0, 1, 2])
            if "pid" not in _recv(sock):
                return  # refused (the reason is in the server's log): run here
        except OSError:
            return

        def forward(signum: int, _frame: object) -> None:
            with contextlib.suppress(OSError):
                _send(sock, {"signal": signum})

        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, forward)
        result = _recv(sock)
    rc = int(result.get("returncode", 1))
    if "returncode" not in result:
        print(f"llm-energy {stage}: error: the stage server stopped mid-run", file=sys.stderr)
    if rc < 0:  # killed by a signal: end the same way
        signal.signal(-rc, signal.SIG_DFL)
        os.kill(os.getpid(), -rc)
    os._exit(rc)


# --- the server's side -----------------------------------------------------------------------


def refusal(req: dict[str, Any], stamps: dict[str, int]) -> str | None:
    if req.get("executable") != sys.executable or req.get("flags") != list(sys.flags):
        return "another interpreter or other interpreter flags"
    env = req.get("env", {})
    for name in sorted(set(env) | set(os.environ)):
        if name.startswith(IMPORT_ENV_PREFIXES) and env.get(name) != os.environ.get(name):
            return f"${name} differs from the server's"
    if library_stamps() != stamps:
        return "the preloaded libraries changed on disk: restart the server"
    return None


def library_stamps() -> dict[str, int]:  # an upgrade rewrites each package's __init__
    tops = {name.split(".")[0] for name in PRELOAD}  # numpy, pandas, scipy, statsmodels
    return {t: os.stat(sys.modules[t].__file__ or "").st_mtime_ns for t in tops}


def _only_in_fork(body: Callable[..., None], *args: Any) -> NoReturn:
    """Run a fork's body; whatever happens, the fork ends here (never back in the server's loop)."""
    code = 1
    try:
        body(*args)
        code = 0
    except BaseException:
        traceback.print_exc()
    finally:
        os._exit(code)


def _run_fork(req: dict[str, Any], fds: list[int]) -> None:
    """In the fork: become the stage's process, run its script, exit with its status."""
    import numpy

    for target, fd in zip((0, 1, 2), fds, strict=True):
        os.dup2(fd, target)
        os.close(fd)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    os.chdir(req["cwd"])
    os.environ.clear()
    os.environ.update(req["env"], **{SERVED_ENV: "1"})
    sys.argv, sys.path[:] = list(req["argv"]), req["path"]
    sys.dont_write_bytecode = bool(req["env"].get("PYTHONDONTWRITEBYTECODE"))
    for name in [m for m in sys.modules if m.split(".")[0] in ("llm_energy", "_common")]:
        del sys.modules[name]
    # as Python opens them: stdout line-buffered on a terminal only, stderr always
    (ein, rin), (eout, rout), (eerr, rerr) = req["stdio"]
    sys.stdin = sys.__stdin__ = open(0, encoding=ein, errors=rin, closefd=False)  # noqa: SIM115
    line = 1 if os.isatty(1) else -1
    sys.stdout = sys.__stdout__ = open(1, "w", line, eout, rout, closefd=False)  # noqa: SIM115
    sys.stderr = sys.__stderr__ = open(2, "w", 1, eerr, rerr, closefd=False)  # noqa: SIM115
    random.seed()  # a fresh process's generators, not copies of the server's
    numpy.random.seed()
    code = 0
    try:
        runpy.run_path(sys.argv[0], run_name="__main__")
    except SystemExit as exc:  # as the interpreter ends on one
        code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
        if not isinstance(exc.code, int | None):
            print(exc.code, file=sys.stderr)
    except KeyboardInterrupt:
        code = 130
    except BaseException:
        sys.excepthook(*sys.exc_info())
        code = 1
    with contextlib.suppress(Exception):
        threading._shutdown()  # type: ignore[attr-defined]  # what interpreter exit does
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)


def _supervise(conn: socket.socket, req: dict[str, Any], fds: list[int]) -> None:
    """In a fork of the server: run the stage in its own fork, relay signals, report its end."""
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:
        conn.close()
        _only_in_fork(_run_fork, req, fds)
    for fd in fds:
        os.close(fd)
    _send(conn, {"pid": pid})
    with selectors.DefaultSelector() as sel:
        sel.register(conn, selectors.EVENT_READ)
        try:
            sel.register(os.pidfd_open(pid), selectors.EVENT_READ)
            timeout_s = None
        except OSError:  # a kernel before 5.3: poll for the end instead
            timeout_s = 0.2
        while True:
            for key, _ in sel.select(timeout_s):
                if key.fileobj is conn:
                    msg = _recv(conn)
                    if not msg:  # the stage's process died: take its fork down too
                        sel.unregister(conn)
                        msg = {"signal": signal.SIGTERM}
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, int(msg["signal"]))
            ended, status, usage = os.wait4(pid, os.WNOHANG)
            if ended:
                break
    rc, cpu_s = os.waitstatus_to_exitcode(status), usage.ru_utime + usage.ru_stime
    with contextlib.suppress(OSError):
        _send(conn, {"returncode": rc, "cpu_s": cpu_s})
    _log({"argv": req["argv"], "cwd": req["cwd"], "returncode": rc, "cpu_s": round(cpu_s, 3),
          "wall_s": round(time.monotonic() - started, 3)})  # fmt: skip


def _log(entry: dict[str, Any]) -> None:
    print(json.dumps({"at": time.strftime("%Y-%m-%dT%H:%M:%S"), **entry}), flush=True)


def serve(idle_exit_s: float = DEFAULT_IDLE_EXIT_S) -> int:
    """Preload, listen, fork a supervisor per stage; exit after `idle_exit_s` without one."""
    import importlib

    t0 = time.process_time()
    for name in PRELOAD:
        importlib.import_module(name)
    stamps, started, served, alive = library_stamps(), time.time(), 0, set()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        listener.bind(address())
    except OSError:
        print("another stage server already serves this interpreter", file=sys.stderr)
        return 1
    listener.listen(64)
    listener.settimeout(1.0)  # wakes to reap and to check the idle time
    _log({"pid": os.getpid(), "preloaded": list(PRELOAD), "cpu_s": time.process_time() - t0})
    last = time.monotonic()
    while True:  # until idle, a `stop` request or SIGTERM
        try:  # reap finished supervisors
            while alive and (pid := os.waitpid(-1, os.WNOHANG)[0]):
                alive.discard(pid)
        except ChildProcessError:  # none left
            alive.clear()
        if alive:
            last = time.monotonic()
        elif time.monotonic() - last > idle_exit_s:
            break
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            continue
        with conn:
            creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
            if int.from_bytes(creds[4:8], sys.byteorder) != os.getuid():
                continue  # another user's process: never run its code as ours
            conn.settimeout(5.0)
            try:
                data, fds, _, _ = socket.recv_fds(conn, MAX_MESSAGE, 3)
            except OSError:
                continue
            try:  # the fds are the stage's stdio: only its supervisor (a fork) keeps them
                req = json.loads(data)
                if req.get("control"):
                    _send(conn, {"pid": os.getpid(), "started": started, "served": served,
                                 "running": len(alive), "idle_exit_s": idle_exit_s,
                                 "preloaded": list(PRELOAD)})  # fmt: skip
                    if req["control"] == "stop":
                        break
                    continue
                reason = refusal(req, stamps)
                if reason:  # the stage runs itself
                    _log({"refused": reason, "argv": req.get("argv")})
                    _send(conn, {"refused": reason})
                    continue
                conn.settimeout(None)
                pid = os.fork()
                if pid == 0:
                    listener.close()
                    _only_in_fork(_supervise, conn, req, fds)
                alive.add(pid)
                served += 1
                last = time.monotonic()
            except (OSError, ValueError):
                continue
            finally:
                for fd in fds:
                    os.close(fd)
    listener.close()
    _log({"stopped": os.getpid(), "served": served})
    return 0


# --- control from the command line ----------------------------------------------------------


def describe(facts: dict[str, Any], state: str = "running") -> str:
    return (f"stage server {state}: pid {facts['pid']}, {facts['served']} stage(s) served, exits "
            f"after {facts['idle_exit_s']:.0f} s idle; preloaded {', '.join(facts['preloaded'])}")  # fmt: skip


def control(command: str) -> dict[str, Any] | None:
    """`status` or `stop` a running server: its facts, or None when none answers."""
    if (sock := _connect()) is None:
        return None
    with sock:
        sock.settimeout(10.0)
        _send(sock, {"control": command})
        return _recv(sock) or None


def start(idle_exit_s: float = DEFAULT_IDLE_EXIT_S, timeout_s: float = 60.0) -> dict[str, Any]:
    """Start a server in the background (or find the running one) and wait until it answers."""
    import subprocess

    if running := control("status"):
        return running
    log = log_path()
    log.parent.mkdir(parents=True, exist_ok=True)
    src = str(Path(__file__).resolve().parents[2])  # this checkout's src/, installed or not
    code = f"import sys; sys.path.insert(0, {src!r}); from {__name__} import serve; "
    code += f"sys.exit(serve({idle_exit_s!r}))"
    with open(log, "ab") as out:  # same environment as the stages (it is compared), cwd aside
        proc = subprocess.Popen(
            [sys.executable, "-c", code], cwd=log.parent, stdin=subprocess.DEVNULL,
            stdout=out, stderr=out, start_new_session=True,
        )  # fmt: skip
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        facts = control("status")
        if facts:
            return facts | {"log": str(log)}
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    raise RuntimeError(f"the stage server did not start; its log: {log}")
