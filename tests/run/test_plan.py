from __future__ import annotations

import pytest

from helpers import compose, window_facts
from llm_energy.config.settings import load_config
from llm_energy.run.plan import (
    batches,
    energy_kind,
    failure_records,
    request_records,
    sweep_points,
)


def test_sweep_points_cross_and_interleave() -> None:
    cfg = load_config(compose("sweep=lengths", "infer.repetitions=2"))
    points = sweep_points(cfg)
    assert len(points) == 2 * 3 * 3 * 2
    first_round = points[: len(points) // 2]
    assert {p.rep for p in first_round} == {0}  # every point once before any repeats
    assert {(p.input_tokens, p.output_tokens, p.batch_size) for p in first_round} == {
        (i, o, b) for i in (64, 128, 256) for o in (16, 32, 64) for b in (1, 4)
    }


def test_random_order_is_seeded() -> None:
    a = sweep_points(
        load_config(compose("sweep=freqs", "sweep.order=random", "infer.repetitions=3"))
    )
    b = sweep_points(
        load_config(compose("sweep=freqs", "sweep.order=random", "infer.repetitions=3"))
    )
    c = sweep_points(
        load_config(
            compose("sweep=freqs", "sweep.order=random", "infer.repetitions=3", "meta.seed=1")
        )
    )
    assert a == b and a != c and sorted(map(str, a)) == sorted(map(str, c))


def test_single_point_uses_gpu_freq() -> None:
    points = sweep_points(load_config(compose("gpu.freq=1200")))
    assert [(p.freq_mhz, p.batch_size) for p in points] == [(1200, 1)]


def test_batches() -> None:
    assert [len(b) for b in batches(list(range(7)), 3)] == [3, 3, 1]


def test_request_records_split_window_energy_over_batch_and_repeats() -> None:
    items = [{"task": "qa", "kind": "qa", "item_id": str(i), "references": ["x"]} for i in range(2)]
    rows = request_records(
        base={"model": "m"},
        items=items,
        inputs=[{"input_tokens": 5}] * 2,
        predictions=["a", "b"],
        output_tokens=[4, 2],
        ttft_s=0.1,
        window=window_facts(),
    )
    assert len(rows) == 2
    # 12 J over 2 requests x 3 repeats; one execution of the batch lasts 2/3 s
    assert rows[0]["energy_j"] == pytest.approx(2.0)
    assert rows[0]["latency_s"] == pytest.approx(2 / 3)
    assert rows[0]["dynamic_energy_j"] == pytest.approx(2.0 - 1.0 * 2.0 / 6)
    assert rows[0]["tpot_s"] == pytest.approx((2 / 3 - 0.1) / 3)
    assert rows[1]["tokens_per_s"] == pytest.approx(2 / (2 / 3))
    assert rows[0]["energy_kind"] == "measured" and rows[0]["avg_power_w"] == pytest.approx(6.0)


def test_energy_kind_labels() -> None:
    assert energy_kind("simulated") == "simulated"
    assert energy_kind("codecarbon-estimate") == "estimated"
    assert energy_kind("rapl") == "measured"
    with pytest.raises(ValueError):
        energy_kind("guess")


def test_failure_records_keep_configuration() -> None:
    rows = failure_records(
        base={"batch_size": 64},
        items=[{"task": "qa", "kind": "qa", "item_id": "1"}],
        status="oom",
        error="out of memory",
    )
    assert rows[0]["status"] == "oom" and rows[0]["batch_size"] == 64


def test_tpot_uses_the_longest_output_and_the_last_call() -> None:
    items = [{"task": "qa", "kind": "qa", "item_id": str(i), "references": []} for i in range(2)]
    rows = request_records(
        base={},
        items=items,
        inputs=[{}, {}],
        predictions=["a", "b"],
        output_tokens=[10, 100],
        ttft_s=0.05,
        window=window_facts(window_s=3.0, window_repeats=3),
        last_call_s=1.04,
    )
    # the batch decodes 99 steps after its first token, whatever each request's own length
    assert rows[0]["tpot_s"] == pytest.approx((1.04 - 0.05) / 99)
    assert rows[0]["tpot_s"] == rows[1]["tpot_s"]
    assert rows[0]["latency_s"] == pytest.approx(1.0)


def _ok_row(**kw: object) -> dict[str, object]:
    row: dict[str, object] = {
        "status": "ok",
        "window_energy_j": 100.0,
        "window_s": 2.0,
        "window_tail_s": 0.05,
        "window_repeats": 2,
        "batch_fill": 1,
        "energy_j": 50.0,
    }
    row.update(kw)
    return row


def test_idle_baseline_takes_the_tick_tail_out_of_the_energy() -> None:
    from llm_energy.run.plan import with_idle_baseline

    out = with_idle_baseline(
        _ok_row(), power_w=120.0, before_w=118.0, after_w=122.0, se_w=2.0, df=9
    )
    # 0.05 s of idle tail at 120 W = 6 J of the 100 J window; a request is half the window.
    assert out["window_tail_energy_j"] == pytest.approx(6.0)
    assert out["energy_j"] == pytest.approx((100.0 - 6.0) / 2)
    assert out["dynamic_energy_j"] == pytest.approx((100.0 - 120.0 * 2.0) / 2)
    assert out["dynamic_energy_se_j"] == pytest.approx(2.0 * 2.0 / 2)
    assert (out["idle_power_before_w"], out["idle_power_after_w"]) == (118.0, 122.0)
    assert (out["idle_power_se_w"], out["idle_power_df"]) == (2.0, 9)


def test_without_a_baseline_the_energy_is_left_as_measured() -> None:
    from llm_energy.run.plan import with_idle_baseline

    out = with_idle_baseline(
        _ok_row(), power_w=None, before_w=None, after_w=None, se_w=None, df=None
    )
    assert out["energy_j"] == 50.0 and out["dynamic_energy_j"] is None
    assert out["idle_power_df"] is None
    failed = with_idle_baseline(
        {"status": "oom"}, power_w=120.0, before_w=120.0, after_w=None, se_w=None, df=None
    )
    assert failed["dynamic_energy_j"] is None and "energy_j" not in failed


def test_power_limits_and_memory_clocks_are_sweep_dimensions() -> None:
    cfg = load_config(
        compose(
            "sweep.freqs_mhz=[null,1200]",
            "sweep.power_limits_w=[null,300]",
            "sweep.mem_freqs_mhz=[3201,2201]",
            "infer.repetitions=2",
        )
    )
    points = sweep_points(cfg)
    knobs = [(p.power_limit_w, p.mem_freq_mhz, p.freq_mhz) for p in points]
    assert len(points) == 16 and {p.rep for p in points[:8]} == {0}
    assert set(knobs[:8]) == {
        (w, m, f) for w in (None, 300) for m in (3201, 2201) for f in (None, 1200)
    }
    assert knobs[:2] == [(None, 3201, None), (None, 3201, 1200)]  # the SM clock moves fastest
    one = sweep_points(load_config(compose("gpu.power_limit_w=300", "gpu.mem_freq=2201")))
    assert [(p.power_limit_w, p.mem_freq_mhz) for p in one] == [(300, 2201)]


def test_a_sweep_crossing_knobs_into_thousands_of_points_is_one_line() -> None:
    from llm_energy.run.plan import sweep_size_problem

    big = load_config(
        compose(
            f"sweep.freqs_mhz=[{','.join(str(f) for f in range(600, 1980, 60))}]",
            "sweep.power_limits_w=[200,300,400,500,600,700]",
            "sweep.mem_freqs_mhz=[3201,2201]",
            "sweep.batch_sizes=[1,2,4,8]",
        )
    )
    assert sweep_size_problem(big) == (
        "the sweep crosses 6 sweep.power_limits_w x 2 sweep.mem_freqs_mhz x 23 sweep.freqs_mhz "
        "x 4 sweep.batch_sizes = 1104 points, over the 1000 one run allows: sweep fewer values, "
        "or split the study with `llm-energy grid`"
    )
    assert sweep_size_problem(load_config(compose("sweep=paper"))) is None
