"""Checks a clock session makes before and after a change: each fails in one line before the
GPU is touched (or right after a change that did not take)."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

from llm_energy.config.sections import OTHER_PROCESS_POLICIES
from llm_energy.control.guard import can_install_handlers
from llm_energy.control.recovery import pending_journal_warning
from llm_energy.control.slurm import MECHANISMS, slurm_freq_warning
from llm_energy.device.base import Device
from llm_energy.device.errors import (
    DeviceError,
    NotSupportedError,
    OtherProcessesError,
    PermissionDeniedError,
)
from llm_energy.device.freq import snap_to_supported

log = logging.getLogger(__name__)

CAP_SYS_ADMIN_BIT = 21

Warn = Callable[[str, type[Warning]], None]  # the session's warn: log, warn and record


class ClockSnapWarning(UserWarning):
    """A requested clock was not supported and was snapped to the nearest supported one."""


class OtherProcessesWarning(UserWarning):
    """Other processes use the GPU: their load perturbs energy readings."""


def has_clock_privilege(status_path: Path = Path("/proc/self/status")) -> bool:
    """Root, or CAP_SYS_ADMIN in the effective capability set (what NVML setters need)."""
    if os.geteuid() == 0:
        return True
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in status_path.read_text().splitlines():
            if line.startswith("CapEff:"):
                return bool((int(line.split()[1], 16) >> CAP_SYS_ADMIN_BIT) & 1)
    return False


def check_session_args(control: str, on_other_processes: str) -> None:
    """A mis-spelt `gpu.control` / `gpu.on_other_processes` fails before anything is opened."""
    if control not in MECHANISMS:
        raise ValueError(f"control must be one of {'|'.join(MECHANISMS)}, got {control!r}")
    if on_other_processes not in OTHER_PROCESS_POLICIES:
        raise ValueError(
            f"on_other_processes must be 'warn' or 'refuse', got {on_other_processes!r}"
        )


def check_can_change(
    device: Device, asked: str, *, signal_handlers: bool, privileged: Callable[[], bool]
) -> None:
    """Before the first change: clocks controllable, privilege, signal handlers installable."""
    if not device.can_control_clocks():
        raise device._no_control(asked)  # the same words as the device's own setters
    if device.requires_privilege and not privileged():
        raise PermissionDeniedError(
            f"{asked} on GPU {device.index} ({device.name()})",
            "this process is neither root nor has CAP_SYS_ADMIN, which NVML requires to lock clocks",
            "Run the stage with sudo or grant CAP_SYS_ADMIN, or set gpu.control=observe.",
        )
    if signal_handlers and not can_install_handlers():
        raise DeviceError(
            f"{asked} on GPU {device.index} from thread {threading.current_thread().name}",
            "signal handlers, which restore the clocks on Ctrl-C, SIGTERM and a closed terminal, "
            "can only be installed in the main thread",
            "Open the clock session in the main thread, or use gpu.control=observe.",
        )


def warn_other_processes(device: Device, policy: str, action: str, warn: Warn) -> None:
    """Warn when other processes use the GPU (raises under `refuse`)."""
    try:
        procs = device.other_processes()
    except DeviceError as err:
        log.warning("cannot list processes on GPU %s: %s", device.index, err)
        return
    if not procs:
        return
    desc = ", ".join(f"{p.pid}" + (f" ({p.name})" if p.name else "") for p in procs[:5])
    if policy == "refuse":
        raise OtherProcessesError(
            f"Refusing to {action} GPU {device.index} ({device.name()})",
            f"{len(procs)} other process(es) use it: {desc}",
            "Stop them, or set gpu.on_other_processes=warn to measure anyway.",
        )
    warn(
        f"{len(procs)} other process(es) use GPU {device.index} ({desc}); energy readings include their load",
        OtherProcessesWarning,
    )


def observe_preflight(
    device: Device,
    control: str,
    journal_dir: Path,
    policy: str,
    sm_freq_mhz: int | None,
    warn: Warn,
) -> None:
    """observe / slurm: warn of a pending journal (not restored), other processes, SLURM's cap."""
    msg = pending_journal_warning(device, journal_dir)
    if msg:
        warn(msg, RuntimeWarning)
    warn_other_processes(device, policy, "observe", warn)
    if control == "slurm":
        msg = slurm_freq_warning(sm_freq_mhz)
        if msg:
            warn(msg, RuntimeWarning)


def snap_clock(
    device: Device, what: str, freq_mhz: int, supported: list[int]
) -> tuple[int, str | None]:
    """(supported clock to apply, warning when it differs from the request)."""
    if not supported:
        raise NotSupportedError(
            f"Cannot lock the {what} clock of GPU {device.index} to {freq_mhz} MHz",
            "the device reports no supported clocks",
            "Use gpu.control=observe or gpu.freq=null on this GPU.",
        )
    applied, snapped = snap_to_supported(freq_mhz, supported)
    if not snapped:
        return applied, None
    return applied, (
        f"{what} clock {freq_mhz} MHz is not supported by {device.name()}; using the nearest "
        f"supported {applied} MHz"
    )


def sm_lock_in_force(device: Device) -> int | None:
    """With no cap of ours: a lock someone else set, where readable; else None (default)."""
    try:
        state = device.clock_state()
    except DeviceError:
        return None
    return state.sm_locked_mhz if state.locks_known else None


def check_lock_readback(device: Device, key: str, applied: int) -> None:
    """A lock must read back where locks are readable (simulated); NVML cannot read them, so
    there only an SM clock above the lock is warned of (below is legitimate: power, thermal)."""
    state = device.clock_state()
    if state.locks_known:
        got = state.sm_locked_mhz if key == "sm" else state.mem_locked_mhz
        if got != applied:
            raise DeviceError(
                f"Cannot lock the {key} clock to {applied} MHz",
                f"read-back shows {got}",
                "Check the driver; the original state is restored.",
            )
        return
    if key != "sm":
        return
    observed = device.sm_clock_mhz()
    tol = max(device.sm_step_mhz(), 1)
    if observed is not None and observed > applied + tol:
        msg = "GPU %s: SM clock reads %s MHz right after locking to %s MHz"
        log.warning(msg, device.index, observed, applied)
