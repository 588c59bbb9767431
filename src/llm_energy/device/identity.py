"""Who is who: a process recognisable after its pid is reused (pid + start time + boot id + host),
and a GPU by its UUID, since NVML and CUDA number GPUs differently (docs/device.md)."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shlex
import socket
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llm_energy.config.schema import is_int
from llm_energy.device.errors import DeviceNotFoundError
from llm_energy.io.files import pid_alive


def boot_id() -> str | None:
    with contextlib.suppress(OSError):
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    return None


def process_start_ticks(pid: int) -> int | None:
    """Start time of a process in clock ticks since boot (/proc/<pid>/stat field 22)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        # The command name (field 2) may hold spaces and ')': fields resume after the last ')'.
        return int(stat[stat.rindex(")") + 2 :].split()[19])
    return None


def _boot_time_s() -> float | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith("btime "):
                return float(line.split()[1])
    return None


def ticks_to_s(ticks: int | None) -> float | None:
    """Start ticks as wall-clock seconds since the epoch."""
    btime = _boot_time_s()
    if ticks is None or btime is None:
        return None
    return btime + ticks / os.sysconf("SC_CLK_TCK")


def ticks_to_iso(ticks: int | None) -> str | None:
    wall_s = ticks_to_s(ticks)
    if wall_s is None:
        return None
    return dt.datetime.fromtimestamp(wall_s, dt.UTC).isoformat(timespec="seconds")


def now_iso() -> str:
    """The current UTC time, to the second, as journals and lock files write it."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def process_start_s(pid: int) -> float | None:
    return ticks_to_s(process_start_ticks(pid))


def opt_str(v: Any) -> str | None:
    return v if isinstance(v, str) else None


@dataclass(frozen=True)
class ProcessIdentity:
    """A process as it can be recognised later: a pid alone may since belong to another one."""

    pid: int
    start_ticks: int | None
    host: str | None
    boot_id: str | None

    @classmethod
    def current(cls) -> ProcessIdentity:
        pid = os.getpid()
        return cls(pid, process_start_ticks(pid), socket.gethostname(), boot_id())

    @classmethod
    def from_record(cls, d: Mapping[str, Any], ticks_key: str) -> ProcessIdentity:
        """The identity a journal or lock file wrote (`d["pid"]` an int); odd fields read None."""
        ticks, host, boot = d.get(ticks_key), opt_str(d.get("host")), opt_str(d.get("boot_id"))
        return cls(int(d["pid"]), int(ticks) if is_int(ticks) else None, host, boot)

    def is_running(self) -> bool:
        """Whether this very process still runs on this machine (conservative when unsure)."""
        here = boot_id()
        if self.boot_id is not None and here is not None:
            if self.boot_id != here:
                return False  # another boot: every process of that one is gone
        elif self.host is not None and self.host != socket.gethostname():
            return False
        if self.pid <= 0 or not pid_alive(self.pid):
            return False
        if self.start_ticks is None:
            return True  # no start time recorded: a live pid may be the owner
        now = process_start_ticks(self.pid)
        return now is None or now == self.start_ticks


def command_line(limit: int = 300) -> str:
    text = shlex.join([Path(sys.argv[0]).name if sys.argv else "python", *sys.argv[1:]])
    return text if len(text) <= limit else text[: limit - 3] + "..."


def format_cuda_uuid(raw: Any) -> str:
    """torch's device UUID (a CUuuid: `.bytes` = 16 ints, str() = 8-4-4-4-12 hex) written as
    NVML writes it: GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx."""
    data = getattr(raw, "bytes", None)
    if data is not None and len(list(data)) == 16:
        h = bytes(list(data)).hex()
        text = f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
    else:
        text = str(raw).strip()
    if text.upper().startswith(("GPU-", "MIG-")):
        return text[:4].upper() + text[4:].lower()
    return "GPU-" + text.lower()


def cuda_visible_entries() -> list[str]:
    """The entries of CUDA_VISIBLE_DEVICES ([] when unset or empty: every GPU is visible)."""
    cvd = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    return [x.strip() for x in cvd.split(",") if x.strip()]


def resolve_cuda_visible(index: int) -> tuple[str, int | str]:
    """NVML enumerates all GPUs by PCI order; CUDA_VISIBLE_DEVICES renumbers them. Map the
    logical (torch) index to what NVML needs so we measure the GPU the model runs on."""
    items = cuda_visible_entries()
    if not items:
        return ("index", index)
    cvd = ",".join(items)
    if index >= len(items):
        raise DeviceNotFoundError(
            f"Cannot open GPU index {index}",
            f"CUDA_VISIBLE_DEVICES={cvd} exposes only {len(items)} GPU(s)",
            "Set gpu.index within range or change CUDA_VISIBLE_DEVICES.",
        )
    item = items[index]
    if item.isdigit():
        return ("index", int(item))
    if item.startswith("GPU-"):
        return ("uuid", item)
    raise DeviceNotFoundError(
        f"Cannot open GPU index {index}",
        f"CUDA_VISIBLE_DEVICES entry {item!r} is not a GPU index or GPU-UUID (MIG is not supported)",
        "Use a plain index or full GPU UUID in CUDA_VISIBLE_DEVICES.",
    )


def cuda_index_for_uuid(nvml_uuid: str, cuda_uuids: Sequence[str]) -> int:
    """The CUDA device index whose UUID is the NVML GPU's (CUDA orders GPUs fastest-first
    unless CUDA_DEVICE_ORDER=PCI_BUS_ID, so an NVML index is not a CUDA index)."""
    want = nvml_uuid.strip().lower()
    hits = [i for i, u in enumerate(cuda_uuids) if u.strip().lower() == want]
    if len(hits) == 1:
        return hits[0]
    seen = ", ".join(f"cuda:{i}={u}" for i, u in enumerate(cuda_uuids)) or "no CUDA device"
    raise DeviceNotFoundError(
        f"Cannot run the model on the measured GPU {nvml_uuid}",
        f"torch {'sees it more than once' if hits else 'does not see it'} ({seen}; "
        f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')})",
        "Make CUDA_VISIBLE_DEVICES include that GPU (by UUID), or set CUDA_DEVICE_ORDER=PCI_BUS_ID.",
    )
