"""Several GPUs measured and controlled as one `Device` (a model that spans them): how energy,
clocks, throttling and control combine, and why, is in docs/device.md, "Models on several GPUs".
`uuid()` is the members' UUIDs joined by `_` (survives journal file names) in member order."""

from __future__ import annotations

import functools
import operator
from collections.abc import Sequence
from typing import Any

from llm_energy.device.base import ClockState, Device, GpuProcess, ThrottleCounters
from llm_energy.device.errors import DeviceError

GROUP_SEP = "_"  # NVIDIA and simulated UUIDs never contain it; journal names keep it


def split_group_uuid(uuid: str) -> list[str]:
    """The member UUIDs of a group id (a plain UUID gives itself)."""
    return [u for u in uuid.split(GROUP_SEP) if u]


class DeviceGroup(Device):
    """See the module docstring. Members must share one backend; the first is the primary."""

    def __init__(self, members: Sequence[Device]) -> None:
        if len(members) < 2:
            raise ValueError("a DeviceGroup needs at least two devices")
        backends = {m.backend for m in members}
        if len(backends) != 1:
            raise ValueError(f"a DeviceGroup needs one backend, got {sorted(backends)}")
        super().__init__(members[0].index)
        self.members = list(members)
        self.backend = members[0].backend
        self.requires_privilege = any(m.requires_privilege for m in members)
        self._last_primary_j: float | None = None
        self._others_j = 0.0
        # Simulated clocks move when read: every member is read at every read, in lockstep.
        self._lockstep = self.backend == "simulated"

    @property
    def primary(self) -> Device:
        return self.members[0]

    def member_devices(self) -> list[Device]:
        return list(self.members)

    @property
    def energy_source(self) -> str:
        return self.primary.energy_source

    def uuid(self) -> str:
        return GROUP_SEP.join(m.uuid() for m in self.members)

    def name(self) -> str:
        names = [m.name() for m in self.members]
        return f"{len(names)}x {names[0]}" if len(set(names)) == 1 else " + ".join(names)

    def provenance(self) -> dict[str, Any]:
        return super().provenance() | {
            "gpu_count": len(self.members),
            "members": [m.provenance() for m in self.members],
        }

    def open_spec(self) -> dict[str, Any]:
        # `index` (the primary's) stays: open_device requires it and ignores it given `indices`
        return self.primary.open_spec() | {"indices": [m.index for m in self.members]}

    def _counter(self) -> tuple[float, float]:
        e_primary, t = self.primary.read_counter()
        if self._lockstep or self._last_primary_j is None or e_primary != self._last_primary_j:
            self._others_j = sum(m.energy_counter_j() for m in self.members[1:])
            self._last_primary_j = e_primary
        return e_primary + self._others_j, t

    def energy_counter_j(self) -> float:
        return self._counter()[0]

    def read_counter(self) -> tuple[float, float]:
        return self._counter()

    def energy_counter_max_j(self) -> float | None:
        return None  # a sum of counters cannot be unwrapped; a backwards sum is a reset

    def nominal_update_period_s(self) -> float | None:
        return self.primary.nominal_update_period_s()

    def power_w(self) -> float:
        return sum(m.power_w() for m in self.members)

    def now_s(self) -> float:
        if self._lockstep:
            for m in self.members[1:]:
                m.now_s()
        return self.primary.now_s()

    def synchronize(self) -> None:
        self._each("synchronize")

    def window_begin(self) -> None:
        self._each("window_begin")

    def window_end(self) -> None:
        self._each("window_end")

    # Simulated GPUs: the whole model's work runs on the first member while the others idle
    # through it (a lower bound for a real split; see docs/device.md).
    def use_workload_clock(self) -> None:
        for m in self.members:
            m.use_workload_clock()  # type: ignore[attr-defined]

    def run_workload(self, work: Any) -> Any:
        timing = self.primary.run_workload(work)  # type: ignore[attr-defined]
        for m in self.members[1:]:
            m.idle_for_s(timing.time_s)  # type: ignore[attr-defined]
        return timing

    def _each(self, fn: str, *args: Any) -> list[Any]:
        return [getattr(m, fn)(*args) for m in self.members]

    def _known(self, fn: str, pick: Any = min) -> Any:
        values = [v for v in self._each(fn) if v is not None]
        return pick(values) if values else None

    def sm_clock_mhz(self) -> int | None:
        return self._known("sm_clock_mhz")

    def mem_clock_mhz(self) -> int | None:
        return self._known("mem_clock_mhz")

    def sample_timestamp_us(self) -> int:
        return self.primary.sample_timestamp_us()

    def sm_clock_samples_mhz(self, since_us: int) -> list[float] | None:
        got = self._each("sm_clock_samples_mhz", since_us)
        if any(g is None for g in got):
            return None  # a member without samples cannot confirm its clock
        return [v for g in got for v in g]

    def clock_event_reasons(self) -> int:
        return functools.reduce(operator.or_, map(int, self._each("clock_event_reasons")), 0)

    def throttle_counters(self) -> ThrottleCounters | None:
        got = self._each("throttle_counters")
        if any(g is None for g in got):
            return None
        sources = sorted({g.source for g in got})
        return ThrottleCounters(
            "+".join(sources), sum(g.power_s for g in got), sum(g.thermal_s for g in got)
        )

    def temperature_c(self) -> float | None:
        return self._known("temperature_c", max)

    def supported_mem_clocks_mhz(self) -> list[int]:
        common = set.intersection(*(set(v) for v in self._each("supported_mem_clocks_mhz")))
        return sorted(common, reverse=True)

    def supported_sm_clocks_mhz(self, mem_mhz: int | None = None) -> list[int]:
        got = self._each("supported_sm_clocks_mhz", mem_mhz)
        return sorted(set.intersection(*(set(v) for v in got)), reverse=True)

    def power_limit_w(self) -> float | None:
        return self._known("power_limit_w")  # per GPU: the lowest member's

    def power_limit_range_w(self) -> tuple[float, float] | None:
        got = self._each("power_limit_range_w")  # what every member accepts
        return None if None in got else (max(r[0] for r in got), min(r[1] for r in got))

    def other_processes(self) -> list[GpuProcess]:
        seen: dict[int, GpuProcess] = {}
        for procs in self._each("other_processes"):
            for p in procs:
                seen.setdefault(p.pid, p)
        return sorted(seen.values(), key=lambda q: q.pid)

    def clock_details(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for m in self.members:
            details = getattr(m, "clock_details", None)
            out[m.uuid()] = details() if callable(details) else None
        return out

    def can_control_clocks(self) -> bool:
        return all(self._each("can_control_clocks"))

    def clock_state(self) -> ClockState:
        states = [(m.uuid(), m.clock_state()) for m in self.members]

        def common(field: str) -> Any:
            values = {getattr(st, field) for _, st in states}
            return values.pop() if len(values) == 1 else None

        return ClockState(
            common("sm_locked_mhz"),
            common("mem_locked_mhz"),
            common("power_limit_w"),
            locks_known=all(st.locks_known for _, st in states),
            members=tuple(states),
        )

    def _reset_all(self, setter: str) -> None:
        # Resets try every member, then report every failure: one bad GPU must not leave the
        # others locked.
        problems = []
        for m in self.members:
            try:
                getattr(m, setter)()
            except (DeviceError, OSError) as err:
                problems.append(f"GPU {m.uuid()}: {err}")
        if problems:
            raise DeviceError(
                f"Cannot {setter.replace('_', ' ')} on every GPU of {self.uuid()}",
                "; ".join(problems),
                "Run `llm-energy gpu restore` (with sudo where clocks need root).",
            )

    # Setters stop at the first failure: the session's journal already marks the setting
    # changed on the whole group, so its restore puts back every member.
    def lock_sm_clocks(self, freq_mhz: int) -> None:
        self._each("lock_sm_clocks", freq_mhz)

    def reset_sm_clocks(self) -> None:
        self._reset_all("reset_sm_clocks")

    def lock_mem_clocks(self, freq_mhz: int) -> None:
        self._each("lock_mem_clocks", freq_mhz)

    def reset_mem_clocks(self) -> None:
        self._reset_all("reset_mem_clocks")

    def set_power_limit_w(self, power_w: float) -> None:
        self._each("set_power_limit_w", power_w)

    def close(self) -> None:
        errors = []
        for m in self.members:
            try:
                m.close()
            except Exception as err:  # close every member whatever one raises
                errors.append(err)
        if errors:
            raise errors[0]

    def __repr__(self) -> str:
        return f"<DeviceGroup backend={self.backend} uuids={self.uuid()}>"
