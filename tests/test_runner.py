"""InferenceRun with fake generator/meter/clocks: the loop's bookkeeping and failure handling."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from helpers import compose
from llm_energy.config import load_config
from llm_energy.runtime.engine import GenerationResult
from llm_energy.runtime.runner import InferenceRun


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
    def __init__(self) -> None:
        self.idle_calls = 0

    def run_until_trusted(
        self, fn: Any, cap_mhz: int | None = None, max_repeats: int = 50
    ) -> tuple[Reading, int, Any]:
        return Reading(), 2, fn()

    def measure_idle_power_w(self, seconds: float) -> float:
        self.idle_calls += 1
        return 5.0


class FakeClocks:
    def __init__(self) -> None:
        self.applied_sm_mhz: int | None = None
        self.history: list[int | None] = []

    def set_sm_cap(self, freq: int | None) -> int | None:
        self.history.append(freq)
        self.applied_sm_mhz = freq
        return freq


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
    cfg: Any, gen: FakeGenerator, items: dict[str, list[dict[str, Any]]]
) -> tuple[list[dict[str, Any]], InferenceRun, FakeClocks, FakeMeter]:
    rows: list[dict[str, Any]] = []
    clocks, meter = FakeClocks(), FakeMeter()
    run = InferenceRun(
        cfg,
        generator=gen,
        meter=meter,
        clocks=clocks,
        device=None,
        items_by_task=items,
        write=rows.append,
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


def test_sweep_sets_each_cap_measures_idle_once_per_frequency_and_records_both_freqs() -> None:
    cfg = load_config(
        compose(
            "model=tiny_gpt2",
            "task=[generation]",
            "sweep=freqs",
            "infer.repetitions=2",
            "infer.warmup_requests=0",
        )
    )
    rows, _, clocks, meter = _run(
        cfg, FakeGenerator(), {"generation": _items("generation", "generation", 2)}
    )
    assert clocks.history == [None, 1980, 1605, 1305, 1005, 705] * 2
    assert meter.idle_calls == 6  # cached per applied frequency, not per repetition
    assert len(rows) == 2 * 6 * 2
    assert {(r["freq_requested_mhz"], r["freq_applied_mhz"]) for r in rows} == {
        (f, f) for f in clocks.history
    }
    row = rows[0]
    assert row["energy_j"] == pytest.approx(10.0 / 2 / 1)  # window 10 J over 2 repeats, batch of 1
    assert row["ref_tokens"] == 3 and row["ref_nll_sum"] == pytest.approx(6.0)
    assert row["idle_power_w"] == 5.0 and row["energy_kind"] == "simulated"


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
    rows: list[dict[str, Any]] = []
    meter = FakeMeter()
    device = type("Dev", (), {"energy_source": "codecarbon-estimate"})()
    run = InferenceRun(
        cfg,
        generator=FakeGenerator(),
        meter=meter,
        clocks=FakeClocks(),
        device=device,
        items_by_task={"qa": _items("qa", "qa", 2)},
        write=rows.append,
    )
    run.run()
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
    rows: list[dict[str, Any]] = []
    run = InferenceRun(
        cfg,
        generator=FakeGenerator(),
        meter=meter,
        clocks=ObservedClocks(),
        device=None,
        items_by_task={"qa": _items("qa", "qa", 2)},
        write=rows.append,
    )
    run.run()
    assert caps == [1200, 1200]  # the externally set clock is checked against the request
    assert all(r["freq_applied_mhz"] is None and r["freq_requested_mhz"] == 1200 for r in rows)


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
