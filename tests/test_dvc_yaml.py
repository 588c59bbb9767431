"""dvc.yaml stays honest: declared code deps exist, each stage lists its script and params sections."""

from __future__ import annotations

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
PIPELINE = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())
OUTPUTS = {
    next(iter(o)) if isinstance(o, dict) else o
    for s in PIPELINE.values()
    for key in ("outs", "metrics")
    for o in s.get(key, [])
}


def test_stage_order_and_names() -> None:
    assert list(PIPELINE) == ["prepare", "model", "infer", "aggregate", "stats", "plots"]


def test_every_dependency_exists_or_is_produced_upstream() -> None:
    for name, stage in PIPELINE.items():
        assert f"stages/{name}.py" in stage["deps"] and stage["cmd"] == f"python stages/{name}.py"
        for dep in stage["deps"]:
            assert (REPO / dep).exists() or dep in OUTPUTS, f"{name}: {dep}"


def test_declared_params_exist() -> None:
    for name, stage in PIPELINE.items():
        for key in stage["params"]:
            node = PARAMS
            for part in key.split("."):
                assert part in node, f"{name}: params key {key} missing from params.yaml"
                node = node[part]


def test_no_back_edges() -> None:
    order = list(PIPELINE)
    produced_by = {
        o: n
        for n, s in PIPELINE.items()
        for k in ("outs", "metrics")
        for o in (next(iter(x)) if isinstance(x, dict) else x for x in s.get(k, []))
    }
    for name, stage in PIPELINE.items():
        for dep in stage["deps"]:
            if dep in produced_by:
                assert order.index(produced_by[dep]) < order.index(name), (
                    f"{name} depends on later {dep}"
                )
