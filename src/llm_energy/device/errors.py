"""Device errors raised instead of backend-specific ones (NVML, sysfs OS errors), so callers
catch `DeviceError` and print one line: what was asked, why it fails, what to do."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from llm_energy.errors import UserFacingError, one_line


class DeviceError(UserFacingError):
    """Base for every device/clock failure. `str(err)` is one line: asked: why. todo"""

    def __init__(self, asked: str, why: str = "", todo: str = "") -> None:
        self.asked, self.why, self.todo = (one_line(t, limit=None) for t in (asked, why, todo))
        parts = self.asked
        if self.why:
            parts += f": {self.why.rstrip('.')}."
        if self.todo:
            parts += f" {self.todo}"
        super().__init__(one_line(parts, limit=None))


class DeviceNotFoundError(DeviceError):
    """No usable device: library missing, driver not loaded, index out of range, GPU lost."""


class PermissionDeniedError(DeviceError):
    """Changing clocks / power limit needs root or CAP_SYS_ADMIN."""


class NotSupportedError(DeviceError):
    """The device or driver does not support the requested query or setting."""


class ClockControlUnavailableError(DeviceError):
    """Clock locking was asked on a device that cannot control clocks (e.g. the cpu backend)."""


class OtherProcessesError(DeviceError):
    """Other compute processes use the GPU and the policy is `refuse`."""


class SessionConflictError(DeviceError):
    """Another live clock session (this or another process) already controls this GPU."""


class RestoreError(DeviceError):
    """Restoring the original clock state failed or did not verify on read-back."""


@contextlib.contextmanager
def os_errors_as(asked: str, todo: str) -> Iterator[None]:
    """An OSError inside becomes a one-line DeviceError: `asked`, the OS's reason, `todo`."""
    try:
        yield
    except OSError as err:
        raise DeviceError(asked, err.strerror or str(err), todo) from err
