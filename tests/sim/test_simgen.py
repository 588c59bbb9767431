"""Simulated generators and the workload clock: end to end through InferenceRun, deterministic
whatever the CPU does."""

from __future__ import annotations

import sys
import threading
import time
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from helpers import PARAMS, ClockSession, EnergyMeter, SimulatedDevice, compose, sim, templates
from llm_energy.config.settings import load_config
from llm_energy.io.models import build_random_tokenizer, materialize
from llm_energy.protocols import GenerationResult
from llm_energy.run.engine import load_generator as load_generator_
from llm_energy.run.runner import InferenceRun
from llm_energy.sim import model as simmodel
from llm_energy.sim.device import SimulatedDevice as SimDevice
from llm_energy.sim.generate import (
    ReportingGenerator as ReportingGenerator_,
)
from llm_energy.sim.generate import (
    SimulatedGenerator as SimulatedGenerator_,
)
from llm_energy.sim.generate import (
    natural_length,
    workload_for,
)

load_generator = partial(
    load_generator_, engine=PARAMS["infer"]["engine"], allow_compile=PARAMS["infer"]["compile"]
)
ReportingGenerator = partial(ReportingGenerator_, allow_compile=PARAMS["infer"]["compile"])
SimulatedGenerator = partial(
    SimulatedGenerator_, engine=PARAMS["infer"]["engine"], allow_compile=PARAMS["infer"]["compile"]
)

H200 = simmodel.get_gpu_model("h200")
TEXT = "the old mill by the river was painted green in 1870 and nobody owns it any more"


def cfg_for(*overrides: str) -> Any:
    return load_config(
        compose(
            "gpu=simulated",
            "model=tiny_gpt2",
            "sweep=freqs",
            "sweep.freqs_mhz=[null,1980,1605,1305,1005,705]",  # MHz, as infer resolves them
            "infer.output_tokens=6",
            "infer.warmup_requests=1",
            "gpu.idle_baseline_s=0.01",
            "gpu.max_window_repeats=40",
            "gpu.min_window_periods=2",  # trusted from 0.2 s of model time: ~20 calls
            *overrides,
        )
    )


def items(task: str, kind: str, n: int = 2) -> list[dict[str, Any]]:
    field = {"generation": "text", "qa": "context", "summarization": "document"}[kind]
    out = []
    for i in range(n):
        fields = {field: f"{TEXT} item {i} " * (i + 1)}
        if kind == "qa":
            fields["question"] = "what colour is the mill?"
        out.append(
            {"task": task, "kind": kind, "item_id": f"{task}-{i}", "fields": fields,
             "references": ["green paint"]}
        )  # fmt: skip
    return out


class RecordingDevice:
    def __init__(self) -> None:
        self.works: list[Any] = []
        self.workload_clock = False

    def use_workload_clock(self) -> None:
        self.workload_clock = True

    def run_workload(self, work: Any) -> Any:
        self.works.append(work)
        cost = simmodel.workload_cost(H200, work, 1980)
        return type("T", (), {"time_s": cost.time_s, "ttft_s": cost.prefill_s})()


def tokenizer() -> Any:
    return build_random_tokenizer([TEXT] * 20)


# ------------------------------------------------------------------------ generators


def test_natural_length_is_seeded_and_bounded() -> None:
    lengths = [natural_length(0, [i, i + 1], 16, 0.2) for i in range(200)]
    assert all(1 <= n <= 16 for n in lengths) and len(set(lengths)) > 5
    assert lengths == [natural_length(0, [i, i + 1], 16, 0.2) for i in range(200)]
    assert sum(n == 16 for n in lengths) / 200 == pytest.approx(0.8**15, abs=0.08)  # geometric
    assert natural_length(0, [1], 1, 0.5) == 1 and natural_length(0, [1], 0, 0.5) == 0
    # A random model's EOS is one token in the vocabulary: outputs mostly run to the maximum.
    assert sum(natural_length(3, [i], 8, 1 / 512) == 8 for i in range(100)) > 95


def test_simulated_generator_reports_each_call_and_skips_the_model() -> None:
    cfg, dev = cfg_for(), RecordingDevice()
    gen = SimulatedGenerator(tokenizer(), model=cfg.model, device=dev, seed=0)
    assert dev.workload_clock
    ids = [gen.encode("painted green"), gen.encode(TEXT)]
    fixed = gen.generate(ids, max_new_tokens=8, fixed=True, measure_ttft=True)
    assert fixed.output_tokens == [8, 8] and fixed.texts[0].startswith("[simulated")
    work = dev.works[-1]
    assert (work.batch, work.prompt_tokens, work.new_tokens) == (2, len(ids[1]), 8)
    assert work.engine == "eager" and work.dtype_bytes == 4  # tiny_gpt2 runs in float32
    assert fixed.elapsed_s == pytest.approx(simmodel.workload_cost(H200, work, 1980).time_s)
    assert fixed.ttft_s is not None and 0 < fixed.ttft_s < fixed.elapsed_s
    natural = gen.generate(ids, max_new_tokens=8, fixed=False, measure_ttft=False)
    assert all(1 <= n <= 8 for n in natural.output_tokens) and natural.ttft_s is None
    assert dev.works[-1].new_tokens == max(natural.output_tokens)  # the batch runs to its longest
    # Prompt fitting works as with the real model.
    assert gen.count_tokens(TEXT) == len(gen.encode(TEXT))
    assert gen.count_tokens(gen.truncate_text(TEXT, 5)) <= 6
    nll, n = gen.reference_nll(ids[0], " green paint")
    assert n > 0 and nll > 0


def test_reporting_generator_runs_the_real_model_once_per_request() -> None:
    class Inner:
        engine, device = "eager", "cpu"
        calls = 0

        def generate(self, ids: Any, **kw: Any) -> GenerationResult:
            Inner.calls += 1
            return GenerationResult(["a real answer"] * len(ids), [3] * len(ids), 9.9, None)

    cfg, dev = cfg_for(), RecordingDevice()
    gen = ReportingGenerator(Inner(), model=cfg.model, device=dev)
    first = gen.generate([[1, 2, 3]], max_new_tokens=5, fixed=False, measure_ttft=True)
    again = gen.generate([[1, 2, 3]], max_new_tokens=5, fixed=False, measure_ttft=True)
    assert Inner.calls == 1 and len(dev.works) == 2
    assert first.texts == again.texts == ["a real answer"] and first.output_tokens == [3]
    assert first.elapsed_s != 9.9  # the simulated GPU's time, not the CPU's
    gen.engine = "static"
    gen.generate([[1, 2, 3]], max_new_tokens=5, fixed=False, measure_ttft=True)
    assert Inner.calls == 2 and dev.works[-1].engine == "static"


def test_load_generator_on_the_simulated_gpu_skips_the_model_for_random_weights(
    tmp_path: Path,
) -> None:
    cfg = cfg_for()
    materialize(cfg.model, tmp_path / "model", [TEXT] * 20)
    dev = SimulatedDevice(0, state_dir=tmp_path / "state", counter_ticks=True)
    gen = load_generator(cfg.model, tmp_path / "model", backend="simulated", seed=0, sim_device=dev)
    assert isinstance(gen, SimulatedGenerator_) and dev.workload_clock
    timing = dev.run_workload(workload_for(cfg.model, batch=1, prompt_tokens=10, new_tokens=4,
                                           engine="eager", compiled=False))  # fmt: skip
    assert not timing.accounted  # outside a window: timed, not on the counter


# ------------------------------------------------------------------------ through InferenceRun


def simulated_run(tmp_path: Path, gen_hook: Any = None) -> list[dict[str, Any]]:
    """A frequency sweep of tiny_gpt2 on the simulated H200, real meter and clock session."""
    cfg = cfg_for()
    dev = SimulatedDevice(0, state_dir=tmp_path / "state", seed=7, counter_ticks=True)
    gen: Any = SimulatedGenerator(tokenizer(), model=cfg.model, device=dev, seed=0)
    if gen_hook is not None:
        gen = gen_hook(gen)
    meter = EnergyMeter(dev, min_window_periods=cfg.gpu.min_window_periods, min_window_s=0.0)
    rows: list[dict[str, Any]] = []
    with ClockSession(
        dev, "lock", None, journal_dir=tmp_path / "journal", install_signal_handlers=False
    ) as clocks:
        run = InferenceRun(
            cfg,
            generator=gen,
            meter=meter,
            clocks=clocks,
            device=dev,
            items_by_task={t.name: items(t.name, t.kind) for t in cfg.tasks},
            templates=templates(cfg),
            write=rows.append,
        )
        run.run()
    return rows


NUMBERS = (
    "energy_j", "latency_s", "ttft_s", "tpot_s", "tokens_per_s", "output_tokens", "window_s",
    "window_energy_j", "window_repeats", "window_busy_s", "window_tail_s", "idle_power_w",
    "idle_power_before_w", "idle_power_after_w", "dynamic_energy_j", "avg_power_w",
    "sm_clock_mean_mhz", "cap_held", "window_trusted", "freq_applied_mhz", "input_tokens",
)  # fmt: skip


def numbers(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [tuple(r.get(k) for k in NUMBERS) for r in rows]


def test_simulated_sweep_end_to_end_is_labelled_and_physical(tmp_path: Path) -> None:
    rows = simulated_run(tmp_path)
    assert len(rows) == 6 * 3 * 2 and all(r["status"] == "ok" for r in rows)
    assert {r["energy_kind"] for r in rows} == {"simulated"}
    assert all(r["cap_held"] and r["window_tick_aligned"] and r["window_trusted"] for r in rows)
    # Every point changes the clock: k idle sub-readings before and k after, pooled.
    assert {r["idle_power_df"] for r in rows} == {2 * cfg_for().gpu.idle_samples - 1}
    by_freq: dict[Any, list[float]] = {}
    for r in rows:
        assert 120 < r["avg_power_w"] < 160  # a launch-bound tiny model: near idle
        assert r["latency_s"] < 0.05  # milliseconds per request, not the CPU's seconds
        by_freq.setdefault(r["freq_requested_mhz"], []).append(r["energy_j"] / r["output_tokens"])
    # Capping the clock of a launch-bound decode saves a little energy per token.
    mean = {f: sum(v) / len(v) for f, v in by_freq.items()}
    assert mean[705] < mean[1980]


def test_same_numbers_whatever_the_cpu_does(tmp_path: Path) -> None:
    quiet = numbers(simulated_run(tmp_path / "quiet"))

    def slow(gen: Any) -> Any:  # a slow, jittery host: calls take extra, varying real time
        inner = gen.generate

        def generate(*a: Any, **kw: Any) -> GenerationResult:
            if time.perf_counter_ns() % 4 == 0:
                time.sleep(0.003)
            return inner(*a, **kw)

        gen.generate = generate
        return gen

    stop = threading.Event()

    def spin() -> None:  # a busy-spinning thread competing for the interpreter and the core
        while not stop.is_set():
            sum(range(200))

    spinner = threading.Thread(target=spin, daemon=True)
    switch_s = sys.getswitchinterval()
    sys.setswitchinterval(1e-4)  # hand the GIL back and forth often: the test stays short
    spinner.start()
    try:
        loaded = numbers(simulated_run(tmp_path / "loaded", gen_hook=slow))
    finally:
        stop.set()
        spinner.join()
        sys.setswitchinterval(switch_s)
    assert loaded == quiet


# ------------------------------------------------------------------------ the workload clock


def workload_gpu(state_dir: Path) -> SimDevice:
    """A noiseless simulated H200 whose time and energy come only from the workloads it runs."""
    dev = sim(state_dir, counter_ticks=True)
    dev.use_workload_clock()
    return dev


def eager_workload(model: str, **shape: int) -> Any:
    """The workload of one batch of `model` (random weights) under the eager engine."""
    return workload_for(cfg_for(f"model={model}", "model.weights=random").model, engine="eager",
                        compiled=False, **shape)  # fmt: skip


def test_window_time_and_energy_come_from_the_workload(tmp_path: Path) -> None:
    dev = workload_gpu(tmp_path)
    dev.lock_sm_clocks(1200)
    work = eager_workload("mistral_7b", batch=8, prompt_tokens=512, new_tokens=64)
    expected = simmodel.run_workload(H200, work, 1200)
    meter = EnergyMeter(dev, min_window_s=0.0, min_window_periods=1)
    with meter.window(1200) as w:
        time.sleep(0.05)  # real time inside the window counts for nothing
        timing = dev.run_workload(work)
    r = w.reading
    assert r is not None and timing.accounted and timing.sm_mhz == 1200
    assert r.busy_s == pytest.approx(expected.cost.time_s, abs=1e-8)
    assert 0 < r.tail_s <= 0.1 + 1e-9 and r.tick_aligned and r.cap_held
    busy_j = r.energy_j - r.tail_s * simmodel.idle_power_w(H200, 1200)
    assert busy_j == pytest.approx(expected.energy_j, rel=1e-6)
    # The phase split: the prefill's share of the call's energy (the rest is the decode).
    assert timing.prefill_energy_j == pytest.approx(expected.prefill_energy_j, rel=1e-6)
    assert 0 < timing.prefill_energy_j < timing.energy_j
    assert r.sm_clock_mean_mhz == 1200 and r.throttle_power_s == 0.0
    # Outside a window a call is timed but never reaches the counter.
    t_before = dev.read_counter()[1]
    assert not dev.run_workload(work).accounted
    assert dev.read_counter()[1] <= t_before + 0.1 + 1e-9  # at most one idle tick per read
    dev.reset_sm_clocks()


def test_power_cap_on_workloads_shows_as_throttling(tmp_path: Path) -> None:
    dev = workload_gpu(tmp_path)
    dev.set_power_limit_w(250.0)
    work = eager_workload("gpt_j_6b", batch=32, prompt_tokens=1024, new_tokens=1)
    with EnergyMeter(dev, min_window_s=0.0, min_window_periods=1).window(1980) as w:
        timing = dev.run_workload(work)
        assert dev.power_w() <= 250.0 and dev.clock_event_reasons() & simmodel.REASON_SW_POWER_CAP
    r = w.reading
    assert r is not None and timing.power_capped and timing.sm_mhz < 1980
    assert r.throttled_fraction is not None and r.throttled_fraction > 0.9 and not r.cap_held
    dev.set_power_limit_w(700.0)


def test_idle_reads_tick_one_update_at_a_time(tmp_path: Path) -> None:
    dev = workload_gpu(tmp_path)
    seen = [dev.read_counter() for _ in range(5)]
    assert [round(t, 6) for _, t in seen] == [0.1, 0.2, 0.3, 0.4, 0.5]  # whatever real time did
    p_idle = simmodel.idle_power_w(H200, 345)
    assert (seen[4][0] - seen[0][0]) / (seen[4][1] - seen[0][1]) == pytest.approx(p_idle, rel=1e-7)
