"""Taking GPUs for a run: the first free one (`gpu.index=auto`), a fixed one, or several (all or
nothing, in UUID order). Waiting (`gpu.wait_for_gpu_s`) polls non-blocking tries, never a
blocking flock, so the wait has a deadline and a refusal can still name the holder."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from llm_energy.control.gpulock import (
    GpuLease,
    acquire_gpu,
    describe_holder,
    lock_path,
    try_acquire_gpu,
)
from llm_energy.device.errors import DeviceNotFoundError, SessionConflictError

log = logging.getLogger(__name__)

WAIT_POLL_S = 0.5  # how often a run waiting for a free GPU (gpu.wait_for_gpu_s) tries again


class GroupLease:
    """This process's locks on every GPU of a device group; `release()` drops them all."""

    def __init__(self, leases: Sequence[GpuLease]) -> None:
        self.leases = list(leases)
        self.uuid = "+".join(lease.uuid for lease in self.leases)

    def release(self) -> None:
        for lease in reversed(self.leases):
            lease.release()

    @property
    def released(self) -> bool:
        return all(lease.released for lease in self.leases)

    def __enter__(self) -> GroupLease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"<GroupLease {self.uuid} {'released' if self.released else 'held'}>"


Lease = GpuLease | GroupLease  # one GPU's or a group's: both release() and work in `with`


def try_acquire_gpus(lock_dir: Path, uuids: Sequence[str]) -> tuple[GroupLease | None, str | None]:
    """All or nothing: (lease on every GPU, None), or (None, the UUID found busy). Taken in UUID
    order, so two runs wanting overlapping sets never hold one GPU each and wait forever."""
    taken: list[GpuLease] = []
    for uuid in sorted(set(uuids)):
        try:
            lease = try_acquire_gpu(lock_dir, uuid)
        except BaseException:
            GroupLease(taken).release()
            raise
        if lease is None:
            GroupLease(taken).release()
            return None, uuid
        taken.append(lease)
    return GroupLease(taken), None


def acquire_gpus(
    lock_dir: Path, uuids: Sequence[str], *, asked: str, wait_for_gpu_s: float
) -> Lease:
    """A lease on one GPU (`acquire_gpu`) or on every GPU of a group, all or nothing; waits up
    to `wait_for_gpu_s` for busy ones, then SessionConflictError naming a holder."""
    if len(set(uuids)) == 1 and wait_for_gpu_s <= 0:
        return acquire_gpu(lock_dir, uuids[0], asked=asked)
    busy: list[str] = []

    def _once() -> GroupLease | None:
        lease, busy_uuid = try_acquire_gpus(lock_dir, uuids)
        busy[:] = [busy_uuid] if busy_uuid else []
        return lease

    lease = wait_for(_once, wait_for_gpu_s, f"GPU(s) {', '.join(uuids)} in use")
    if lease is None:
        who = describe_holder(lock_path(lock_dir, busy[0])) if busy else "another process"
        raise SessionConflictError(
            asked,
            f"GPU {busy[0] if busy else '?'} is in use by {who}{_waited(wait_for_gpu_s)}",
            "Wait for that run to finish, stop it, or set gpu.wait_for_gpu_s to wait longer.",
        )
    return lease


def wait_for(try_once: Callable[[], Any], wait_for_gpu_s: float, what: str) -> Any:
    """`try_once()` until it returns something, for at most `wait_for_gpu_s` (0: one try),
    polling every WAIT_POLL_S with non-blocking tries; logs once that it waits."""
    got = try_once()
    if got is not None or wait_for_gpu_s <= 0:
        return got
    log.warning("%s: waiting up to %g s for a free GPU (gpu.wait_for_gpu_s)", what, wait_for_gpu_s)
    deadline = time.monotonic() + wait_for_gpu_s
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(WAIT_POLL_S, left))
        got = try_once()
        if got is not None:
            return got
    return None


def _waited(wait_for_gpu_s: float) -> str:
    return f" (still after waiting {wait_for_gpu_s:g} s)" if wait_for_gpu_s > 0 else ""


def pick_gpu(
    candidates: Sequence[tuple[int, str]],
    index: int | str,
    lock_dir: Path,
    *,
    wait_for_gpu_s: float,
) -> tuple[int, str, GpuLease]:
    """(index, uuid, lease) of one allowed GPU: `auto` = the first free one, else `index`."""
    if index != "auto":
        i, uuid = _find(candidates, [int(index)])[0]
        lease = wait_for(
            lambda: try_acquire_gpu(lock_dir, uuid), wait_for_gpu_s, f"GPU {i} ({uuid}) in use"
        )
        if lease is None:
            raise SessionConflictError(
                f"Cannot use GPU {i} for this run",
                f"GPU {uuid} is in use by {describe_holder(lock_path(lock_dir, uuid))}"
                + _waited(wait_for_gpu_s),
                "Wait for that run to finish (its exit restores the clocks), stop it, set "
                "gpu.index=auto to take a free GPU, or gpu.wait_for_gpu_s to wait for this one.",
            )
        return i, uuid, lease
    _find(candidates, [])

    def _first_free() -> tuple[int, str, GpuLease] | None:
        for i, uuid in candidates:
            lease = try_acquire_gpu(lock_dir, uuid)
            if lease is not None:
                return i, uuid, lease
        return None

    got = wait_for(_first_free, wait_for_gpu_s, f"all {len(candidates)} allowed GPU(s) in use")
    if got is not None:
        return got  # type: ignore[no-any-return]
    busy = [
        f"GPU {i} by {describe_holder(lock_path(lock_dir, uuid), wait_s=0.1)}"
        for i, uuid in candidates
    ]
    raise SessionConflictError(
        "Cannot pick a free GPU (gpu.index=auto)",
        f"all {len(candidates)} allowed GPU(s) are in use{_waited(wait_for_gpu_s)}: "
        + "; ".join(busy),
        "Wait for a run to finish, set gpu.wait_for_gpu_s to wait, or allow more GPUs "
        "(CUDA_VISIBLE_DEVICES / gpu.simulated_count).",
    )


def pick_gpus(
    candidates: Sequence[tuple[int, str]],
    indices: Sequence[int] | None,
    lock_dir: Path,
    *,
    wait_for_gpu_s: float,
) -> tuple[list[tuple[int, str]], GroupLease]:
    """Lock several allowed GPUs at once (a model that spans them): `indices`, or every allowed
    GPU when None (model.device_map=auto). All or nothing, in UUID order."""
    chosen = _find(candidates, list(indices) if indices is not None else None)
    uuids = [u for _, u in chosen]
    asked = f"Cannot use GPUs {', '.join(str(i) for i, _ in chosen)} for this run"
    lease = acquire_gpus(lock_dir, uuids, asked=asked, wait_for_gpu_s=wait_for_gpu_s)
    if isinstance(lease, GpuLease):  # a single GPU: still one lease type for the group
        lease = GroupLease([lease])
    return chosen, lease


def _find(candidates: Sequence[tuple[int, str]], wanted: list[int] | None) -> list[tuple[int, str]]:
    """The candidates with these indexes, in the order asked (None or []: all of them)."""
    if not candidates:
        asked = "GPU(s) " + ", ".join(map(str, wanted)) if wanted else "a GPU"
        raise DeviceNotFoundError(
            f"Cannot pick {asked}",
            "no GPU is allowed here",
            "Check nvidia-smi -L and CUDA_VISIBLE_DEVICES.",
        )
    if not wanted:
        return list(candidates)
    by_index = dict(candidates)
    missing = [i for i in wanted if i not in by_index]
    if missing or len(set(wanted)) != len(wanted):
        raise DeviceNotFoundError(
            f"Cannot open GPU(s) {', '.join(map(str, wanted))}",
            f"the allowed GPUs are indexes 0..{len(candidates) - 1}, each at most once",
            "Set gpu.index / model.device_map within range, or gpu.index=auto.",
        )
    return [(i, by_index[i]) for i in wanted]
