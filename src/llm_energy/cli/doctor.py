"""`llm-energy doctor`: can a capped study run here? (pure: `cli/probe.py` gathers the facts).

The report is one dict: the screen and `--json` show the same facts. A fact that could not be
read is an `Unavailable` ("n/a (reason)"), never an exception."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llm_energy.config.clocks import ClockPointError
from llm_energy.config.feasibility import clock_cap_problem, requested_caps
from llm_energy.config.settings import Config
from llm_energy.device.freq import resolve_points, snap_to_supported, step_mhz
from llm_energy.record_types import ENERGY_KIND_BY_SOURCE


def alternatives(cfg: Config) -> str:
    """What to try instead, as doctor commands that run as printed; nothing already set."""
    tries = []
    if cfg.gpu.backend != "simulated":
        tries.append(
            "`llm-energy doctor gpu.backend=simulated` (a simulated GPU whose clocks lock)"
        )
    if cfg.gpu.control != "observe":
        tries.append("`llm-energy doctor gpu.control=observe` (measure at the clocks in force)")
    return "try " + " or ".join(tries) if tries else "no capped study runs with these settings"


EXIT_READY = 0
EXIT_NOT_READY = 1


@dataclass(frozen=True)
class Unavailable:
    """A fact that could not be read, and why."""

    reason: str

    def __str__(self) -> str:
        return f"n/a ({self.reason})"


def _fact(facts: dict[str, Any], key: str) -> Any:
    # A device that did not open has no facts: each one says so.
    if key in facts:
        return facts[key]
    return Unavailable(f"device not opened: {facts.get('open_error', 'unknown reason')}")


def lock_problem(facts: dict[str, Any]) -> str | None:
    """Why GPU clocks cannot be locked on this device; None when they can."""
    if "open_error" in facts:
        return f"the {facts.get('backend', '?')} device could not be opened: {facts['open_error']}"
    if _fact(facts, "can_control_clocks") is not True:
        found = (
            " (gpu.backend=auto found no NVIDIA GPU)"
            if facts.get("requested_backend") == "auto" and facts["backend"] == "cpu"
            else ""
        )
        return f"the {facts['backend']} backend{found} has no controllable GPU clocks"
    if facts.get("requires_privilege") and _fact(facts, "privileged") is not True:
        return "this process is neither root nor has CAP_SYS_ADMIN, which NVML needs to lock clocks"
    sm = _fact(facts, "supported_sm_clocks_mhz")
    if isinstance(sm, Unavailable):
        return f"the supported SM clocks cannot be read ({sm.reason})"
    if not sm:
        return "the device reports no supported SM clocks"
    return None


def privilege_sentence(facts: dict[str, Any]) -> str:
    """Whether this user may lock clocks; else the paths that need no root."""
    if facts.get("requires_privilege") is False:
        return f"not needed by the {facts.get('backend')} backend"
    privileged = _fact(facts, "privileged")
    if privileged is True:
        return "root or CAP_SYS_ADMIN: this user may lock clocks (gpu.control=lock)"
    freq = facts.get("slurm_gpu_freq")
    slurm = f"SLURM was asked --gpu-freq={freq}" if freq else "submit with sbatch --gpu-freq=MHz"
    why = "neither root nor CAP_SYS_ADMIN" if privileged is False else str(privileged)
    return (
        f"this user may not lock clocks ({why}); without root: gpu.control=slurm ({slurm}) "
        "or gpu.control=observe (the clocks in force)"
    )


def cap_sentences(cfg: Config, facts: dict[str, Any], problem: str | None) -> list[str]:
    """What each requested cap (gpu.freq, sweep.freqs_mhz, gpu.mem_freq) would do here."""
    caps = requested_caps(cfg)
    if not caps:
        return ["gpu.freq=null → no lock: the driver's default clocks"]
    if problem is None:  # the project's own check, as the validate stage runs it
        nvml = facts.get("backend") == "nvml"
        problem = clock_cap_problem(cfg, nvml_gpu_found=nvml, privileged=True)
    out = []
    for key, mhz in caps:
        label = f"{key}={mhz}"
        if cfg.gpu.control != "lock":
            out.append(
                f"{label} → not locked: gpu.control={cfg.gpu.control} never calls a setter "
                "(the clocks in force are recorded)"
            )
            continue
        if problem is not None:
            out.append(f"{label} → refused: {problem}; {alternatives(cfg)}")
            continue
        mem = "mem_freq" in key
        what = "memory" if mem else "SM"
        supported = _fact(facts, "supported_mem_clocks_mhz" if mem else "supported_sm_clocks_mhz")
        if isinstance(supported, Unavailable) or not supported:
            why = supported.reason if isinstance(supported, Unavailable) else "none reported"
            out.append(
                f"{label} → refused: no supported {what} clocks ({why}); {alternatives(cfg)}"
            )
            continue
        if mem:
            applied, snapped = snap_to_supported(mhz, supported)
            note = f"snapped from {mhz}, the nearest supported clock" if snapped else "supported"
            out.append(f"{label} → lock {what} at {applied} MHz ({note})")
            continue
        try:
            resolved = resolve_points([(key, mhz)], supported)
        except ClockPointError as exc:
            out.append(f"{label} → refused: {exc}")
            continue
        for _, applied in resolved:
            if applied == mhz:
                how = "supported"
            elif isinstance(mhz, int):
                how = f"snapped from {mhz}, the nearest supported clock"
            elif str(mhz).startswith("auto:"):
                how = f"{mhz}: evenly spaced over this device's {len(supported)} clocks"
            else:
                how = f"{mhz} of this device's {max(supported)} MHz"
            out.append(f"{label} → lock {what} at {applied} MHz ({how})")
    sm_points = [(k, v) for k, v in caps if k != "gpu.mem_freq"]
    sm_clocks = _fact(facts, "supported_sm_clocks_mhz")
    refused = any("→ refused" in x for x in out)
    if cfg.gpu.control == "lock" and problem is None and sm_clocks and not refused:
        try:  # points that resolve one by one can still land on one clock together
            resolve_points(sm_points, sm_clocks)
        except ClockPointError as exc:
            out.append(f"sweep → refused: {exc}")
    return out


def _clock_summary(clocks: Any) -> Any:
    if isinstance(clocks, Unavailable) or not clocks:
        return clocks if isinstance(clocks, Unavailable) else None
    lo, hi = min(clocks), max(clocks)
    return {"min_mhz": lo, "max_mhz": hi, "count": len(clocks), "step_mhz": step_mhz(clocks)}


def _state_summary(state: Any) -> tuple[Any, Any]:
    """(pending journals, held locks) from recovery's state report."""
    if isinstance(state, Unavailable):
        return state, state
    journals = [
        {"uuid": j.get("uuid"), "state": j.get("state"), "fix": j.get("fix")}
        for j in state.get("journals", [])
        if j.get("state") != "gone"
    ]
    locks = [
        {"uuid": lk.get("uuid"), "holder": lk.get("holder")}
        for lk in state.get("locks", [])
        if lk.get("held")
    ]
    return journals, locks


def build_report(cfg: Config, facts: dict[str, Any], state: Any) -> dict[str, Any]:
    """Every fact the doctor shows, plus the verdict and exit code."""
    problem = lock_problem(facts)
    caps = cap_sentences(cfg, facts, problem)
    refused = any("→ refused" in line for line in caps)
    source = _fact(facts, "energy_source")
    kind = (
        source if isinstance(source, Unavailable) else ENERGY_KIND_BY_SOURCE.get(source, "unknown")
    )
    counter = _fact(facts, "counter")
    journals, locks = _state_summary(state)
    ready = problem is None and not refused
    return {
        "params": {k: getattr(cfg.gpu, k) for k in ("backend", "index", "control", "freq")},
        "device": {
            "backend": facts.get("backend"),
            "index": facts.get("index"),
            "name": _fact(facts, "name"),
            "uuid": _fact(facts, "uuid"),
            **{
                k: _reported(facts, k)
                for k in "driver_version cuda_driver_version nvml_version".split()
            },
        },
        "torch": facts.get("torch", Unavailable("torch not probed")),
        "power_limit_w": _reported(facts, "power_limit_w"),
        "power_limit_range_w": _reported(facts, "power_limit_range_w"),
        "privilege": privilege_sentence(facts),
        "energy": {"source": source, "kind": kind},
        "counter": counter,
        "sm_clocks": _clock_summary(_fact(facts, "supported_sm_clocks_mhz")),
        "mem_clocks_mhz": _fact(facts, "supported_mem_clocks_mhz"),
        "clock_lock": {"possible": problem is None, "why_not": problem},
        "other_processes": _fact(facts, "other_processes"),
        "pending_journals": journals,
        "held_locks": locks,
        "caps": caps,
        "ready": ready,
        "alternatives": None if ready else alternatives(cfg),
        "exit_code": EXIT_READY if ready else EXIT_NOT_READY,
    }


def _reported(facts: dict[str, Any], key: str) -> Any:
    value = _fact(facts, key)
    if value is None:  # only NVML reports versions and power-limit ranges
        return Unavailable(f"not reported by the {facts.get('backend')} backend")
    return value


def to_jsonable(value: Any) -> Any:
    """The report with every Unavailable written "n/a (reason)"."""
    if isinstance(value, Unavailable):
        return str(value)
    if isinstance(value, dict):
        return {k: to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    return value


def _counter_line(counter: Any) -> str:
    if isinstance(counter, Unavailable) or not isinstance(counter, dict):
        return str(counter)
    period = counter["update_period_s"]
    if period <= 0:
        return "no ticks (an estimate of power × time) → no minimum window from the counter"
    return (
        f"updates every {period:.3f} s ({counter['how']}) → minimum trusted window "
        f"{counter['min_trusted_window_s']:g} s"
    )


def _versions_line(d: dict[str, Any]) -> str:
    versions = (d["driver_version"], d["cuda_driver_version"], d["nvml_version"])
    if all(isinstance(v, Unavailable) for v in versions) and len({str(v) for v in versions}) == 1:
        return str(versions[0])  # one reason for all three (no NVIDIA driver on this backend)
    return f"driver {versions[0]} · CUDA {versions[1]} · NVML {versions[2]}"


def _torch_lines(t: Any, nvml_uuid: Any) -> tuple[str, str]:
    """(torch's build and CUDA availability, the torch device a run uses)."""
    if isinstance(t, Unavailable):
        return str(t), str(t)
    build = f"CUDA {t['cuda_build']} build" if t["cuda_build"] else "CPU-only build"
    found = f"{t['device_count']} CUDA device(s)" if t["cuda_available"] else "CUDA not available"
    dev = t["device"]
    matched = f"{dev} = {nvml_uuid} (matched by UUID)" if str(dev).startswith("cuda:") else dev
    return f"{t['version']} ({build}) · {found}", str(matched)


def _power_line(limit_w: Any, range_w: Any) -> str:
    if isinstance(limit_w, Unavailable):
        return str(limit_w)
    rng = f"{range_w[0]:g}–{range_w[1]:g} W" if isinstance(range_w, list) else str(range_w)
    return f"{limit_w:g} W (range {rng})"


def _list_line(items: Any, describe: Any, empty: str) -> str:
    if isinstance(items, Unavailable):
        return str(items)
    if not items:
        return empty
    more = f"; … {len(items) - 5} more" if len(items) > 5 else ""
    return "; ".join(describe(x) for x in items[:5]) + more


def _process(p: dict[str, Any]) -> str:
    mem = p.get("used_memory_bytes")
    extra = ", ".join(x for x in (p.get("name"), f"{mem / 2**30:.1f} GiB" if mem else None) if x)
    return f"pid {p['pid']}" + (f" ({extra})" if extra else "")


def _journal(j: dict[str, Any]) -> str:
    return f"{j['uuid']} {j['state']}" + (f" (fix: {j['fix']})" if j["fix"] else "")


def _lock(lk: dict[str, Any]) -> str:
    return f"{lk['uuid']} held by {lk['holder']}"


def format_screen(report: dict[str, Any]) -> str:
    """One screen: the device, energy, counter, clocks, lockability, neighbours, verdict."""
    d, p, sm = report["device"], report["params"], report["sm_clocks"]
    energy = report["energy"]
    sm_line = (
        f"{sm['min_mhz']}–{sm['max_mhz']} MHz, {sm['count']} clocks, step {sm['step_mhz']} MHz"
        if isinstance(sm, dict)
        else (str(sm) if sm is not None else "none (no controllable GPU clocks)")
    )
    mem = report["mem_clocks_mhz"]
    mem_line = (
        str(mem)
        if isinstance(mem, Unavailable)
        else (", ".join(map(str, mem)) + " MHz" if mem else "none")
    )
    lock = report["clock_lock"]
    torch_line, torch_device = _torch_lines(report["torch"], d["uuid"])
    rows = [
        ("device", f"{d['name']} ({d['backend']} backend, index {d['index']}, {d['uuid']})"),
        ("versions", _versions_line(d)),
        ("torch", torch_line),
        ("torch device", torch_device),
        ("energy", f"{energy['source']} ({energy['kind']})"),
        ("counter", _counter_line(report["counter"])),
        ("SM clocks", sm_line),
        ("memory clocks", mem_line),
        ("power limit", _power_line(report["power_limit_w"], report["power_limit_range_w"])),
        ("clock lock", "possible here" if lock["possible"] else f"not possible: {lock['why_not']}"),
        ("privilege", report["privilege"]),
        ("other procs", _list_line(report["other_processes"], _process, "none")),
        ("journals", _list_line(report["pending_journals"], _journal, "none pending")),
        ("GPU locks", _list_line(report["held_locks"], _lock, "none held")),
        ("params", " ".join(f"gpu.{k}={'null' if v is None else v}" for k, v in p.items())),
    ]
    lines = ["llm-energy doctor"] + [f"  {k:<14}{v}" for k, v in rows]
    lines += [f"  {s}" for s in report["caps"]]
    verdict = (
        "READY: a capped study can run here (exit 0)"
        if report["ready"]
        else f"NOT READY for a capped study (exit 1): {report['alternatives']}"
    )
    lines.append(f"  {'verdict':<14}{verdict}")
    return "\n".join(lines)
