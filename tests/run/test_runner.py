"""InferenceRun with fake generator/meter/clocks: the loop's bookkeeping and failure handling."""

from __future__ import annotations

import dataclasses
import math
import statistics
from dataclasses import dataclass
from typing import Any

import pytest

from helpers import compose, templates
from llm_energy.config.settings import load_config
from llm_energy.protocols import (
    GenerationResult,
    MeasuredDevice,
    SmClockControl,
    TextGenerator,
    WindowMeter,
)
from llm_energy.run.runner import InferenceRun


class FakeGenerator:
    """Word-level 'tokenizer'; raises an OOM error for batches larger than `oom_above`."""

    def __init__(self, oom_above: int | None = None) -> None:
        self.oom_above, self.engine, self.calls = oom_above, "eager", []

    def encode(self, prompt: str) -> list[int]:
        return list(range(len(prompt.split())))

    def count_tokens(self, prompt: str) -> int:
        return len(prompt.split())

    def truncate_text(self, text: str, n: int) -> str:
        return " ".join(text.split()[:n])

    def generate(
        self, ids: list[list[int]], *, max_new_tokens: int, fixed: bool, measure_ttft: bool = True
    ) -> GenerationResult:
        self.calls.append((len(ids), max_new_tokens, self.engine))
        if self.oom_above is not None and len(ids) > self.oom_above:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return GenerationResult(["answer"] * len(ids), [max_new_tokens] * len(ids), 0.01, 0.002)

    def reference_nll(self, ids: list[int], reference: str) -> tuple[float, int]:
        return 2.0 * len(reference.split()), len(reference.split())


@dataclass
class Reading:
    energy_j: float = 10.0
    elapsed_s: float = 1.0
    trusted: bool = True
    energy_source: str = "simulated"
    sm_clock_mean_mhz: float | None = 1200.0
    sm_clock_min_mhz: float | None = 1200.0
    mem_clock_mhz: float | None = 3201.0
    clock_event_reasons: int | None = 0
    temperature_c: float | None = 40.0
    cap_held: bool = True


class FakeMeter:
    """Idle readings from `idle_w`, one per call: a number (every sub-reading of the call) or
    the sub-readings themselves; 5 W once the list runs out."""

    def __init__(self, idle_w: list[float | list[float]] | None = None) -> None:
        self.idle_calls = 0
        self.idle_samples: list[int] = []  # the sub-readings asked for, per call
        self.idle_w = list(idle_w or [])

    def run_until_trusted(
        self, fn: Any, cap_mhz: int | None = None, max_repeats: int = 50
    ) -> tuple[Reading, int, Any]:
        return Reading(), 2, fn()

    def measure_idle_samples_w(self, seconds: float, samples: int) -> list[float]:
        self.idle_calls += 1
        self.idle_samples.append(samples)
        reading = self.idle_w.pop(0) if self.idle_w else 5.0
        return list(reading) if isinstance(reading, list) else [reading] * samples


class FakeClocks:
    def __init__(self) -> None:
        self.applied_sm_mhz: int | None = None
        self.applied_mem_mhz: int | None = None
        self.applied_power_limit_w: float | None = None
        self.history: list[int | None] = []
        self.knob_history: list[tuple[str, float | None]] = []  # memory clocks, power limits

    def set_sm_cap(self, freq: int | None) -> int | None:
        self.history.append(freq)
        self.applied_sm_mhz = freq
        return freq

    def set_mem_cap(self, freq: int | None) -> None:
        self.knob_history.append(("mem", freq))
        self.applied_mem_mhz = freq

    def set_power_limit_w(self, power_w: float | None) -> None:
        self.knob_history.append(("power", power_w))
        self.applied_power_limit_w = power_w

    def freq_label_mhz(self, cap_held: bool | None) -> int | None:
        return self.applied_sm_mhz


@dataclass
class FakeDevice:
    energy_source: str = "simulated"
    syncs: int = 0

    def synchronize(self) -> None:
        self.syncs += 1


def test_fakes_satisfy_the_runner_protocols() -> None:
    # Structural: the fakes subclass nothing, yet stand in for the real collaborators.
    gen: TextGenerator = FakeGenerator()
    meter: WindowMeter = FakeMeter()
    clocks: SmClockControl = FakeClocks()
    device: MeasuredDevice = FakeDevice()
    assert isinstance(gen, TextGenerator) and isinstance(meter, WindowMeter)
    assert isinstance(clocks, SmClockControl) and isinstance(device, MeasuredDevice)
    assert not isinstance(object(), TextGenerator | WindowMeter | SmClockControl | MeasuredDevice)


def _items(task: str, kind: str, n: int, words: int = 10) -> list[dict[str, Any]]:
    field = {"generation": "text", "qa": "context", "summarization": "document"}[kind]
    fields = {field: " ".join(["w"] * words)}
    if kind == "qa":
        fields["question"] = "why ?"
    return [
        {
            "task": task,
            "kind": kind,
            "item_id": f"{task}-{i}",
            "fields": fields,
            "references": ["ref words here"],
        }
        for i in range(n)
    ]


def _run(
    cfg: Any,
    gen: FakeGenerator,
    items: dict[str, list[dict[str, Any]]],
    meter: FakeMeter | None = None,
    sleeps: list[float] | None = None,
    *,
    clocks: FakeClocks | None = None,
    device: Any = None,
    **kw: Any,
) -> tuple[list[dict[str, Any]], InferenceRun, FakeClocks, FakeMeter]:
    """One InferenceRun over fakes (no sleeping unless `sleeps` records it); `kw` go to it."""
    rows: list[dict[str, Any]] = []
    clocks, meter = clocks or FakeClocks(), meter or FakeMeter()
    run = InferenceRun(
        cfg,
        generator=gen,
        meter=meter,
        clocks=clocks,
        device=device,
        items_by_task=items,
        templates=templates(cfg),
        write=rows.append,
        sleep=sleeps.append if sleeps is not None else lambda s: None,
        **kw,
    )
    run.run()
    return rows, run, clocks, meter


def test_oom_at_one_batch_size_is_recorded_and_the_rest_continues() -> None:
    cfg = load_config(
        compose(
            "model=tiny_gpt2", "task=[qa]", "sweep.batch_sizes=[1,4]", "infer.warmup_requests=0"
        )
    )
    rows, run, _, _ = _run(cfg, FakeGenerator(oom_above=1), {"qa": _items("qa", "qa", 4)})
    ok = [r for r in rows if r["status"] == "ok"]
    oom = [r for r in rows if r["status"] == "oom"]
    assert len(ok) == 4 and all(r["batch_size"] == 1 for r in ok)
    assert len(oom) == 4 and all(
        r["batch_size"] == 4 and "out of memory" in r["error"] for r in oom
    )
    assert run.totals.requests_failed == 4 and run.totals.requests_ok == 4


def test_other_errors_are_not_swallowed() -> None:
    cfg = load_config(compose("model=tiny_gpt2", "task=[qa]", "infer.warmup_requests=0"))
    gen = FakeGenerator()
    gen.generate = lambda *a, **k: (_ for _ in ()).throw(ValueError("bug"))  # type: ignore[method-assign]
    with pytest.raises(ValueError, match="bug"):
        _run(cfg, gen, {"qa": _items("qa", "qa", 1)})


def test_sweep_sets_each_cap_measures_idle_before_and_after_each_point() -> None:
    cfg = load_config(
        compose(
            "model=tiny_gpt2",
            "task=[generation]",
            "sweep=freqs",
            "sweep.freqs_mhz=[null,1980,1605,1305,1005,705]",  # MHz, as infer resolves them
            "infer.repetitions=2",
            "infer.warmup_requests=0",
        )
    )
    rows, _, clocks, meter = _run(
        cfg, FakeGenerator(), {"generation": _items("generation", "generation", 2)}
    )
    assert clocks.history == [None, 1980, 1605, 1305, 1005, 705] * 2
    assert meter.idle_calls == 24  # every point changes the clock: before and after each
    assert len(rows) == 2 * 6 * 2
    assert {(r["freq_requested_mhz"], r["freq_applied_mhz"]) for r in rows} == {
        (f, f) for f in clocks.history
    }
    row = rows[0]
    assert row["energy_j"] == pytest.approx(10.0 / 2 / 1)  # window 10 J over 2 repeats, batch of 1
    assert row["ref_tokens"] == 3 and row["ref_nll_sum"] == pytest.approx(6.0)
    assert row["idle_power_w"] == 5.0 and row["energy_kind"] == "simulated"
    assert row["idle_power_before_w"] == row["idle_power_after_w"] == 5.0
    assert row["idle_power_se_w"] == 0.0 and row["dynamic_energy_se_j"] == 0.0
    assert row["idle_power_df"] == 2 * cfg.gpu.idle_samples - 1


def test_idle_baseline_pools_its_sub_readings_into_mean_se_and_df() -> None:
    cfg = load_config(
        compose(
            "model=tiny_gpt2", "task=[generation]", "infer.warmup_requests=0", "gpu.idle_samples=3"
        )
    )
    sleeps: list[float] = []
    meter = FakeMeter(idle_w=[[3.0, 4.0, 5.0], [5.0, 6.0, 7.0]])  # before, after
    rows, run, _, _ = _run(
        cfg, FakeGenerator(), {"generation": _items("generation", "generation", 2)}, meter, sleeps
    )
    assert meter.idle_calls == 2 and meter.idle_samples == [3, 3]
    # The first cap is set after the warm-up: a cooldown, then a settle before each idle reading.
    assert sleeps == [cfg.gpu.cooldown_s, cfg.gpu.idle_settle_s, cfg.gpu.idle_settle_s]
    row = rows[0]
    assert (row["idle_power_before_w"], row["idle_power_after_w"]) == (4.0, 6.0)
    # Six samples, mean 5 W, squared deviations 4+1+0+0+1+4 = 10: SD √2, SE √2/√6, 5 df.
    se_w = math.sqrt(10 / 5) / math.sqrt(6)
    assert row["idle_power_w"] == 5.0 and row["idle_power_se_w"] == pytest.approx(se_w)
    assert row["idle_power_df"] == 5
    # Window 10 J, 1 s, 2 repeats, batch 1: a request is 5 J over 0.5 s of the window.
    assert row["dynamic_energy_j"] == pytest.approx(5.0 - 5.0 * 0.5)
    assert row["dynamic_energy_se_j"] == pytest.approx(se_w * 0.5)
    [baseline] = run.idle_baselines
    assert baseline.power_w == 5.0 and baseline.n_samples == 6
    assert baseline.to_dict()["n_samples"] == 6 and baseline.to_dict()["df"] == 5


def test_an_interrupted_point_keeps_its_before_samples_and_their_df() -> None:
    cfg = load_config(  # one generate call per batch: no prefill windows
        compose("model=tiny_gpt2", "task=[qa]", "infer.warmup_requests=0", "infer.phases=false")
    )
    k = cfg.gpu.idle_samples
    gen = FakeGenerator()
    real_generate = gen.generate

    def interrupted(*a: Any, **kw: Any) -> GenerationResult:
        if len(gen.calls) >= 1:
            raise KeyboardInterrupt
        return real_generate(*a, **kw)

    gen.generate = interrupted  # type: ignore[method-assign]
    before = [4.0 + 0.1 * i for i in range(k)]
    meter = FakeMeter(idle_w=[before])
    rows: list[dict[str, Any]] = []
    run = InferenceRun(
        cfg,
        generator=gen,
        meter=meter,
        clocks=FakeClocks(),
        device=None,
        items_by_task={"qa": _items("qa", "qa", 2)},
        templates=templates(cfg),
        write=rows.append,
        sleep=lambda s: None,
    )
    with pytest.raises(KeyboardInterrupt):
        run.run()
    assert meter.idle_calls == 1 and run.idle_baselines == []  # no "after" reading
    [row] = rows  # the first batch was measured, the second interrupted
    assert row["idle_power_after_w"] is None and row["idle_power_df"] == k - 1
    assert row["idle_power_w"] == pytest.approx(statistics.fmean(before))
    assert row["idle_power_se_w"] == pytest.approx(statistics.stdev(before) / math.sqrt(k))


def test_same_clock_points_reuse_the_previous_after_reading() -> None:
    cfg = load_config(
        compose(
            "model=tiny_gpt2",
            "task=[generation]",
            "sweep.engines=[eager,static]",
            "infer.warmup_requests=0",
        )
    )
    meter = FakeMeter(idle_w=[4.0, 6.0, 8.0])
    _, run, _, _ = _run(
        cfg, FakeGenerator(), {"generation": _items("generation", "generation", 1)}, meter
    )
    # Two points at one clock: before(4), after(6); the second point's "before" is that 6.
    assert meter.idle_calls == 3
    assert [(b.before_w, b.after_w) for b in run.idle_baselines] == [(4.0, 6.0), (6.0, 8.0)]
    first, second = run.idle_baselines
    assert second.before_samples_w == first.after_samples_w


def test_cooldown_after_each_clock_change() -> None:
    cfg = load_config(
        compose(
            "model=tiny_gpt2",
            "task=[generation]",
            "sweep=freqs",
            "infer.warmup_requests=0",
            "gpu.idle_baseline_s=0",
            "gpu.cooldown_s=1.5",
        )
    )
    sleeps: list[float] = []
    _, _, clocks, _ = _run(
        cfg,
        FakeGenerator(),
        {"generation": _items("generation", "generation", 1)},
        sleeps=sleeps,
    )
    assert sleeps == [1.5] * len(clocks.history)


def test_power_limits_and_memory_clocks_are_set_per_point_with_cooldown() -> None:
    cfg = load_config(
        compose(
            "model=tiny_gpt2",
            "task=[generation]",
            "sweep.freqs_mhz=[null,1200]",
            "sweep.power_limits_w=[null,300]",
            "sweep.mem_freqs_mhz=[2201]",
            "infer.warmup_requests=0",
            "gpu.idle_baseline_s=0",
            "gpu.cooldown_s=1.5",
        )
    )
    sleeps: list[float] = []
    rows, _, clocks, _ = _run(
        cfg, FakeGenerator(), {"generation": _items("generation", "generation", 1)}, sleeps=sleeps
    )
    # Only what changes is set: the memory clock once, the limit when it moves to 300 W.
    assert clocks.knob_history == [("mem", 2201), ("power", 300)]
    assert clocks.history == [None, 1200, None, 1200] and sleeps == [1.5] * 4
    got = [
        (r["power_limit_requested_w"], r["power_limit_applied_w"], r["mem_freq_applied_mhz"])
        for r in rows
    ]
    assert got == [(None, None, 2201)] * 2 + [(300, 300, 2201)] * 2
    assert all(r["mem_freq_requested_mhz"] == 2201 for r in rows)


def test_warmup_runs_every_shape_at_its_real_length_until_steady() -> None:
    cfg = load_config(
        compose(
            "model=tiny_gpt2",
            "task=[generation,qa]",
            "sweep.engines=[eager,static]",
            "infer.warmup_requests=1",
            "infer.warmup_steady_k=3",
        )
    )
    gen = FakeGenerator()
    items = {
        "generation": _items("generation", "generation", 2),
        "qa": _items("qa", "qa", 2),
    }
    _, run, _, _ = _run(cfg, gen, items)
    record = run.warmup_record
    assert record is not None and record.stopped_by in {"steady", "time_cap"}
    shapes = {(s.shape["task"], s.shape["engine"]) for s in record.shapes}
    assert shapes == {
        ("generation", "eager"),
        ("generation", "static"),
        ("qa", "eager"),
        ("qa", "static"),
    }
    warm_calls = gen.calls[: sum(len(s.latencies_s) for s in record.shapes)]
    # Real output lengths: each task's own, not a short 8-token probe.
    assert {c[1] for c in warm_calls} == {t.output_tokens for t in cfg.tasks}
    assert all(len(s.latencies_s) >= 3 for s in record.shapes if s.steady)
    assert record.to_dict()["shapes"][0]["calls"] >= 1


def test_prompt_longer_than_context_is_truncated_and_recorded(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cfg = load_config(compose("model=tiny_gpt2", "task=[summarization]", "infer.warmup_requests=0"))
    items = {"summarization": _items("summarization", "summarization", 1, words=2000)}
    rows, run, _, _ = _run(cfg, FakeGenerator(), items)
    assert (
        rows[0]["input_truncated"] is True and rows[0]["input_truncation_reason"] == "model context"
    )
    assert rows[0]["input_tokens"] <= 512 - rows[0]["output_tokens_target"]
    assert run.totals.truncated_prompts == 1 and "truncated" in caplog.text


def test_no_idle_baseline_for_constant_power_estimates() -> None:
    cfg = load_config(compose("model=tiny_gpt2", "task=[qa]", "infer.warmup_requests=0"))
    device = FakeDevice(energy_source="codecarbon-estimate")
    rows, _, _, meter = _run(cfg, FakeGenerator(), {"qa": _items("qa", "qa", 2)}, device=device)
    assert meter.idle_calls == 0 and all(r["dynamic_energy_j"] is None for r in rows)


def test_input_length_target_and_output_sweep() -> None:
    cfg = load_config(
        compose(
            "model=tiny_gpt2",
            "task=[qa]",
            "sweep=lengths",
            "sweep.batch_sizes=[1]",
            "infer.warmup_requests=0",
        )
    )
    rows, _, _, _ = _run(cfg, FakeGenerator(), {"qa": _items("qa", "qa", 1, words=400)})
    assert {(r["input_tokens_target"], r["output_tokens_target"]) for r in rows} == {
        (i, o) for i in (64, 128, 256) for o in (16, 32, 64)
    }
    assert all(r["input_tokens"] <= r["input_tokens_target"] and r["input_truncated"] for r in rows)
    assert all(r["output_tokens"] == r["output_tokens_target"] for r in rows)


class ObservedClocks(FakeClocks):
    """Observe mode: the session reports whatever clock the GPU shows (here, idle)."""

    def set_sm_cap(self, freq: int | None) -> int | None:
        self.history.append(freq)
        self.applied_sm_mhz = 345
        return 345


def test_observe_mode_applies_nothing_and_checks_the_requested_clock() -> None:
    cfg = load_config(
        compose(
            "model=tiny_gpt2",
            "task=[qa]",
            "gpu.control=observe",
            "gpu.freq=1200",
            "infer.warmup_requests=0",
        )
    )
    caps: list[int | None] = []
    meter = FakeMeter()
    real = meter.run_until_trusted

    def spy(fn: Any, cap_mhz: int | None = None, max_repeats: int = 50) -> Any:
        caps.append(cap_mhz)
        return real(fn, cap_mhz, max_repeats)

    meter.run_until_trusted = spy  # type: ignore[method-assign]
    items = {"qa": _items("qa", "qa", 2)}
    rows, _, _, _ = _run(cfg, FakeGenerator(), items, meter, clocks=ObservedClocks())
    # each batch's window and its prefill window check the externally set clock
    assert caps == [1200] * 4
    assert all(r["freq_applied_mhz"] is None and r["freq_requested_mhz"] == 1200 for r in rows)


class SlurmClocks(ObservedClocks):
    """gpu.control=slurm: SLURM set the cap; a window is labelled with it only if it held."""

    def __init__(self, held: list[bool]) -> None:
        super().__init__()
        self.held_seen = held

    def freq_label_mhz(self, cap_held: bool | None) -> int | None:
        self.held_seen.append(bool(cap_held))
        return 1200 if cap_held else None


@pytest.mark.parametrize("cap_held", [True, False])
def test_slurm_mode_labels_a_window_with_the_cap_only_when_it_held(cap_held: bool) -> None:
    cfg = load_config(
        compose(
            "model=tiny_gpt2",
            "task=[qa]",
            "gpu.control=slurm",
            "gpu.freq=1200",
            "infer.warmup_requests=0",
        )
    )
    meter = FakeMeter()
    real = meter.run_until_trusted

    def held(fn: Any, cap_mhz: int | None = None, *, max_repeats: int) -> Any:
        reading, repeats, result = real(fn, cap_mhz, max_repeats=max_repeats)
        return dataclasses.replace(reading, cap_held=cap_held), repeats, result

    meter.run_until_trusted = held  # type: ignore[method-assign]
    seen: list[bool] = []
    items = {"qa": _items("qa", "qa", 2)}
    rows, _, _, _ = _run(cfg, FakeGenerator(), items, meter, clocks=SlurmClocks(seen))
    assert seen == [cap_held, cap_held]
    label = 1200 if cap_held else None
    assert all(r["freq_applied_mhz"] == label and r["freq_requested_mhz"] == 1200 for r in rows)


def test_short_last_batch_stays_in_its_configuration_and_failures_keep_keys() -> None:
    cfg = load_config(
        compose(
            "model=tiny_gpt2",
            "task=[qa]",
            "sweep.batch_sizes=[4]",
            "infer.input_tokens=64",
            "infer.warmup_requests=0",
        )
    )
    rows, _, _, _ = _run(cfg, FakeGenerator(oom_above=2), {"qa": _items("qa", "qa", 6)})
    assert {r["batch_size"] for r in rows} == {4}
    assert sorted(r["batch_fill"] for r in rows) == [2, 2, 4, 4, 4, 4]
    failed = [r for r in rows if r["status"] == "oom"]
    assert len(failed) == 4 and all(
        r["input_tokens_target"] == 64 and "freq_applied_mhz" in r for r in failed
    )


def test_progress_is_told_after_warmup_and_every_batch_and_point() -> None:
    cfg = load_config(
        compose(
            "model=tiny_gpt2", "task=[qa]", "sweep.batch_sizes=[1,2]", "infer.warmup_requests=0"
        )
    )
    calls: list[dict[str, int]] = []

    def progress(**kw: int) -> None:
        calls.append(kw)

    rows, _, _, _ = _run(cfg, FakeGenerator(), {"qa": _items("qa", "qa", 3)}, progress=progress)
    # batch size 1: 3 batches, batch size 2: 2 batches; 2 points
    assert calls[0] == dict(points_done=0, points_total=2, batches_done=0, batches_total=5)
    assert [c["batches_done"] for c in calls] == [0, 1, 2, 3, 3, 4, 5, 5]
    assert [c["points_done"] for c in calls] == [0, 0, 0, 0, 1, 1, 1, 2]
    assert len(rows) == 6


class PhaseMeter(FakeMeter):
    """A full request window of 10 J over 1 s (2 repeats, 0.2 s closing tail), a prefill
    window of 3 J over 0.4 s (4 repeats, 0.1 s tail): told apart by the call's new tokens."""

    def run_until_trusted(
        self, fn: Any, cap_mhz: int | None = None, max_repeats: int = 50
    ) -> tuple[Any, int, Any]:
        result = fn()
        if max(result.output_tokens) == 1:
            return PhaseReading(3.0, 0.4, busy_s=0.3, tail_s=0.1), 4, result
        return PhaseReading(10.0, 1.0, busy_s=0.8, tail_s=0.2), 2, result


@dataclass
class PhaseReading(Reading):
    busy_s: float = 0.0
    tail_s: float = 0.0


@pytest.mark.parametrize("idle_s", [0.0, 0.5])
def test_phases_measure_prefill_in_its_own_windows_and_add_up_to_the_total(idle_s: float) -> None:
    cfg = load_config(
        compose(
            "model=tiny_gpt2",
            "task=[qa]",
            "infer.warmup_requests=0",
            "infer.batch_size=2",
            "infer.output_tokens=8",
            f"gpu.idle_baseline_s={idle_s}",
        )
    )
    gen = FakeGenerator()
    rows, _, _, _ = _run(cfg, gen, {"qa": _items("qa", "qa", 2)}, PhaseMeter(idle_w=[5.0, 5.0]))
    assert gen.calls == [(2, 8, "eager"), (2, 1, "eager")]  # the same prompts, one new token
    idle_w = 5.0 if idle_s else 0.0
    for row in rows:
        # each request's share of the prefill window (2 requests x 4 repeats), tail out
        assert row["prefill_energy_j"] == pytest.approx((3.0 - idle_w * 0.1) / 8)
        assert row["prefill_time_s"] == pytest.approx(0.3 / 4)
        assert row["prefill_energy_j"] + row["decode_energy_j"] == pytest.approx(row["energy_j"])
        assert row["prefill_time_s"] + row["decode_time_s"] == pytest.approx(row["latency_s"])
        assert row["energy_j"] == pytest.approx((10.0 - idle_w * 0.2) / 4)
        assert row["prefill_window_repeats"] == 4 and row["prefill_window_trusted"]


def test_without_phases_there_is_no_prefill_window() -> None:
    cfg = load_config(
        compose("model=tiny_gpt2", "task=[qa]", "infer.warmup_requests=0", "infer.phases=false")
    )
    gen = FakeGenerator()
    rows, _, _, _ = _run(cfg, gen, {"qa": _items("qa", "qa", 1)}, PhaseMeter())
    assert [c[1] for c in gen.calls] == [cfg.task("qa").output_tokens]
    assert "prefill_energy_j" not in rows[0] and "decode_energy_j" not in rows[0]
