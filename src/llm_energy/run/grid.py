"""`llm-energy grid`: a study expanded into units for DVC's queue or a SLURM array: one model x
one task with the clock sweep inside (one cap per unit under `gpu.control=slurm`: one
`--gpu-freq` per step); other swept keys multiply the units. Pure."""

from __future__ import annotations

import contextlib
import functools
import itertools
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from llm_energy.config.clocks import ClockPointError, point_kind

CLOCK_KEY = "gpu.freq"
SLURM_CONTROL = "slurm"
_NAME_BAD = re.compile(r"[^A-Za-z0-9._-]+")


class GridError(ValueError):
    """A sweep or unit that cannot be expanded or queued; the message is one line."""


@dataclass(frozen=True)
class Composition:
    """What `describe` tells about one composition of conf/ (see cli)."""

    experiment: str  # meta.experiment
    model: str  # the model group's option, e.g. gpt2
    tasks: tuple[str, ...]  # task names, in conf order
    freqs_mhz: tuple[int | None, ...]  # sweep.freqs_mhz (None: driver default clocks)
    control: str  # gpu.control
    grid_models: tuple[str, ...] = ()  # meta.grid_models: the models the study spans


@dataclass(frozen=True)
class Unit:
    """One `dvc exp run -n NAME -S ...`: a readable stable name and its Hydra overrides."""

    name: str
    overrides: tuple[str, ...]
    model: str
    task: str
    freqs_mhz: tuple[int | None, ...] = ()  # caps run inside this unit, in order
    slurm_freq_mhz: int | None = None  # the `--gpu-freq` of this unit (gpu.control=slurm only)
    extra: Mapping[str, str] = field(default_factory=dict)  # other swept keys -> value

    def to_dict(self) -> dict[str, Any]:
        lists = {"overrides": list(self.overrides), "freqs_mhz": list(self.freqs_mhz)}
        return asdict(self) | lists | {"extra": dict(self.extra)}


def split_top_level(text: str, sep: str = ",") -> list[str]:
    """Split on `sep` outside brackets, braces and quotes (Hydra's sweep syntax `a,[b,c]`)."""
    parts, depth, quote, cur = [], 0, "", []
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        elif ch == sep and depth == 0:
            parts.append("".join(cur).strip())
            cur = []
            continue
        cur.append(ch)
    parts.append("".join(cur).strip())
    return parts


def parse_sweep(arg: str) -> tuple[str, list[str]]:
    """`key=a,b` -> (key, [a, b]); `key=a` -> (key, [a])."""
    key, eq, value = arg.partition("=")
    key = key.strip()
    if not eq or not key or not value.strip():
        raise GridError(f"-S {arg!r} is not KEY=VALUE[,VALUE...]: e.g. -S model=gpt2,mistral_7b")
    values = split_top_level(value)
    if any(not v for v in values):
        raise GridError(f"-S {arg!r} has an empty value: remove the extra comma")
    return key, values


def parse_sweeps(args: Iterable[str]) -> dict[str, list[str]]:
    sweeps: dict[str, list[str]] = {}
    for arg in args:
        key, values = parse_sweep(arg)
        if key in sweeps:
            raise GridError(f"-S {key}=... given twice: give all its values once, comma-separated")
        sweeps[key] = values
    return sweeps


def _task_values(value: str) -> list[str]:
    """`qa` or `[qa,squad_v2]` -> task names."""
    inner = value.strip()
    if inner.startswith("[") and inner.endswith("]"):
        inner = inner[1:-1]
    return [t for t in split_top_level(inner) if t]


def _freq(value: str) -> int | float | str | None:
    """A `-S gpu.freq=...` value: MHz, a fraction ("0.5", "50%"), "auto:N" or null."""
    text = value.strip()
    if text.lower() in ("null", "none", "~"):
        return None
    point: int | float | str = text
    for parse in (float, int):  # the last that parses wins: int where both do
        with contextlib.suppress(ValueError):
            point = parse(text)
    try:
        point_kind(point)
    except ClockPointError as exc:
        raise GridError(f"gpu.freq value {value!r}: {exc}") from None
    return point


def hydra_list(values: Sequence[Any]) -> str:
    return "[" + ",".join("null" if v is None else str(v) for v in values) + "]"


def safe_name(*parts: str) -> str:
    """A DVC experiment name (a git ref part): letters, digits, `.`, `_`, `-`."""
    name = "-".join(_NAME_BAD.sub("_", p).strip("_.-") for p in parts if p)
    return re.sub(r"\.{2,}", ".", name)


def _suffix(key: str, value: str) -> str:
    return f"{key.rsplit('.', 1)[-1]}{value}"


def expand(
    base: Sequence[str],
    sweeps: Mapping[str, Sequence[str]],
    describe: Callable[[Sequence[str]], Composition],
) -> list[Unit]:
    """Units of `base` overrides (e.g. ["experiment=paper"]) times the `-S` sweeps."""
    models = list(sweeps.get("model", [None]))  # type: ignore[list-item]
    if "model" not in sweeps:  # the experiment names the models it spans (meta.grid_models)
        models = list(describe(list(base)).grid_models) or models
    task_sets = [_task_values(v) for v in sweeps["task"]] if "task" in sweeps else [None]
    clock = [_freq(v) for v in sweeps[CLOCK_KEY]] if CLOCK_KEY in sweeps else None
    others = {k: list(v) for k, v in sweeps.items() if k not in ("model", "task", CLOCK_KEY)}
    units: list[Unit] = []
    for model in models:
        for combo in itertools.product(*others.values()) if others else [()]:
            extra = dict(zip(others, combo, strict=True))
            fixed = [*base, *([f"model={model}"] if model else [])]
            fixed += [f"{k}={v}" for k, v in extra.items()]
            if clock is not None and len(clock) == 1:
                fixed.append(f"{CLOCK_KEY}={hydra_list(clock)[1:-1]}")
            comp = describe(fixed)
            tasks: list[str] = []
            for task_set in task_sets:
                tasks += task_set if task_set is not None else list(comp.tasks)
            freqs = tuple(clock) if clock is not None and len(clock) > 1 else comp.freqs_mhz
            for task in dict.fromkeys(tasks):
                named = {k: v for k, v in extra.items() if len(others[k]) > 1}  # swept keys only
                units += _units_for(
                    comp, fixed, task, freqs, extra, fold=clock is not None, named=named
                )
    names = [u.name for u in units]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise GridError(f"two units would both be named {dupes[0]}: sweep fewer keys at once")
    if not units:
        raise GridError("the grid is empty: the composition selects no task")
    return units


def _units_for(
    comp: Composition,
    fixed: Sequence[str],
    task: str,
    freqs: Sequence[int | None],
    extra: Mapping[str, str],
    *,
    fold: bool,
    named: Mapping[str, str],
) -> list[Unit]:
    head = [comp.experiment, comp.model, task, *(_suffix(k, v) for k, v in named.items())]
    if comp.control == SLURM_CONTROL and any(
        f is not None and not isinstance(f, int) for f in freqs
    ):
        raise GridError(
            "gpu.control=slurm needs clocks in MHz: SLURM's --gpu-freq takes MHz, so "
            f"{hydra_list(freqs)} cannot be resolved on the node; write the MHz of its GPUs"
        )
    overrides = [*fixed, f"task=[{task}]"]
    swept = fold and len(freqs) > 1  # a -S gpu.freq=a,b sweep becomes the unit's clock sweep
    if comp.control != SLURM_CONTROL or len(freqs) <= 1:
        if swept:
            overrides.append(f"sweep.freqs_mhz={hydra_list(freqs)}")
        cap = freqs[0] if comp.control == SLURM_CONTROL and len(freqs) == 1 else None
        unit = Unit(safe_name(*head), tuple(overrides), comp.model, task, tuple(freqs), cap, extra)
        return [unit]
    units = []
    for f in freqs:  # one unit per cap: SLURM applies one --gpu-freq per job step
        name = safe_name(*head, "default" if f is None else f"{f}mhz")
        sets = (*overrides, f"sweep.freqs_mhz={hydra_list([f])}")
        units.append(Unit(name, sets, comp.model, task, (f,), f, extra))
    return units


# A unit stops at its statistics (what `dvc exp show` and `llm-energy compare` read); its figures
# and report are rendered on demand: `dvc exp apply NAME && dvc repro plots`.
UNIT_TARGET = "stats"


def queue_command(unit: Unit, dvc: Sequence[str] = ("dvc",)) -> list[str]:
    """`dvc exp run --queue -n NAME -S ... stats` for one unit."""
    sets = [a for o in unit.overrides for a in ("-S", o)]
    return [*dvc, "exp", "run", "--queue", "-n", unit.name, *sets, UNIT_TARGET]


def slurm_unit_line(unit: Unit) -> str:
    """One line of the array's unit list, tab-separated: NAME, the `--gpu-freq` in MHz (`-`:
    none; bash's `read` would merge an empty field), then the Hydra overrides."""
    fields = [unit.name, "-" if unit.slurm_freq_mhz is None else str(unit.slurm_freq_mhz)]
    fields += list(unit.overrides)
    if any("\t" in f or "\n" in f for f in fields):
        raise GridError(f"unit {unit.name}: an override holds a tab or newline; remove it")
    return "\t".join(fields)


def prepare_overrides(units: Sequence[Unit]) -> list[tuple[str, ...]]:
    """Distinct override sets that fix what `prepare` and `model` read (model and task, minus the
    clocks), so each is run once before queueing and the workers hit DVC's run-cache."""
    clocks = ("sweep.freqs_mhz=", f"{CLOCK_KEY}=")
    kept = (tuple(o for o in u.overrides if not o.startswith(clocks)) for u in units)
    return list(dict.fromkeys(kept))


NOMINAL_INPUT_TOKENS = 256  # a unit without input-length targets keeps the items' own lengths


@dataclass(frozen=True)
class UnitSize:
    points: int  # sweep points (power limits x memory clocks x caps x lengths x batches x engines)
    requests: int  # measured requests: items x repetitions x points (warm-up excluded)
    gpu_s: float  # generate time on a simulated H200 at each cap (roofline), an estimate


def unit_size(cfg: Any) -> UnitSize:
    """How big one unit is, and its generate time on a simulated H200 (sim/roofline.py at each
    cap's clock): an order of magnitude for planning, labelled an estimate where printed."""
    from llm_energy.device.freq import resolve_points
    from llm_energy.sim.generate import workload_for
    from llm_energy.sim.model import H200
    from llm_energy.sim.roofline import workload_cost

    sweep, infer = cfg.sweep, cfg.infer
    clocks = range(H200.sm_min_mhz, H200.sm_max_mhz + 1, H200.sm_step_mhz)
    points = [(f"sweep.freqs_mhz[{i}]", p) for i, p in enumerate(sweep.freqs_mhz or (None,))]
    caps = [mhz for _, mhz in resolve_points(points, clocks)]  # as a run on an H200 would
    inputs = sweep.input_tokens or (infer.input_tokens or NOMINAL_INPUT_TOKENS,)
    outputs = sweep.output_tokens or tuple(
        infer.output_tokens or t.output_tokens for t in cfg.tasks
    )
    batches = sweep.batch_sizes or (infer.batch_size,)
    engines = sweep.engines or (infer.engine,)
    per_point = cfg.prepare.n_items * infer.repetitions * len(cfg.tasks)
    knobs = len(sweep.power_limits_w or (None,)) * len(sweep.mem_freqs_mhz or (None,))
    workload = functools.partial(workload_for, cfg.model, compiled=infer.compile)
    points, gpu_s = 0, 0.0
    for cap, n_in, n_out, batch, engine in itertools.product(
        caps, inputs, outputs, batches, engines
    ):
        points += knobs
        w = workload(batch=batch, prompt_tokens=n_in, new_tokens=n_out, engine=engine)
        f_rel = 1.0 if cap is None else min(cap, H200.sm_max_mhz) / H200.sm_max_mhz
        calls = -(-per_point // batch)  # the batches of one point, the last one short
        gpu_s += knobs * workload_cost(H200.roofline, w, f_rel=f_rel).time_s * calls
    return UnitSize(points=points, requests=points * per_point, gpu_s=gpu_s)
