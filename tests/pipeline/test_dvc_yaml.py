"""dvc.yaml stays honest: declared code deps exist, each stage lists its script and params sections."""

from __future__ import annotations

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
PIPELINE = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())
OUTPUTS = {
    next(iter(o)) if isinstance(o, dict) else o
    for s in PIPELINE.values()
    for key in ("outs", "metrics")
    for o in s.get(key, [])
}


def produced_out(dep: str) -> str | None:
    """The output that is `dep` or holds it (a file inside an output folder, e.g.
    data/infer/run.json inside data/infer), or None."""
    return next((o for o in OUTPUTS if dep == o or dep.startswith(o.rstrip("/") + "/")), None)


def test_stage_order_and_names() -> None:
    assert list(PIPELINE) == [
        "validate",
        "prepare",
        "model",
        "infer",
        "aggregate",
        "stats",
        "plots",
    ]


def test_validate_runs_before_every_other_stage() -> None:
    # Every root stage depends on validate's marker, so DVC runs it before deleting any output.
    marker = next(iter(PIPELINE["validate"]["outs"][0]))
    for name, stage in PIPELINE.items():
        upstream = {d for d in stage["deps"] if d in OUTPUTS}
        assert name == "validate" or upstream, f"{name} could run before validate"
    assert {n for n, s in PIPELINE.items() if marker in s["deps"]} == {"prepare", "model"}


def test_every_dependency_exists_or_is_produced_upstream() -> None:
    for name, stage in PIPELINE.items():
        assert f"stages/{name}.py" in stage["deps"] and stage["cmd"] == f"python stages/{name}.py"
        for dep in stage["deps"]:
            assert produced_out(dep) or (REPO / dep).exists(), f"{name}: {dep}"


def test_declared_params_exist() -> None:
    for name, stage in PIPELINE.items():
        for key in stage.get("params", []):
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
            out = produced_out(dep)
            if out is not None:
                assert order.index(produced_by[out]) < order.index(name), (
                    f"{name} depends on later {dep}"
                )


def _module_file(module: str) -> Path | None:
    base = REPO / "src" / Path(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def _imports(path: Path) -> set[str]:
    import ast

    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if (
            isinstance(node, ast.ImportFrom)
            and node.module
            and node.module.startswith("llm_energy")
        ):
            found.add(node.module)
            found |= {
                f"{node.module}.{a.name}"
                for a in node.names
                if _module_file(f"{node.module}.{a.name}")
            }
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("llm_energy")}
    return found


def _closure(script: Path) -> set[Path]:
    """Every llm_energy source file a stage script can execute (package __init__ files included)."""
    files: set[Path] = set()
    todo = [script, REPO / "stages" / "_common.py"]
    root, walked = REPO / "src/llm_energy/__init__.py", set()
    while todo:
        path = todo.pop()
        for module in _imports(path):
            parts = module.split(".")
            for i in range(1, len(parts) + 1):
                f = _module_file(".".join(parts[:i]))
                files |= {f} if f is not None else set()
                # The root's lazy __getattr__ runs llm_energy.api only for `import llm_energy`.
                if f is not None and f not in walked and (f != root or module == "llm_energy"):
                    walked.add(f)
                    todo.append(f)
    return files


def _runs_nothing(init: Path) -> bool:
    """A package __init__ that is only a docstring (importing it executes no code of ours)."""
    import ast

    body = ast.parse(init.read_text()).body
    return (
        len(body) == 1 and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
    )


def test_each_stage_declares_every_module_it_runs() -> None:
    trivial = {REPO / "src/llm_energy/__init__.py"}  # version string only
    trivial |= {f for f in (REPO / "src/llm_energy").glob("*/__init__.py") if _runs_nothing(f)}
    # Where an analysis stage runs, not what it computes (test_pipeline_e2e proves the bytes the
    # same): as a dep, a change to it would re-run every measurement.
    trivial.add(REPO / "src/llm_energy/cli/stage_server.py")
    for name, stage in PIPELINE.items():
        deps = [REPO / d for d in stage["deps"]]
        missing = sorted(
            str(f.relative_to(REPO))
            for f in _closure(REPO / "stages" / f"{name}.py") - trivial
            if not any(f == d or d in f.parents for d in deps)
        )
        assert not missing, f"stage {name} runs modules its deps do not list: {missing}"


def test_each_stage_declares_only_the_packages_it_runs() -> None:
    # An extra folder would re-run the stage (and the measurement under it) for code it never runs.
    for name, stage in PIPELINE.items():
        runs = _closure(REPO / "stages" / f"{name}.py")
        extra = [
            d
            for d in stage["deps"]
            if d.startswith("src/")
            and not any(f == REPO / d or REPO / d in f.parents for f in runs)
        ]
        assert not extra, f"stage {name} lists code it never runs: {extra}"


def test_validate_tracks_every_params_section() -> None:
    # validate checks the whole composition, so any change to params.yaml re-runs it.
    assert "params.yaml" in PIPELINE["validate"]["deps"]


def test_stages_run_the_workspace_code_they_declare() -> None:
    # _common puts this checkout's src/ first on sys.path; an llm_energy import before it would
    # run an installed copy (e.g. the editable main checkout inside a DVC temp workspace).
    import ast

    for name in PIPELINE:
        body = ast.parse((REPO / "stages" / f"{name}.py").read_text()).body
        order = [
            n.module if isinstance(n, ast.ImportFrom) else n.names[0].name
            for n in body
            if isinstance(n, ast.Import | ast.ImportFrom)
        ]
        first = next(i for i, m in enumerate(order) if m and m.startswith("llm_energy"))
        assert "_common" in order[:first], f"stages/{name}.py imports llm_energy before _common"
