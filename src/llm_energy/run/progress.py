"""Progress of one grid unit, and the study-wide view of `llm-energy grid status`: one small JSON
per unit in a directory a node's workers share. Pure: `write`, `now` and `pid_alive` are injected."""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

LOST = "lost"  # running, but its process on this host is gone (killed -9, node reboot)
STALE = "stale"  # running on another host, not updated for a long time
DEFAULT_STALE_S = 600.0
STATUS_KEYS = (
    "unit state batches_done batches_total points_done points_total eta_s gpu_uuid host pid "
    "updated_at error"
).split()


def iso(t_s: float) -> str:
    return datetime.fromtimestamp(t_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(text: Any) -> float | None:
    try:
        return datetime.strptime(str(text), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None


def eta_s(done: int, total: int, elapsed_s: float) -> float | None:
    """Remaining seconds at the mean pace so far; None before the first batch."""
    if done <= 0 or total <= 0 or elapsed_s < 0:
        return None
    return max(total - done, 0) * elapsed_s / done


class ProgressTracker:
    """Builds a unit's progress record and hands it to `write` on each change (the runner's
    callback): batches at most every `min_interval_s`; first, last and state changes always."""

    def __init__(
        self,
        unit: str,
        *,
        host: str,
        pid: int,
        write: Callable[[Mapping[str, Any]], None],
        now: Callable[[], float] = time.time,
        cpu_s: Callable[[], float] = time.process_time,
        min_interval_s: float = 1.0,
    ) -> None:
        self.write, self.now, self.cpu_s, self.min_interval_s = write, now, cpu_s, min_interval_s
        t = now()
        self.record: dict[str, Any] = {
            "unit": unit,
            "state": "starting",
            "points_done": 0,
            "points_total": None,
            "batches_done": 0,
            "batches_total": None,
            "started_at": iso(t),
            "updated_at": iso(t),
            "eta_s": None,
            "gpu_uuid": None,
            "gpu_name": None,
            "host": host,
            "pid": pid,
            "error": None,
            # this process's CPU seconds from the first measured batch to the end (the rest of
            # an experiment's CPU is start-up and analysis: benchmarks/startup.py)
            "measured_cpu_s": None,
        }
        self._measure_start: float | None = None
        self._measure_cpu_start: float | None = None
        self._last_write = -math.inf
        self._emit(force=True)

    def set_gpu(self, uuid: str | None, name: str | None = None) -> None:
        self.record.update(gpu_uuid=uuid, gpu_name=name)
        self._emit(force=True)

    def __call__(
        self, *, points_done: int, points_total: int, batches_done: int, batches_total: int
    ) -> None:
        t = self.now()
        if self._measure_start is None:  # the pace counts measured batches, not the warm-up
            self._measure_start, self._measure_cpu_start = t, self.cpu_s()
        first = self.record["state"] != "running"
        self.record.update(
            state="running",
            points_done=points_done,
            points_total=points_total,
            batches_done=batches_done,
            batches_total=batches_total,
            eta_s=eta_s(batches_done, batches_total, t - self._measure_start),
        )
        self._emit(force=first or batches_done >= batches_total)

    def finish(self, state: str, error: str | None = None) -> None:
        if state not in ("done", "failed"):
            raise ValueError(f"finish state must be done or failed, not {state!r}")
        self.record.update(state=state, error=error)
        if self._measure_cpu_start is not None:
            self.record["measured_cpu_s"] = round(self.cpu_s() - self._measure_cpu_start, 3)
        if state == "done":
            self.record["eta_s"] = 0.0
        self._emit(force=True)

    def _emit(self, *, force: bool) -> None:
        t = self.now()
        if not force and t - self._last_write < self.min_interval_s:
            return
        self.record["updated_at"] = iso(t)
        self._last_write = t
        self.write(dict(self.record))


def effective_state(
    record: Mapping[str, Any],
    *,
    now_s: float,
    this_host: str,
    pid_alive: Callable[[int], bool],
    stale_s: float = DEFAULT_STALE_S,
) -> str:
    """The state to show: a live `running`/`starting` whose process is gone reads `lost`."""
    state = str(record.get("state") or "unknown")
    if state not in ("running", "starting"):
        return state
    pid = record.get("pid")
    if record.get("host") == this_host and isinstance(pid, int) and not pid_alive(pid):
        return LOST
    updated = parse_iso(record.get("updated_at"))
    if record.get("host") != this_host and updated is not None and now_s - updated > stale_s:
        return STALE
    return state


def _fmt_duration(seconds: Any) -> str:
    if not isinstance(seconds, int | float) or not math.isfinite(seconds):
        return "-"
    s = round(seconds)
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s" if m else f"{s}s"


def status_rows(
    records: Iterable[Mapping[str, Any]],
    *,
    now_s: float,
    this_host: str,
    pid_alive: Callable[[int], bool],
    stale_s: float = DEFAULT_STALE_S,
) -> list[dict[str, Any]]:
    rows = []
    for rec in sorted(records, key=lambda r: str(r.get("unit"))):
        state = effective_state(
            rec, now_s=now_s, this_host=this_host, pid_alive=pid_alive, stale_s=stale_s
        )
        row = {k: rec.get(k) for k in STATUS_KEYS}
        row.update(state=state, eta_s=row["eta_s"] if state in ("running", "starting") else None)
        rows.append(row)
    return rows


def format_status(rows: list[Mapping[str, Any]]) -> str:
    """A fixed-width table (unit, state, done/total batches, ETA, GPU, host) and a total line."""
    header = ("unit", "state", "done/total", "ETA", "GPU", "host")
    lines = [header]
    for r in rows:
        total = r.get("batches_total")
        done = f"{r.get('batches_done') or 0}/{total if total is not None else '?'}"
        gpu, host = str(r.get("gpu_uuid") or "-"), str(r.get("host") or "-")
        lines.append(
            (str(r["unit"]), str(r["state"]), done, _fmt_duration(r.get("eta_s")), gpu, host)
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = [
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines
    ]
    counts = Counter(str(r["state"]) for r in rows)
    done_b = sum(int(r.get("batches_done") or 0) for r in rows)
    total_b = sum(int(r.get("batches_total") or 0) for r in rows)
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    out.append(f"{len(rows)} unit(s): {summary or 'none'}; batches {done_b}/{total_b}")
    out += [f"{r['unit']}: {r['error']}" for r in rows if r.get("error")]
    return "\n".join(out)
