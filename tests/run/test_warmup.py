"""Warm-up to steady state: the pure loop of runtime.warmup."""

from __future__ import annotations

import pytest

from llm_energy.run.warmup import is_steady, warm_up


def test_is_steady_needs_k_agreeing_latencies() -> None:
    assert not is_steady([1.0, 1.0], k=3, tolerance=0.05)
    assert is_steady([4.0, 1.0, 1.02, 0.99], k=3, tolerance=0.05)
    assert not is_steady([4.0, 1.0, 1.2, 0.99], k=3, tolerance=0.05)


class ColdThenWarm:
    """3x slower for the first `cold_calls` calls of the process, like an H200's cold phase."""

    def __init__(self, cold_calls: int) -> None:
        self.cold_calls, self.calls = cold_calls, 0
        self.t = 0.0

    def clock(self) -> float:
        return self.t

    def __call__(self, key: object) -> float:
        self.calls += 1
        latency = 3.0 if self.calls <= self.cold_calls else 1.0
        self.t += latency
        return latency


def test_warm_up_continues_past_the_cold_phase_until_steady() -> None:
    work = ColdThenWarm(cold_calls=4)
    shapes = {"a": {"task": "a"}, "b": {"task": "b"}}
    rec = warm_up(shapes, work, min_calls=1, k=3, tolerance=0.05, max_s=100.0, clock=work.clock)
    assert rec.stopped_by == "steady" and rec.all_steady
    for s in rec.shapes:
        assert s.latencies_s[-3:] == [1.0, 1.0, 1.0]
        assert 3.0 in s.latencies_s  # the cold calls were absorbed here, not measured later


def test_warm_up_stops_at_its_time_cap_and_says_so() -> None:
    t = [0.0]
    latencies = iter([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0] * 10)

    def drifting(key: object) -> float:
        value = next(latencies)
        t[0] += value
        return value

    rec = warm_up(
        {"a": {}}, drifting, min_calls=1, k=3, tolerance=0.05, max_s=10.0, clock=lambda: t[0]
    )
    assert rec.stopped_by == "time_cap" and not rec.all_steady
    assert rec.elapsed_s >= 10.0 and len(rec.shapes[0].latencies_s) == 4  # 1+2+3+4 = 10 s


def test_warm_up_min_calls_zero_disables_it() -> None:
    called: list[object] = []
    rec = warm_up({"a": {}}, called.append, min_calls=0, k=3, tolerance=0.05, max_s=10.0)  # type: ignore[arg-type]
    assert rec.stopped_by == "disabled" and called == []


def test_min_calls_rounds_run_even_when_already_steady() -> None:
    calls: list[object] = []

    def constant(key: object) -> float:
        calls.append(key)
        return 1.0

    rec = warm_up({"a": {}}, constant, min_calls=5, k=2, tolerance=0.0, max_s=0.0)
    assert len(calls) == 5 and rec.stopped_by == "steady"
    assert rec.to_dict()["shapes"][0]["calls"] == 5


@pytest.mark.parametrize("k", [2, 4])
def test_steady_needs_at_least_k_calls(k: int) -> None:
    calls: list[object] = []
    rec = warm_up(
        {"a": {}}, lambda key: calls.append(key) or 1.0, min_calls=1, k=k, tolerance=0.0, max_s=60.0
    )  # type: ignore[func-returns-value]
    assert len(calls) == k and rec.stopped_by == "steady"
