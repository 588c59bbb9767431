"""One GPU per run: a non-blocking exclusive `flock` on `<state_dir>/locks/gpu-<uuid>.lock`,
which the kernel drops however the holder dies; the file names the holder for a refusal.
Re-entrant and counted within a process: released with the last `GpuLease.release()`."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from llm_energy.config.schema import is_int
from llm_energy.device.errors import DeviceError, SessionConflictError, os_errors_as
from llm_energy.device.identity import ProcessIdentity, command_line, now_iso, opt_str, ticks_to_iso

SHARED_DIR_MODE = 0o1777  # like /tmp: everyone creates, only the owner deletes
LOCK_FILE_MODE = 0o666  # every user must be able to open (and so flock) every lock file
_STATE_TODO = (
    "Set gpu.state_dir (or $LLM_ENERGY_STATE_DIR) to a writable per-machine directory "
    "shared by everyone who runs the project, e.g. /var/tmp/llm-energy."
)


def ensure_shared_dir(path: Path, mode: int = SHARED_DIR_MODE) -> Path:
    """Create `path` (and its parents) shared by every user; one-line DeviceError if impossible.
    Only directories created here get `mode`. A symlink in a world-writable directory is
    refused: anyone could have planted it to point a root run at any directory."""
    path = Path(path)
    with os_errors_as(f"Cannot use the state directory {path}", _STATE_TODO):
        if path.is_symlink() and os.stat(path.parent).st_mode & 0o002:
            raise DeviceError(
                f"Cannot use the state directory {path}",
                "it is a symbolic link",
                f"Remove it or point gpu.state_dir at the real directory. {_STATE_TODO}",
            )
        if not path.is_dir():
            if not path.parent.is_dir():
                ensure_shared_dir(path.parent, mode)
            with contextlib.suppress(FileExistsError):
                os.mkdir(path)
                os.chmod(path, mode)
        if not os.access(path, os.W_OK | os.X_OK):
            raise PermissionError(errno.EACCES, "not writable by this user")
    return path


def safe_name(uuid: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", uuid)


def lock_path(lock_dir: Path, uuid: str) -> Path:
    return Path(lock_dir) / f"gpu-{safe_name(uuid)}.lock"


@dataclass(frozen=True)
class LockHolder:
    """What a holder writes into its lock file right after acquiring it."""

    uuid: str
    identity: ProcessIdentity
    started_at: str | None  # when the process started (UTC)
    acquired_at: str | None
    user: int | None
    command: str

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "identity"} | asdict(self.identity)

    @classmethod
    def from_dict(cls, d: Any) -> LockHolder | None:
        """None for anything that is not a holder record (empty file, half-written, foreign)."""
        if not isinstance(d, dict) or not is_int(d.get("pid")):
            return None
        return cls(
            uuid=str(d.get("uuid", "")),
            identity=ProcessIdentity.from_record(d, "start_ticks"),
            started_at=opt_str(d.get("started_at")),
            acquired_at=opt_str(d.get("acquired_at")),
            user=int(d["user"]) if is_int(d.get("user")) else None,
            command=str(d.get("command", "?")),
        )

    def describe(self) -> str:
        since = f", started {self.started_at}" if self.started_at else ""
        user = f", uid {self.user}" if self.user is not None else ""
        return f"pid {self.identity.pid} on {self.identity.host}{since}{user}: `{self.command}`"


def read_holder(path: Path) -> LockHolder | None:
    try:
        return LockHolder.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return None


def describe_holder(path: Path, wait_s: float = 1.0) -> str:
    """One phrase naming the holder of the lock at `path` (waits briefly for a new one's record)."""
    deadline = time.monotonic() + wait_s
    while True:
        holder = read_holder(path)
        if holder is not None and holder.identity.is_running():
            return holder.describe()
        if time.monotonic() >= deadline or lock_held(path) is False:
            return "another process that has not identified itself yet"
        time.sleep(0.01)


def lock_held(path: Path) -> bool | None:
    """Whether some process holds the flock on `path`, read from /proc/locks (taking the lock
    to test it would make a run starting at that moment fail). None when unknown."""
    if _HELD.get(str(path)) is not None:
        return True
    try:
        st = os.stat(path)
        table = Path("/proc/locks").read_text()
    except FileNotFoundError:
        return False
    except OSError:
        return None
    key = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    for line in table.splitlines():
        fields = line.split()
        # "1: FLOCK ADVISORY WRITE <pid> <maj:min:inode> 0 EOF"; "->" lines are waiters
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == key:
            return True
    return False


@dataclass
class _Held:
    fd: int
    refs: int
    pid: int


_HELD: dict[str, _Held] = {}  # this process's locks, by lock file path
_HELD_LOCK = threading.Lock()


def _forget_inherited() -> None:
    # A forked child shares the parent's open lock files: closing them here leaves the lock
    # with the parent, and the child must never truncate the parent's holder record.
    for held in _HELD.values():
        with contextlib.suppress(OSError):
            os.close(held.fd)
    _HELD.clear()


os.register_at_fork(after_in_child=_forget_inherited)


class GpuLease:
    """One reference to this process's lock on a GPU; `release()` drops it."""

    def __init__(self, uuid: str, path: Path) -> None:
        self.uuid, self.path = uuid, path
        self._released = False

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        with _HELD_LOCK:
            held = _HELD.get(str(self.path))
            if held is None:
                return
            held.refs -= 1
            if held.refs > 0:
                return
            del _HELD[str(self.path)]
            with contextlib.suppress(OSError):
                os.ftruncate(held.fd, 0)  # a free lock names nobody
            os.close(held.fd)  # releases the flock

    @property
    def released(self) -> bool:
        return self._released

    def __enter__(self) -> GpuLease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"<GpuLease {self.uuid} {'released' if self._released else 'held'}>"


def _open_lock_file(path: Path) -> tuple[int, bool]:
    """(fd, writable). Open before create: in a sticky world-writable directory Linux refuses
    O_CREAT on another user's file (fs.protected_regular)."""
    flags = os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW
    for _ in range(3):
        try:
            return os.open(path, flags), True
        except FileNotFoundError:
            try:
                fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, LOCK_FILE_MODE)
            except FileExistsError:
                continue  # created by someone else meanwhile: open theirs
            with contextlib.suppress(OSError):
                os.fchmod(fd, LOCK_FILE_MODE)
            return fd, True
        except PermissionError:
            # flock works on a read-only descriptor; only the holder record is lost.
            return os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW), False
    return os.open(path, flags), True


def _write_holder(fd: int, uuid: str) -> None:
    me = ProcessIdentity.current()
    holder = LockHolder(
        uuid=uuid,
        identity=me,
        started_at=ticks_to_iso(me.start_ticks),
        acquired_at=now_iso(),
        user=os.getuid(),
        command=command_line(),
    )
    data = (json.dumps(holder.to_dict(), sort_keys=True) + "\n").encode()
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)


def try_acquire_gpu(lock_dir: Path, uuid: str) -> GpuLease | None:
    """A lease on the GPU, or None when another process holds it. Never blocks."""
    path = lock_path(lock_dir, uuid)
    with _HELD_LOCK:
        held = _HELD.get(str(path))
        if held is not None and held.pid == os.getpid():
            held.refs += 1
            return GpuLease(uuid, path)
        ensure_shared_dir(Path(lock_dir))
        with os_errors_as(f"Cannot create the lock file {path} for GPU {uuid}", _STATE_TODO):
            fd, writable = _open_lock_file(path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except OSError as err:  # e.g. ENOLCK on a network file system
            os.close(fd)
            raise DeviceError(
                f"Cannot lock {path} for GPU {uuid}", err.strerror or str(err), _STATE_TODO
            ) from err
        if writable:
            _write_holder(fd, uuid)
        _HELD[str(path)] = _Held(fd, 1, os.getpid())
        return GpuLease(uuid, path)


def acquire_gpu(lock_dir: Path, uuid: str, *, asked: str) -> GpuLease:
    """A lease on the GPU; SessionConflictError naming the holder when another process has it."""
    lease = try_acquire_gpu(lock_dir, uuid)
    if lease is None:
        raise SessionConflictError(
            asked,
            f"GPU {uuid} is in use by {describe_holder(lock_path(lock_dir, uuid))}",
            "Wait for that run to finish (its exit restores the clocks), stop it, or set "
            "gpu.index=auto to take a free GPU.",
        )
    return lease


def holds_gpu(lock_dir: Path, uuid: str) -> bool:
    """Whether this process holds the lock (a stage that already locked the GPU)."""
    held = _HELD.get(str(lock_path(lock_dir, uuid)))
    return held is not None and held.pid == os.getpid()
