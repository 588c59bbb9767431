"""Restore-on-exit: put the GPU clocks back on SIGINT/SIGTERM/SIGHUP/SIGQUIT and at exit, then
END the run with `SignalExit`, so no row is measured at restored clocks (docs/device.md)."""

from __future__ import annotations

import atexit
import contextlib
import logging
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

log = logging.getLogger(__name__)

SIGNALS: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)


class SignalExit(SystemExit):
    """The run was stopped by a signal after the clocks were restored (exit 128 + signal)."""

    def __init__(self, signum: int) -> None:
        super().__init__(128 + signum)
        self.signum = signum


def can_install_handlers() -> bool:
    """signal.signal only works in the main thread of the main interpreter."""
    return threading.current_thread() is threading.main_thread()


class RestoreGuard:
    """Calls `restore()` (returns a list of problems) on the signals above and at exit."""

    def __init__(self, restore: Callable[[], list[str]], what: str) -> None:
        self._restore = restore
        self.what = what  # for log lines, e.g. "GPU GPU-1234"
        self.interrupted_by: int | None = None
        self._prev: dict[int, Any] = {}
        self._atexit = False
        self._stopping = False
        self._depth = 0  # nesting of critical sections
        self._pending: tuple[int, FrameType | None] | None = None

    def install(self, signals: bool = True) -> None:
        if not self._atexit:
            atexit.register(self._at_exit)
            self._atexit = True
        if not signals:
            return
        if not can_install_handlers():
            raise RuntimeError("signal handlers can only be installed from the main thread")
        for sig in SIGNALS:
            if sig not in self._prev:
                self._prev[sig] = signal.signal(sig, self._on_signal)

    def uninstall(self) -> None:
        if self._atexit:
            atexit.unregister(self._at_exit)
            self._atexit = False
        for sig, prev in list(self._prev.items()):
            with contextlib.suppress(ValueError, TypeError):
                if signal.getsignal(sig) == self._on_signal:
                    signal.signal(sig, prev if prev is not None else signal.SIG_DFL)
            del self._prev[sig]

    @contextlib.contextmanager
    def critical(self) -> Iterator[None]:
        """Defer signal handling until the block ends. Only the main thread's blocks defer:
        handlers run there, and the restore waits for other threads (the session's lock)."""
        if not can_install_handlers():
            yield
            return
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if self._depth == 0 and self._pending is not None and not self._stopping:
                signum, frame = self._pending
                self._pending = None
                self._on_signal(signum, frame)

    def _at_exit(self) -> None:
        problems = self._restore()
        if problems:
            log.error("at exit: %s clocks not restored: %s", self.what, "; ".join(problems))

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self._stopping:
            log.warning("%s: already restoring the GPU clocks and stopping; please wait", name)
            return
        if self._depth > 0:
            self._pending = (signum, frame)  # finish the change under way first
            return
        self._stopping = True
        self.interrupted_by = signum
        msg = "signal %s: restoring the original GPU clocks before exiting; no further rows are measured"
        log.warning(msg, name)
        problems = self._restore()
        if problems:
            log.error("%s: clocks NOT restored: %s", self.what, "; ".join(problems))
        prev = self._prev.get(signum, signal.SIG_DFL)
        if callable(prev) and prev != self._on_signal:
            prev(signum, frame)  # e.g. the default SIGINT handler raises KeyboardInterrupt
        raise SignalExit(signum)
