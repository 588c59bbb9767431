"""compare.py: parse a hand-written ``dvc exp show --json`` (DVC 3.x) and compare caps."""

from __future__ import annotations

import copy
import json
import math
from typing import Any

import pandas as pd
import pytest

from llm_energy.analysis.compare import (
    COMPARE_COLUMNS,
    compare_experiments,
    experiments_from_dvc_json,
)

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
        "energy": {"kind": "measured", "source": "nvml", "j_per_token": jpt, "total_j": jpt * 640},
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


def test_compare_without_default_uses_highest_and_groups_by_model() -> None:
    rows = []
    for model, scale in (("a", 1.0), ("b", 2.0)):
        for freq, jpt, lat in ((1980.0, 6.0, 1.0), (1500.0, 5.0, 1.03)):
            rows.append(
                {
                    "experiment": f"{model}-{freq:.0f}",
                    "kind": "experiment",
                    "config.model": model,
                    "energy.kind": "measured",
                    "energy.j_per_token": jpt * scale,
                    "perf.latency_p50_s": lat,
                    "gpu.freq_applied_mhz": freq,
                }
            )
    table = compare_experiments(pd.DataFrame(rows), latency_budget_pct=5.0)
    assert set(table.loc[table["is_baseline"], "experiment"]) == {"a-1980", "b-1980"}
    assert set(table.loc[table["best_within_budget"], "experiment"]) == {"a-1500", "b-1500"}


def test_compare_ignores_mixed_frequency_runs_and_empty() -> None:
    exps = experiments_from_dvc_json(dvc_exp_show_sample())
    exps.loc[exps["experiment"] == "cap-705", "gpu.freq_mode"] = "mixed"
    assert "cap-705" not in set(compare_experiments(exps)["experiment"])
    assert compare_experiments(pd.DataFrame()).empty


def test_comparison_table_alias_and_figure() -> None:
    from matplotlib.figure import Figure

    from llm_energy.analysis.compare import comparison_figure, comparison_table
    from llm_energy.analysis.figures import SIMULATED_LABEL, figure_png_bytes

    exps = experiments_from_dvc_json(dvc_exp_show_sample())
    table = comparison_table(exps, latency_budget_pct=5.0)
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


def test_compare_never_pools_energy_sources() -> None:
    # nvml (GPU counter) and rapl (CPU package) are both "measured", but not comparable
    rows = [
        _flat("gpu-base", None, 6.0, 1.0, **{"energy.source": "nvml"}),
        _flat("gpu-1500", 1500.0, 5.0, 1.02, **{"energy.source": "nvml"}),
        _flat("cpu-base", None, 2.0, 1.0, **{"energy.source": "rapl"}),
        _flat("cpu-1500", 1500.0, 1.9, 1.02, **{"energy.source": "rapl"}),
    ]
    table = compare_experiments(pd.DataFrame(rows), latency_budget_pct=5.0)
    assert set(table.loc[table["is_baseline"], "experiment"]) == {"gpu-base", "cpu-base"}
    by = table.set_index("experiment")
    assert by.loc["cpu-1500", "saving_pct"] == pytest.approx(5.0)  # vs its own rapl baseline
    assert by.loc["gpu-1500", "saving_pct"] == pytest.approx(100 / 6)
    assert "energy nvml" in by.loc["gpu-1500", "group"]
    assert "energy rapl" in by.loc["cpu-1500", "group"]


def test_compare_never_pools_gpu_models_even_when_asked_to() -> None:
    rows = [
        _flat("h200-base", None, 6.0, 1.0, **{"gpu.name": "NVIDIA H200"}),
        _flat("h200-1500", 1500.0, 5.0, 1.02, **{"gpu.name": "NVIDIA H200"}),
        _flat("a100-1500", 1500.0, 1.0, 1.01, **{"gpu.name": "NVIDIA A100"}),
        _flat("unnamed-1500", 1500.0, 0.5, 1.0),
    ]
    table = compare_experiments(
        pd.DataFrame(rows), latency_budget_pct=5.0, group_cols=["config.model"]
    )
    by = table.set_index("experiment")
    # the A100 run is not "a 83 % saving" against the H200 baseline: it is its own group
    assert by.loc["a100-1500", "is_baseline"] and by.loc["unnamed-1500", "is_baseline"]
    assert not by.loc["a100-1500", "best_within_budget"]
    assert by.loc["h200-1500", "best_within_budget"]
    assert "GPU NVIDIA A100" in by.loc["a100-1500", "group"]
    assert "GPU unknown" in by.loc["unnamed-1500", "group"]
    assert table["group"].nunique() == 3
