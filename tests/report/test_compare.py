"""compare.py: parse a hand-written ``dvc exp show --json`` (DVC 3.x) and compare caps."""

from __future__ import annotations

import copy
import json
import math
from typing import Any

import pandas as pd
import pytest

from analysis_settings import compare_experiments
from llm_energy.analysis.experiments import experiments_from_dvc_json
from llm_energy.report.compare import COMPARE_COLUMNS

# (freq or None, J/token, p50 latency s)
POINTS: dict[str, tuple[float | None, float, float]] = {
    "main": (None, 6.0, 1.00),
    "cap-1605": (1605.0, 5.1, 1.04),
    "cap-1305": (1305.0, 4.3, 1.12),
    "cap-1005": (1005.0, 3.9, 1.30),
    "cap-705": (705.0, 4.2, 1.70),  # dominated by 1005: slower and hungrier
}


def _params(freq: float | None) -> dict[str, Any]:
    return {
        "meta": {"experiment": "default", "seed": 0},
        "model": {"name": "smollm2-135m", "params_m": 134.5, "prompts": {"qa": "{context}"}},
        "gpu": {"backend": "nvml", "control": "lock", "freq": freq, "mem_freq": None},
        "infer": {"engine": "eager", "batch_size": 1, "repetitions": 1},
        "stats": {"alpha": 0.05, "latency_budget_pct": 5.0},
    }


def _metrics(freq: float | None, jpt: float, p50: float) -> dict[str, Any]:
    return {
        "energy": {
            "kind": "measured",
            "source": "nvml",
            "j_per_token": jpt,
            "j_per_token_ci_low": jpt * 0.98,
            "j_per_token_ci_high": jpt * 1.02,
            "total_j": jpt * 640,
        },
        "perf": {"tokens_per_s": 40.0 / p50, "latency_p50_s": p50, "latency_p95_s": p50 * 1.2},
        "gpu": {
            "freq_applied_mhz": freq,
            "freq_mode": "default" if freq is None else "capped",
            "n_freq_levels": 1,
        },
        "quality": {"exact_match": 0.42},
        "config": {"model": "smollm2-135m", "task": "qa", "engine": "eager", "batch_size": 1},
        "tradeoff": {"best_saving_pct": None},
    }


def _data(rev: str, freq: float | None, jpt: float, p50: float) -> dict[str, Any]:
    return {
        "rev": rev,
        "timestamp": "2025-01-02T10:00:00",
        "params": {"params.yaml": {"data": _params(freq)}},
        "metrics": {"reports/metrics.json": {"data": _metrics(freq, jpt, p50)}},
        "deps": {"data/infer/requests.jsonl": {"hash": "md5", "size": 1234, "nfiles": None}},
        "outs": {
            "data/aggregate/summary.csv": {
                "hash": "md5",
                "size": 99,
                "nfiles": None,
                "use_cache": True,
                "is_data_source": False,
            }
        },
        "meta": {"has_checkpoints": False},
    }


def _exp_range(name: str, rev: str, state: str = "success") -> dict[str, Any]:
    freq, jpt, p50 = POINTS[name]
    return {
        "revs": [
            {
                "rev": rev,
                "name": name,
                "data": _data(rev, freq, jpt, p50),
                "error": None,
                "experiments": None,
            }
        ],
        "executor": {
            "state": state,
            "name": "workspace" if state != "queued" else "dvc-task",
            "local": None,
        },
        "name": name,
    }


def dvc_exp_show_sample() -> list[dict[str, Any]]:
    """Shaped like DVC 3.x ``dvc exp show --json`` (workspace, one commit, its experiments)."""
    main_rev = "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678"
    ws = _data("workspace", *POINTS["cap-1605"])  # workspace = last applied experiment
    return [
        {"rev": "workspace", "name": None, "data": ws, "error": None, "experiments": None},
        {
            "rev": main_rev,
            "name": "main",
            "data": _data(main_rev, *POINTS["main"]),
            "error": None,
            "experiments": [
                _exp_range("cap-1605", "1605" + "0" * 36),
                _exp_range("cap-1305", "1305" + "0" * 36),
                _exp_range("cap-1005", "1005" + "0" * 36),
                _exp_range("cap-705", "0705" + "0" * 36),
                {
                    "revs": [
                        {
                            "rev": "dead" + "0" * 36,
                            "name": "cap-broken",
                            "error": {
                                "type": "ReproductionError",
                                "msg": "failed to reproduce 'infer'",
                            },
                        }
                    ],
                    "executor": {"state": "failed", "name": "workspace", "local": None},
                    "name": "cap-broken",
                },
                {
                    "revs": [
                        {
                            "rev": "beef" + "0" * 36,
                            "name": "cap-queued",
                            "data": {
                                "rev": "beef" + "0" * 36,
                                "timestamp": None,
                                "params": {"params.yaml": {"data": _params(405.0)}},
                                "metrics": {
                                    "reports/metrics.json": {
                                        "error": {"type": "FileNotFoundError", "msg": "missing"}
                                    }
                                },
                                "deps": None,
                                "outs": None,
                                "meta": {"has_checkpoints": False},
                            },
                        }
                    ],
                    "executor": {
                        "state": "queued",
                        "name": "dvc-task",
                        "local": {
                            "root": None,
                            "log": None,
                            "pid": None,
                            "returncode": None,
                            "task_id": "t1",
                        },
                    },
                    "name": "cap-queued",
                },
            ],
        },
    ]


def test_parse_dvc3_json() -> None:
    sample = json.loads(json.dumps(dvc_exp_show_sample()))  # exactly what json.loads would give
    exps = experiments_from_dvc_json(sample)
    assert list(exps["experiment"]) == [
        "workspace",
        "main",
        "cap-1605",
        "cap-1305",
        "cap-1005",
        "cap-705",
        "cap-broken",
        "cap-queued",
    ]
    kinds = dict(zip(exps["experiment"], exps["kind"], strict=True))
    assert kinds["workspace"] == "workspace" and kinds["main"] == "baseline"
    assert kinds["cap-1305"] == "experiment"
    status = dict(zip(exps["experiment"], exps["status"], strict=True))
    assert status["cap-broken"] == "failed" and status["cap-queued"] == "queued"
    broken = exps.set_index("experiment").loc["cap-broken"]
    assert broken["error"] == "failed to reproduce 'infer'"
    row = exps.set_index("experiment").loc["cap-1305"]
    assert row["gpu.freq"] == 1305.0  # param
    assert row["model.name"] == "smollm2-135m"
    assert row["model.prompts.qa"] == "{context}"
    assert row["energy.j_per_token"] == 4.3  # metric
    assert row["gpu.freq_applied_mhz"] == 1305.0
    assert row["parent_rev"].startswith("a1b2c3")
    assert math.isnan(exps.set_index("experiment").loc["cap-queued", "energy.j_per_token"])


def test_parse_is_defensive() -> None:
    assert experiments_from_dvc_json([]).empty
    nested = {"anything": {"data": {"wrapped": {"metrics": {"m.json": {"data": {"a": {"b": 1}}}}}}}}
    exps = experiments_from_dvc_json([{"rev": "abc", **nested}])
    assert exps.loc[0, "a.b"] == 1
    # DVC 2.x layout: dict of revisions with "baseline"
    legacy = {
        "workspace": {
            "baseline": {"data": {"metrics": {"m.json": {"data": {"x": 1}}}, "params": {}}}
        },
        "abc123": {
            "baseline": {"data": {"name": "main", "metrics": {"m.json": {"data": {"x": 2}}}}},
            "exp999": {"data": {"name": "exp-a", "metrics": {"m.json": {"data": {"x": 3}}}}},
        },
    }
    old = experiments_from_dvc_json(legacy)
    assert list(old["x"]) == [1, 2, 3]
    assert list(old["kind"]) == ["workspace", "baseline", "experiment"]
    assert old.loc[2, "experiment"] == "exp-a"


def test_key_collision_between_files_gets_prefixed() -> None:
    data = copy.deepcopy(dvc_exp_show_sample()[1])
    data["experiments"] = None
    data["data"]["metrics"]["other.json"] = {"data": {"energy": {"j_per_token": 99.0}}}
    exps = experiments_from_dvc_json([data])
    assert exps.loc[0, "reports/metrics.json:energy.j_per_token"] == 6.0
    assert exps.loc[0, "other.json:energy.j_per_token"] == 99.0


@pytest.mark.parametrize(
    ("budget", "best", "saving"),
    [(5.0, "cap-1605", 15.0), (15.0, "cap-1305", 100 * (1 - 4.3 / 6.0)), (1.0, None, None)],
)
def test_compare_experiments_best_within_budget(
    budget: float, best: str | None, saving: float | None
) -> None:
    table = compare_experiments(
        experiments_from_dvc_json(dvc_exp_show_sample()), latency_budget_pct=budget
    )
    assert list(table.columns)[-len(COMPARE_COLUMNS) :] == COMPARE_COLUMNS
    # workspace duplicate of cap-1605 dropped; failed and queued runs have no metrics
    assert sorted(table["experiment"]) == sorted(POINTS)
    base = table[table["is_baseline"]]
    assert list(base["experiment"]) == ["main"] and base["label"].iloc[0] == "default"
    chosen = table[table["best_within_budget"]]
    if best is None:
        assert chosen.empty
    else:
        assert list(chosen["experiment"]) == [best]
        assert chosen["saving_pct"].iloc[0] == pytest.approx(saving)
    frontier = dict(zip(table["experiment"], table["on_frontier"], strict=True))
    assert frontier == {
        "main": True,
        "cap-1605": True,
        "cap-1305": True,
        "cap-1005": True,
        "cap-705": False,
    }
    by = table.set_index("experiment")
    assert by.loc["cap-1305", "latency_change_pct"] == pytest.approx(12.0)
    assert "config.model" in table.columns and "energy.kind" in table.columns


def test_compare_without_default_states_no_reference() -> None:
    rows = [
        _flat("a-1980", 1980.0, 6.0, 1.0, **{"energy.j_per_token_ci_low": 5.9}),
        _flat("a-1500", 1500.0, 5.0, 1.03, **{"energy.j_per_token_ci_low": 4.9}),
    ]
    table = compare_experiments(pd.DataFrame(rows), latency_budget_pct=5.0)
    assert not table["is_baseline"].any() and table["saving_pct"].isna().all()
    assert not table["best_within_budget"].any()
    assert set(table["note"]) == {"no default-clock reference in this group"}


def test_compare_ignores_mixed_frequency_runs_and_empty() -> None:
    exps = experiments_from_dvc_json(dvc_exp_show_sample())
    exps.loc[exps["experiment"] == "cap-705", "gpu.freq_mode"] = "mixed"
    assert "cap-705" not in set(compare_experiments(exps)["experiment"])
    assert compare_experiments(pd.DataFrame()).empty


def test_comparison_figure() -> None:
    from matplotlib.figure import Figure

    from llm_energy.report.compare import comparison_figure
    from llm_energy.report.figure_style import SIMULATED_LABEL, figure_png_bytes

    exps = experiments_from_dvc_json(dvc_exp_show_sample())
    table = compare_experiments(exps, latency_budget_pct=5.0)
    fig = comparison_figure(table)
    assert isinstance(fig, Figure)
    assert figure_png_bytes(fig, dpi=30).startswith(b"\x89PNG")
    sim = comparison_figure(table.assign(**{"energy.kind": "simulated"}))
    assert SIMULATED_LABEL in sim._suptitle.get_text()
    figure_png_bytes(comparison_figure(table.iloc[0:0]), dpi=30)


def _flat(name: str, freq: float | None, jpt: float, lat: float, **extra: object) -> dict:
    return {
        "experiment": name,
        "kind": "experiment",
        "config.model": "m",
        "config.task": "qa",
        "energy.kind": "measured",
        "energy.j_per_token": jpt,
        "perf.latency_p50_s": lat,
        "gpu.freq_applied_mhz": freq,
        "gpu.freq_mode": "default" if freq is None else "capped",
        **extra,
    }


def _ci(rows: list[dict]) -> list[dict]:
    for r in rows:
        r["energy.j_per_token_ci_low"] = r["energy.j_per_token"] * 0.99
        r["energy.j_per_token_ci_high"] = r["energy.j_per_token"] * 1.01
    return rows


def test_compare_never_pools_energy_sources() -> None:
    # nvml (GPU counter) and rapl (CPU package) are both "measured", but not comparable
    rows = _ci(
        [
            _flat("gpu-base", None, 6.0, 1.0, **{"energy.source": "nvml"}),
            _flat("gpu-1500", 1500.0, 5.0, 1.02, **{"energy.source": "nvml"}),
            _flat("cpu-base", None, 2.0, 1.0, **{"energy.source": "rapl"}),
            _flat("cpu-1500", 1500.0, 1.9, 1.02, **{"energy.source": "rapl"}),
        ]
    )
    table = compare_experiments(pd.DataFrame(rows), latency_budget_pct=5.0)
    assert set(table.loc[table["is_baseline"], "experiment"]) == {"gpu-base", "cpu-base"}
    by = table.set_index("experiment")
    assert by.loc["cpu-1500", "saving_pct"] == pytest.approx(5.0)  # vs its own rapl baseline
    assert by.loc["gpu-1500", "saving_pct"] == pytest.approx(100 / 6)
    assert "energy nvml" in by.loc["gpu-1500", "group"]
    assert "energy rapl" in by.loc["cpu-1500", "group"]


def test_compare_never_pools_gpu_models_even_when_asked_to() -> None:
    rows = _ci(
        [
            _flat("h200-base", None, 6.0, 1.0, **{"gpu.name": "NVIDIA H200"}),
            _flat("h200-1500", 1500.0, 5.0, 1.02, **{"gpu.name": "NVIDIA H200"}),
            _flat("a100-1500", 1500.0, 1.0, 1.01, **{"gpu.name": "NVIDIA A100"}),
            _flat("unnamed-1500", 1500.0, 0.5, 1.0),
        ]
    )
    table = compare_experiments(
        pd.DataFrame(rows), latency_budget_pct=5.0, group_cols=["config.model"]
    )
    by = table.set_index("experiment")
    # the A100 run is not "a 83 % saving" against the H200 baseline: it is its own group
    assert math.isnan(by.loc["a100-1500", "saving_pct"]) and not by.loc["a100-1500", "reference"]
    assert not by.loc["a100-1500", "best_within_budget"]
    assert by.loc["h200-1500", "best_within_budget"]
    assert by.loc["h200-1500", "reference"] == "h200-base default"
    assert "GPU NVIDIA A100" in by.loc["a100-1500", "group"]
    assert "GPU unknown" in by.loc["unnamed-1500", "group"]
    assert table["group"].nunique() == 3


# --- per-clock rows (metrics.json "by_clock") and the overlay figure --------------------------------


def _by_clock(points: list[tuple[float | None, float, float]], source: str, device: str) -> dict:
    """``by_clock`` as ``dvc exp show --json`` gives it: a dict, nulls left out."""
    out = {}
    for i, (freq, jpt, lat) in enumerate(points):
        entry = {
            "model": "m",
            "task": "qa",
            "default_clocks": freq is None,
            "energy_kind": "simulated" if source == "simulated" else "estimated",
            "energy_source": source,
            "device": device,
            "j_per_token": jpt,
            "j_per_token_ci_low": jpt * 0.99,
            "j_per_token_ci_high": jpt * 1.01,
            "latency_p50_s": lat,
        }
        if freq is not None:
            entry["freq_mhz"] = freq
        out[f"c{i:02d}"] = entry
    return out


def _sweep_rev(name: str, by_clock: dict) -> dict:
    metrics = {
        "energy": {"kind": "simulated", "j_per_token": 1.0},
        "perf": {"latency_p50_s": 1.0},
        "gpu": {"freq_mode": "mixed", "n_freq_levels": len(by_clock)},
        "config": {"model": "m", "task": "qa"},
        "by_clock": by_clock,
    }
    data = {"rev": name * 8, "metrics": {"reports/metrics.json": {"data": metrics}}}
    return {"revs": [{"rev": name * 8, "name": name, "data": data}], "name": name}


SWEEP = [(None, 2.0, 1.0), (1200.0, 1.6, 1.03), (900.0, 1.5, 1.4)]


def _sweep_sample() -> list[dict]:
    exps = [
        _sweep_rev("sim-a", _by_clock(SWEEP, "simulated", "NVIDIA H200 (simulated)")),
        _sweep_rev(
            "sim-b",
            _by_clock(
                [(f, j * 1.1, t) for f, j, t in SWEEP], "simulated", "NVIDIA H200 (simulated)"
            ),
        ),
        _sweep_rev(
            "cpu",
            _by_clock([(None, 1.4, 2.0), (1200.0, 1.5, 2.1)], "codecarbon-estimate", "AMD EPYC"),
        ),
    ]
    return [{"rev": "abc" * 10, "name": "main", "data": {}, "experiments": exps}]


def test_sweep_experiment_gives_one_row_per_clock() -> None:
    table = compare_experiments(experiments_from_dvc_json(_sweep_sample()))
    a = table[table["experiment"] == "sim-a"].set_index("label")
    assert len(a) == 3 and set(a.index) == {"default", "1200 MHz", "900 MHz"}
    assert a.loc["default", "is_baseline"] and a.loc["1200 MHz", "reference"] == "sim-a default"
    assert a.loc["1200 MHz", "saving_pct"] == pytest.approx(20.0)
    # interval from both CIs: 1 - 1.616/1.98 … 1 - 1.584/2.02
    assert a.loc["1200 MHz", "saving_ci_low"] == pytest.approx(100 * (1 - 1.6 * 1.01 / 1.98))
    assert a.loc["1200 MHz", "saving_ci_high"] == pytest.approx(100 * (1 - 1.6 * 0.99 / 2.02))
    assert a.loc["1200 MHz", "best_within_budget"]  # 900 MHz is over the latency budget
    # sim-b is compared with its own default, not with sim-a's
    b = table[table["experiment"] == "sim-b"].set_index("label")
    assert b.loc["1200 MHz", "reference"] == "sim-b default"


def test_sources_and_gpus_are_kept_apart() -> None:
    table = compare_experiments(experiments_from_dvc_json(_sweep_sample()))
    cpu = table[table["experiment"] == "cpu"]
    sim = table[table["experiment"] != "cpu"]
    assert set(cpu["group"]).isdisjoint(set(sim["group"]))
    assert "energy codecarbon-estimate" in cpu["group"].iloc[0]
    assert set(cpu["reference"]) == {"cpu default"}
    assert cpu.set_index("label").loc["1200 MHz", "saving_pct"] == pytest.approx(
        100 * (1 - 1.5 / 1.4)
    )


def test_no_saving_without_an_interval() -> None:
    # two runs of one config at default clocks (e.g. different CPU load), no CI: side by side
    rows = [
        {**_flat("run-1", None, 1.0, 1.0), "kind": "baseline"},
        _flat("run-2", None, 3.18, 1.0),
        _flat("run-2b", 1200.0, 0.9, 1.01),  # cap-only run vs the commit's default, no CI
    ]
    table = compare_experiments(pd.DataFrame(rows)).set_index("experiment")
    assert table["saving_pct"].isna().all() and table["saving_ci_low"].isna().all()
    assert table.loc["run-2", "is_baseline"]  # its own reference, not "−218 %" vs run-1
    assert table.loc["run-2b", "reference"] == "run-1 default"
    assert table.loc["run-2b", "reference_energy"] == 1.0 and table.loc["run-2b", "energy"] == 0.9
    assert "no interval" in table.loc["run-2b", "note"]
    assert not table["best_within_budget"].any()


def test_overlay_one_line_per_experiment_per_group() -> None:
    from llm_energy.report.figure_style import figure_png_bytes
    from llm_energy.report.overlays import clock_overlay_figure, overlay_lines

    table = compare_experiments(experiments_from_dvc_json(_sweep_sample()))
    fig = clock_overlay_figure(table, "energy")
    assert len(fig.axes) == 2  # (simulated, H200) and (codecarbon, EPYC)
    panels = {ax.get_title(): ax for ax in fig.axes}
    sim = next(ax for t, ax in panels.items() if "simulated" in t)
    lines = {ln.get_label(): ln for ln in sim.get_lines() if not ln.get_label().startswith("_")}
    assert set(lines) == {"sim-a", "sim-b"}
    # x: the caps, and the default one step right of the highest cap (1500)
    assert list(lines["sim-a"].get_xdata()) == [900.0, 1200.0, 1500.0]
    assert list(lines["sim-a"].get_ydata()) == pytest.approx([1.5, 1.6, 2.0])
    assert [t.get_text() for t in sim.get_xticklabels()] == ["900", "1200", "default"]
    cpu = next(ax for t, ax in panels.items() if "codecarbon" in t)
    assert [ln.get_label() for ln in cpu.get_lines() if not ln.get_label().startswith("_")] == [
        "cpu"
    ]
    lat = overlay_lines(table, "latency")
    a = lat[lat["line"] == "sim-a"]
    assert list(a["y"]) == [1.4, 1.03, 1.0] and a["y_low"].isna().all()
    assert figure_png_bytes(clock_overlay_figure(table, "latency"), dpi=30)[:4] == b"\x89PNG"
    assert figure_png_bytes(clock_overlay_figure(table.iloc[0:0]), dpi=30)[:4] == b"\x89PNG"


def test_headline_by_clock_is_dvc_safe() -> None:
    from llm_energy.analysis.headline import by_clock_metrics

    summary = pd.DataFrame(
        {
            "model": ["m", "m"],
            "task": ["qa", "qa"],
            "freq_applied_mhz": [None, 900.0],
            "default_clocks": [True, False],
            "energy_kind": ["simulated"] * 2,
            "n": [5, 0],
            "j_per_token_mean": [1.0, 0.8],
            "j_per_token_ci_low": [0.9, float("nan")],
        }
    )
    out = by_clock_metrics(summary, "GPU X")
    assert list(out) == ["c00"]  # a dict (DVC drops lists); n = 0 left out
    assert out["c00"]["device"] == "GPU X" and "freq_mhz" not in out["c00"]  # no nulls
    assert out["c00"]["j_per_token"] == 1.0


def test_overlay_joins_single_clock_experiments_into_one_curve_per_config() -> None:
    from llm_energy.report.overlays import overlay_lines

    # A queue of -S gpu.freq=900,1200,1500: three experiments of one config, one clock each.
    rows = _ci(
        [
            _flat("q-900", 900.0, 1.1, 1.3),
            _flat("q-1200", 1200.0, 1.2, 1.1),
            _flat("q-1500", 1500.0, 1.4, 1.0),
        ]
    )
    data = overlay_lines(compare_experiments(pd.DataFrame(rows)), "energy")
    assert data["line"].nunique() == 1 and data["line"].iloc[0].endswith("(3 experiments)")
    assert list(data["x"]) == [900.0, 1200.0, 1500.0]
    assert list(data["y"]) == pytest.approx([1.1, 1.2, 1.4])
