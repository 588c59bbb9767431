"""File helpers for stages: JSON/JSONL/YAML/CSV reads and atomic writes. Writes are renamed into
place, so an interrupted stage never leaves a half-written output that looks complete; a bad
file read is one `InputFileError` line, not a decoder traceback."""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from llm_energy.errors import InputFileError, OutputError, describe_os_error, shown

log = logging.getLogger(__name__)

REGENERATE = "fix or regenerate the file (re-run the stage that writes it)"


def _default(obj: Any) -> Any:
    if hasattr(obj, "item"):  # numpy / torch scalars
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _clean(obj: Any) -> Any:
    """NaN/inf are not JSON: write them as null."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Mapping):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    return obj


def dumps(obj: Any) -> str:
    return json.dumps(_clean(obj), default=_default, ensure_ascii=False)


def with_path(exc: OSError, path: str | os.PathLike[str]) -> OSError:
    """The same error naming `path` (a failed write() or flush() carries no file name)."""
    if exc.filename is not None or exc.errno is None:
        return exc
    return OSError(exc.errno, exc.strerror, os.fspath(path))


@functools.cache
def _umask() -> int:
    # Reading the umask means setting it: do it once, not on every write from every thread.
    current = os.umask(0)
    os.umask(current)
    return current


def _atomic_write(path: Path, data: bytes, *, fsync: bool, mode: int | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp makes 0o600; outputs get the mode an ordinary open() would give them.
        os.fchmod(fd, mode if mode is not None else 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            if fsync:  # journals must survive a power loss, not only a crash
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise with_path(exc, path) from exc
        raise


def atomic_write_text(
    path: Path, text: str, *, fsync: bool = False, mode: int | None = None
) -> None:
    _atomic_write(path, text.encode("utf-8"), fsync=fsync, mode=mode)


def atomic_write_bytes(path: Path, data: bytes, *, fsync: bool = False) -> None:
    _atomic_write(path, data, fsync=fsync)


def write_json(path: Path, obj: Any) -> None:
    text = json.dumps(_clean(obj), default=_default, ensure_ascii=False, indent=2)
    atomic_write_text(path, text + "\n")


def write_jsonl(path: Path, rows: Iterable[Mapping[str, Any]]) -> None:
    atomic_write_text(path, "".join(dumps(r) + "\n" for r in rows))


def write_yaml(path: Path, obj: Any) -> None:
    atomic_write_text(path, yaml.safe_dump(obj, sort_keys=False, allow_unicode=True, width=1000))


class JsonlAppender:
    """Appends one record per line and flushes each one: a crash loses nothing already measured."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._fh = path.open("w", encoding="utf-8")

    def write(self, row: Mapping[str, Any]) -> None:
        try:
            self._fh.write(dumps(row) + "\n")
            self._fh.flush()
        except OSError as exc:  # disk full: say which file
            raise with_path(exc, self.path) from exc

    def close(self) -> None:
        if not self._fh.closed:
            try:
                self._fh.close()
            except OSError as exc:
                raise with_path(exc, self.path) from exc

    def __enter__(self) -> JsonlAppender:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            self.close()
            return
        # Already failing (often the same full disk): closing must not replace that error.
        with contextlib.suppress(OSError):
            self.close()


def pid_alive(pid: int) -> bool:
    """Whether process `pid` is running. A zombie (dead, not yet reaped by its parent: for ever
    in a container whose PID 1 does not reap) is not: `os.kill(pid, 0)` succeeds on one, so the
    state letter in /proc/<pid>/stat decides where /proc exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
    except OSError:  # gone in between, or no /proc at all (macOS): then os.kill's answer stands
        return not Path("/proc").is_dir()
    return stat.rsplit(")", 1)[-1].split()[:1] not in (["Z"], ["X"])  # zombie, dead


def _remove_stale(parent: Path, name: str) -> None:
    """Temp and old folders that a killed run (SIGKILL, power loss) left next to the output."""
    for marker in ("tmp", "old"):
        for path in parent.glob(f".{name}.{marker}-*"):
            pid = path.name.rsplit("-", 1)[-1]
            # our own pid here is a leftover from an earlier process that had it
            if pid.isdigit() and (int(pid) == os.getpid() or not pid_alive(int(pid))):
                shutil.rmtree(path, ignore_errors=True)


def _relabel(exc: OSError, tmp: Path, final: Path) -> OSError:
    """Name the output the user knows (data/infer/x) rather than the temp folder."""
    name = exc.filename
    if name is None:
        return OSError(exc.errno, exc.strerror, str(final)) if exc.errno else exc
    text = os.fspath(name)
    if text == str(tmp) or text.startswith(str(tmp) + os.sep):
        return OSError(exc.errno, exc.strerror, str(final) + text[len(str(tmp)) :])
    return exc


def _output_error(exc: OSError, final: Path, existed: bool) -> OutputError:
    kept = f"the previous {shown(final)} is unchanged" if existed else "nothing was written"
    return OutputError(f"{describe_os_error(exc)}; {kept}")


def _check_target(final: Path) -> None:
    if final.exists() and not final.is_dir():
        raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(final))
    # A read-only output folder: refuse instead of half-deleting it (root passes this check).
    if final.is_dir() and not os.access(final, os.W_OK):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(final))


def replace_dir(new: Path, final: Path) -> None:
    """Swap `new` in as `final`: the old folder is renamed aside first and deleted last."""
    old = final.parent / f".{final.name}.old-{os.getpid()}"
    moved = False
    if final.exists() or final.is_symlink():
        shutil.rmtree(old, ignore_errors=True)
        os.rename(final, old)
        moved = True
    try:
        os.rename(new, final)
    except OSError:
        if moved:
            os.rename(old, final)
        raise
    if moved:
        shutil.rmtree(old, ignore_errors=True)
        if old.exists():
            log.warning("could not delete the previous outputs at %s: delete it by hand", old)


@contextlib.contextmanager
def staged_dir(final: Path, *, keep_failed: Path | None = None) -> Iterator[Path]:
    """Yield an empty sibling folder to write into; on success it replaces `final`. On failure
    `final` stays as it was (with `keep_failed`, a non-empty temp folder replaces it: partial
    measurements are worth keeping); OSErrors come out as one `OutputError` line."""
    final = Path(final)
    existed = final.is_dir()
    tmp = final.parent / f".{final.name}.tmp-{os.getpid()}"
    try:
        _check_target(final)
        final.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale(final.parent, final.name)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    except OSError as exc:
        raise _output_error(_relabel(exc, tmp, final), final, existed) from exc
    try:
        yield tmp
    except BaseException as exc:
        _discard(tmp, keep_failed)
        if isinstance(exc, OSError):
            raise _output_error(_relabel(exc, tmp, final), final, existed) from exc
        raise
    try:
        replace_dir(tmp, final)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise _output_error(_relabel(exc, tmp, final), final, existed) from exc


def _discard(tmp: Path, keep_failed: Path | None) -> None:
    if keep_failed is not None and any(
        p.is_file() and p.stat().st_size > 0 for p in tmp.rglob("*")
    ):
        with contextlib.suppress(OSError):
            shutil.rmtree(keep_failed, ignore_errors=True)
            os.rename(tmp, keep_failed)
            log.warning("what was written before the failure is kept in %s", shown(keep_failed))
            return
    shutil.rmtree(tmp, ignore_errors=True)


def _read_bytes(path: Path, remedy: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise InputFileError(path, "file not found", remedy) from None
    except IsADirectoryError:
        raise InputFileError(path, "is a folder, expected a file", remedy) from None


def _decode(data: bytes, path: Path, remedy: str, *, first_line: int = 1) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = first_line + data[: exc.start].count(b"\n")
        raise InputFileError(
            path,
            f"not valid UTF-8 (byte 0x{data[exc.start]:02x})",
            f"re-save it as UTF-8, or {remedy}",
            line=line,
        ) from None


def read_text(path: Path, *, remedy: str = REGENERATE) -> str:
    return _decode(_read_bytes(path, remedy), path, remedy)


def read_json(path: Path, *, remedy: str = REGENERATE, expect: type | None = None) -> Any:
    """The parsed file; `expect=dict` also refuses valid JSON of the wrong shape."""
    text = read_text(path, remedy=remedy)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        problem = "empty file" if not text.strip() else f"not valid JSON ({exc.msg})"
        raise InputFileError(path, problem, remedy, line=exc.lineno) from None
    if expect is not None and not isinstance(value, expect):
        kind = {dict: "object", list: "array"}.get(expect, expect.__name__)
        raise InputFileError(path, f"expected a JSON {kind}, got {type(value).__name__}", remedy)
    return value


def iter_jsonl(
    path: Path, *, remedy: str = REGENERATE, required: Sequence[str] = ()
) -> Iterator[dict[str, Any]]:
    """One JSON object per line; a broken line, a non-object or a missing key names its line."""
    try:
        fh = path.open("rb")
    except FileNotFoundError:
        raise InputFileError(path, "file not found", remedy) from None
    with fh:
        for number, raw in enumerate(fh, 1):
            line = _decode(raw, path, remedy, first_line=number)
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                cut = "" if raw.endswith(b"\n") else ", the file ends mid-record (truncated?)"
                raise InputFileError(
                    path, f"not valid JSON ({exc.msg}){cut}", remedy, line=number
                ) from None
            if not isinstance(row, dict):
                raise InputFileError(
                    path, f"expected a JSON object, got {type(row).__name__}", remedy, line=number
                )
            missing = [k for k in required if k not in row]
            if missing:
                raise InputFileError(
                    path, "record has no such key", remedy, line=number, key=missing[0]
                )
            yield row


def read_jsonl(
    path: Path, *, remedy: str = REGENERATE, required: Sequence[str] = ()
) -> list[dict[str, Any]]:
    return list(iter_jsonl(path, remedy=remedy, required=required))


def read_yaml(path: Path, *, remedy: str = REGENERATE) -> Any:
    text = read_text(path, remedy=remedy)
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or type(exc).__name__
        column = f", column {mark.column + 1}" if mark is not None else ""
        line = mark.line + 1 if mark is not None else None
        raise InputFileError(
            path, f"YAML syntax error ({problem}{column})", remedy, line=line
        ) from None


def read_csv(path: Path, *, remedy: str = REGENERATE, allow_empty: bool = False) -> Any:
    """A pandas DataFrame; an empty file is an empty frame only when `allow_empty`."""
    import pandas as pd  # not every stage needs pandas

    _decode(_read_bytes(path, remedy), path, remedy)  # names the line of a bad byte
    try:
        return pd.read_csv(path)
    except pd.errors.EmptyDataError:
        if allow_empty:
            return pd.DataFrame()
        raise InputFileError(path, "empty file", remedy) from None
    except pd.errors.ParserError as exc:
        raise InputFileError(path, f"not a valid CSV table ({exc})", remedy) from None
