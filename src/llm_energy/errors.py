"""Project-wide errors whose message is meant for the user (one line, no traceback), and the one
place that words an OSError (disk full, permission, a file in the way) as path and fix."""

from __future__ import annotations

import errno
import os

# A stage must not print pages: long messages (a whole bad JSON line) are cut to this length.
MAX_MESSAGE = 600


class UserFacingError(RuntimeError):
    """Raised for expected failures (bad data, unavailable hardware, missing model files)."""


class InputFileError(UserFacingError, ValueError):
    """A file a stage reads is unusable: which file, where in it, what is wrong, what to do."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        problem: str,
        remedy: str,
        *,
        line: int | None = None,
        key: str | None = None,
    ) -> None:
        self.path, self.problem, self.remedy = str(path), problem, remedy
        self.line, self.key = line, key
        where = shown(self.path) + (f" line {line}" if line is not None else "")
        where += f", key '{key}'" if key is not None else ""
        super().__init__(f"{where}: {problem}; {remedy}")


class OutputError(UserFacingError):
    """An output could not be written; the message names the path and the fix."""


def one_line(text: str, limit: int | None = MAX_MESSAGE) -> str:
    """`text` on one line, cut to `limit` characters (None: whole)."""
    line = " ".join(str(text).split())
    return line if limit is None or len(line) <= limit else line[: limit - 3] + "..."


def shown(path: str | os.PathLike[str]) -> str:
    """A path as the user typed it: relative to the working directory when below it."""
    text = os.fspath(path)
    try:
        rel = os.path.relpath(text)
    except ValueError:  # another drive (Windows)
        return text
    return text if rel.startswith("..") else rel


def describe_os_error(exc: OSError) -> str:
    """One line for an OSError: the path, what happened, and what to do about it."""
    raw = exc.filename
    path = shown(raw) if isinstance(raw, str | os.PathLike) else raw
    target = f"{path}" if path is not None else "the stage outputs"
    code = exc.errno
    if code in (errno.ENOSPC, errno.EDQUOT):
        what = "no space left on the device" if code == errno.ENOSPC else "disk quota exceeded"
        where = (os.path.dirname(str(path)) or ".") if path is not None else "."
        return f"{what} while writing {target}: free some space there (`df -h {where}`) and re-run"
    if code == errno.EROFS:
        return (
            f"{target} is on a read-only file system: run from a writable copy of the "
            "repository, or remount it read-write"
        )
    if code in (errno.EACCES, errno.EPERM):
        return (
            f"permission denied for {target}: give your user access (`chmod -R u+rwX {target}`) "
            "or run as the user who owns it"
        )
    if code in (errno.EEXIST, errno.ENOTDIR, errno.EISDIR):
        return (
            f"{target} is in the way (a file where a folder is needed, or the reverse): "
            "move or delete it and re-run"
        )
    if code == errno.ENOENT:
        return f"{target} not found: run from the repository root, or run the stage that makes it"
    reason = exc.strerror or type(exc).__name__
    return f"{reason} ({target}): fix the cause and re-run"
