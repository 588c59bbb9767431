"""Shared pieces of the benchmarks: configs without Hydra, sample items, random-weight models,
warm-up to steady state and round-level counter windows (the statistics of the comparisons:
bench_stats.py).

Everything here (and every `llm_energy` module it imports) must run on a bare GPU host that has
only torch, transformers, nvidia-ml-py, pandas, scipy, statsmodels and PyYAML: no Hydra, DVC,
datasets, evaluate or codecarbon at module level (tests/pipeline/test_benchmarks.py blocks them).
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))

from llm_energy.config.settings import Config, apply_overrides  # noqa: E402
from llm_energy.io.files import iter_jsonl, read_jsonl, read_yaml  # noqa: E402
from llm_energy.run.warmup import is_steady  # noqa: E402
from llm_energy.workload.datasets import seeded_sample, task_spec  # noqa: E402
from llm_energy.workload.rows import collect_items  # noqa: E402

# What a bare GPU host lacks; the import-isolation test blocks exactly these.
HEAVY_MODULES: tuple[str, ...] = ("hydra", "omegaconf", "dvc", "datasets", "evaluate", "codecarbon")


# ---------------------------------------------------------------------------- configs and data
def benchmark_params(
    model_key: str,
    *,
    backend: str,
    dtype: str | None = None,
    overrides: Sequence[str] = (),
) -> dict[str, Any]:
    """params.yaml with `conf/model/<model_key>.yaml` as a random-weights model, observe mode,
    no sweep, no emissions tracking, no idle baselines (the comparisons here use total energy),
    then `overrides` (dotted keys, as for the stages)."""
    params = read_yaml(ROOT / "params.yaml")
    model = dict(read_yaml(ROOT / "conf" / "model" / f"{model_key}.yaml"))
    model["weights"] = "random"
    if dtype is not None:
        model["dtype"] = dtype
    params["model"] = model
    params["gpu"].update(
        backend=backend,
        control="observe",
        freq=None,
        mem_freq=None,
        power_limit_w=None,
        index=0,
        idle_baseline_s=0,
        idle_settle_s=0,
        cooldown_s=0,
        power_timeline_period_s=None,
    )
    params["emissions"]["enabled"] = False
    params["meta"]["experiment"] = "benchmark"
    for key in (
        "freqs_mhz",
        "input_tokens",
        "output_tokens",
        "batch_sizes",
        "engines",
        "power_limits_w",
        "mem_freqs_mhz",
    ):
        params["sweep"][key] = []
    return apply_overrides(params, list(overrides))


def require_observe(cfg: Config) -> None:
    """Benchmarks run on lent GPUs: refuse anything but observe mode at driver-default clocks."""
    if cfg.gpu.control != "observe" or cfg.gpu.freq is not None or cfg.gpu.mem_freq is not None:
        raise SystemExit(
            "refusing: benchmarks never change a GPU (gpu.control must be observe, gpu.freq and "
            f"gpu.mem_freq null; got control={cfg.gpu.control}, freq={cfg.gpu.freq}, "
            f"mem_freq={cfg.gpu.mem_freq})"
        )
    if cfg.gpu.power_limit_w is not None or cfg.sweep.power_limits_w or cfg.sweep.mem_freqs_mhz:
        raise SystemExit("refusing: benchmarks never set power limits or memory clocks")
    if cfg.sweep.freqs_mhz:
        raise SystemExit("refusing: benchmarks never sweep clocks (sweep.freqs_mhz must be empty)")


def restrict_tasks(params: Mapping[str, Any], names: Sequence[str]) -> dict[str, Any]:
    """A copy of params whose task section holds only `names` (in that order)."""
    result = dict(params)
    result["task"] = {name: params["task"][name] for name in names}
    return result


def sample_items(cfg: Config, task_name: str, n: int) -> list[dict[str, Any]]:
    """`n` prepared items of a task, built from data/samples the way the prepare stage does
    (llm_energy.workload.datasets, which needs no Hugging Face `datasets`)."""
    spec = task_spec(cfg.task(task_name))
    data_files = spec.dataset.data_files
    if not isinstance(data_files, str) or spec.dataset.path != "json":
        raise SystemExit(
            f"benchmarks read local JSON-lines samples only; task {task_name} has {data_files!r}"
        )
    items, _, _ = collect_items(read_jsonl(ROOT / data_files), spec)
    return [item.to_record() for item in seeded_sample(items, n, cfg.meta.seed)]


def sample_texts() -> list[str]:
    """Every string in the embedded samples: what the `model` stage trains the random-weights
    tokenizer on."""
    texts: list[str] = []
    for path in sorted((ROOT / "data" / "samples").glob("*.jsonl")):
        for row in iter_jsonl(path):
            texts += [v for v in row.values() if isinstance(v, str)]
    return texts


def build_generator(cfg: Config, device: Any, workdir: Path) -> Any:
    """Materialise the random-weights model (config + tokenizer, ~0.1 s) and load it the way the
    infer stage does: weights initialised directly on the target device in the configured dtype
    (a 7B model in bf16 on the GPU takes seconds; fp32 on the CPU first would take minutes)."""
    from llm_energy.io.models import materialize
    from llm_energy.run.engine import load_generator

    model_dir = workdir / cfg.model.name
    materialize(cfg.model, model_dir, sample_texts())
    return load_generator(
        cfg.model,
        model_dir,
        backend=device.backend,
        seed=cfg.meta.seed,
        engine=cfg.infer.engine,
        allow_compile=cfg.infer.compile,
        gpu_uuid=device.uuid(),  # the model goes to the GPU NVML measures, matched by UUID
    )


def open_benchmark_device(
    cfg: Config, state_dir: Path, *, update_period_s: float | None = None, index: int | None = None
) -> Any:
    """The configured device (only read from here on); the simulated one with a counter that
    ticks like NVML's, every `update_period_s` (default: the model GPU's, 0.1 s for the H200)."""
    from llm_energy.control.open import DeviceSpec, open_device

    spec = DeviceSpec.from_config(
        cfg.gpu,
        seed=cfg.meta.seed,
        country_iso_code=cfg.emissions.country_iso_code,
        state_dir=state_dir,
        index=index if index is not None else 0 if cfg.gpu.index == "auto" else int(cfg.gpu.index),
        sim={"update_period_s": update_period_s, "counter_ticks": True},
    )
    return open_device(spec)


def meter_for(cfg: Config, device: Any) -> Any:
    """An EnergyMeter configured exactly as the infer stage configures it."""
    from llm_energy.energy.meter import EnergyMeter

    return EnergyMeter(
        device,
        min_window_periods=cfg.gpu.min_window_periods,
        min_window_s=cfg.gpu.min_window_s,
        tick_align=cfg.gpu.tick_align,
    )


@contextlib.contextmanager
def observed_device(
    cfg: Config, state_dir: Path, *, update_period_s: float | None = None
) -> Iterator[tuple[Any, Any, Any]]:
    """(device, observe-only clock session, meter) for one benchmark; nothing is set."""
    from llm_energy.control.session import ClockSession

    device = open_benchmark_device(cfg, state_dir, update_period_s=update_period_s)
    with (
        device,
        ClockSession(
            device,
            control="observe",
            journal_dir=state_dir / "journal",
            on_other_processes=cfg.gpu.on_other_processes,
        ) as clocks,
    ):
        yield device, clocks, meter_for(cfg, device)


def write_result(out: Path | None, result: Mapping[str, Any]) -> None:
    """A benchmark's result as JSON at `out`, when one was asked for."""
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2, default=str) + "\n")


def fresh_workspace(ws: Path, state_dir: Path) -> dict[str, str]:
    """`make_workspace` in `ws` (created), with the environment its commands run in: this
    Python's scripts first on PATH, GPU state in `state_dir`, nothing inherited from a run."""
    import os

    ws.mkdir()
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["LLM_ENERGY_STATE_DIR"] = str(state_dir)
    # PYTHONDONTWRITEBYTECODE too: users' Python caches bytecode, so later stages reuse it
    for key in (
        "LLM_ENERGY_ROOT",
        "LLM_ENERGY_PROGRESS_DIR",
        "DVC_EXP_NAME",
        "PYTHONDONTWRITEBYTECODE",
    ):
        env.pop(key, None)
    make_workspace(ws, env)
    return env


def make_workspace(ws: Path, env: Mapping[str, str]) -> Path:
    """The working tree (no outputs) as a fresh git repo whose default experiment is `ci`
    (benchmarks/scaling.py and the queue tests run whole pipelines in it)."""
    import subprocess

    import yaml

    from llm_energy.io.compose import compose_params

    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for rel in filter(None, listed.split("\0")):
        if (ROOT / rel).is_file() and not rel.startswith(
            ("data/prepared", "data/infer", "data/aggregate", "models/", "reports/")
        ):
            (ws / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, ws / rel)
    config = ws / "conf" / "config.yaml"
    config.write_text(config.read_text().replace("  - experiment: default", "  - experiment: ci"))
    (ws / "params.yaml").write_text(yaml.safe_dump(compose_params(ws / "conf"), sort_keys=False))
    for cmd in (
        ["git", "init", "-q"],
        ["git", "add", "-A"],
        ["git", "-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", "init"],
    ):
        subprocess.run(cmd, cwd=ws, env=dict(env), check=True, capture_output=True)
    return ws


# ---------------------------------------------------------------------------- warm-up
@dataclass(frozen=True)
class SteadyWarmup:
    """What a warm-up did: every call's latency, whether the last `k` agreed, and why it stopped."""

    latencies_s: list[float]
    steady: bool
    elapsed_s: float
    stopped_by: str  # "steady" or "time_cap" (as in llm_energy.run.warmup)

    def to_dict(self) -> dict[str, Any]:
        return {
            "calls": len(self.latencies_s),
            "latencies_s": self.latencies_s,
            "steady": self.steady,
            "elapsed_s": self.elapsed_s,
            "stopped_by": self.stopped_by,
        }


def warm_until_steady(
    call: Callable[[], object],
    *,
    k: int = 5,
    tolerance: float = 0.03,
    max_s: float = 30.0,
    min_s: float = 0.0,
    clock: Callable[[], float] = time.perf_counter,
) -> SteadyWarmup:
    """Call `call` until its last `k` latencies agree within `tolerance` (the runner's
    `is_steady`: (max - min) / median) and at least `min_s` has passed, or until `max_s` has
    passed (at least one call always runs).

    `min_s` exists because a fresh GPU process can be slow *and* steady for its first ~10 s (H200
    anchors: ~3x slower): agreement alone could stop inside that cold phase.
    """
    if k < 2:
        raise ValueError(f"k must be >= 2, got {k!r}")
    latencies: list[float] = []
    start = clock()
    while True:
        t0 = clock()
        call()
        t1 = clock()
        latencies.append(t1 - t0)
        elapsed = t1 - start
        if elapsed >= min_s and is_steady(latencies, k, tolerance):
            return SteadyWarmup(latencies, True, elapsed, "steady")
        if elapsed >= max_s:
            return SteadyWarmup(latencies, False, elapsed, "time_cap")


# ---------------------------------------------------------------------------- counter windows
@dataclass
class RoundWindow:
    """A counter window around a whole round of work, filled in when the block exits.

    `wall_s` runs from just after the opening edge to the end of the work (device synchronised):
    the round's own duration, without the benchmark's edge waits. `energy_j` spans the edges.
    """

    energy_j: float = math.nan
    window_s: float = math.nan
    wall_s: float = math.nan
    tick_aligned: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def counter_edge(meter: Any, *, align: bool) -> tuple[float, float, bool]:
    """(counter J, device time s, read right after a counter update). Aligned edges wait for the
    counter to move (at most ~3 periods), so a window spans whole update periods."""
    if align and meter.ticks:
        # (J, s, changed); a stalled counter returns its last read flagged unchanged.
        e, t, changed = meter.wait_for_tick()
        return float(e), float(t), bool(changed)
    e, t = meter.device.read_counter()
    return float(e), float(t), False


@contextlib.contextmanager
def round_window(meter: Any, *, align: bool = True) -> Iterator[RoundWindow]:
    """One counter window around a whole round (both sides of a comparison get the same edges).
    Unlike `EnergyMeter.window` it does not mark the device busy, so the project's own windows
    may run inside it."""
    device = meter.device
    out = RoundWindow()
    device.synchronize()
    e0, t0, aligned0 = counter_edge(meter, align=align)
    wall0 = time.perf_counter()
    yield out
    device.synchronize()
    out.wall_s = time.perf_counter() - wall0
    e1, t1, aligned1 = counter_edge(meter, align=align)
    out.energy_j = e1 - e0
    out.window_s = t1 - t0
    out.tick_aligned = aligned0 and aligned1


__all__ = [
    "HEAVY_MODULES",
    "ROOT",
    "RoundWindow",
    "SteadyWarmup",
    "benchmark_params",
    "build_generator",
    "counter_edge",
    "make_workspace",
    "meter_for",
    "observed_device",
    "open_benchmark_device",
    "require_observe",
    "restrict_tasks",
    "round_window",
    "sample_items",
    "sample_texts",
    "warm_until_steady",
    "write_result",
]


@dataclass(frozen=True)
class WarmupSettings:
    k: int = 5
    tolerance: float = 0.03
    max_s: float = 30.0
    min_s: float = 0.0


@dataclass(frozen=True)
class Plan:
    """Sizes of everything, for the GPU or the CPU stand-in."""

    stand_in: bool
    backend: str
    models: dict[str, str]  # role ("gpt2" / "mistral_7b") -> conf/model name
    dtype: str | None
    budget_s: float
    overhead_rounds: int
    overhead_tokens: int
    first_warmup: WarmupSettings  # the process's first warm-up (covers the cold phase)
    warmup: WarmupSettings
    repetitions: int
    repeat_items: int
    runner_warmup_max_s: float
    tick_windows: int
    tick_periods: float
    tick_tokens: int
    update_period_s: float | None  # simulated counter period for the infer path
    tick_update_period_s: float | None  # simulated counter period for the tick comparison
    overrides: tuple[str, ...] = ()
