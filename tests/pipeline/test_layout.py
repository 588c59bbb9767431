"""The floor plan of src/llm_energy (docs/architecture.md): which package may import which, no
import loops anywhere, the analysis stages free of torch, rooms of a livable size."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src" / "llm_energy"
ROOT_MODULES = {"errors", "units", "paths", "records", "record_types", "protocols", "api"}
# package -> the packages it may import (root modules are open to all); cli may import anything
ALLOWED = {
    "config": set(),
    "workload": {"config"},
    "io": {"config", "workload"},
    "device": {"config", "io"},
    "sim": {"config", "device", "io"},
    "control": {"config", "device", "io", "sim"},
    "energy": {"device", "control"},
    "run": {"config", "device", "io", "sim", "workload"},
    "analysis": set(),
    "quality": {"analysis"},
    "report": {"analysis"},
}


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    return ".".join(rel.parts).removesuffix(".__init__")


def _imports(path: Path, *, top_level_only: bool = False) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else ast.walk(tree)
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return found


def _sources() -> dict[str, Path]:
    mods = {_module_name(p): p for p in SRC.rglob("*.py")}
    for folder in ("stages", "benchmarks"):
        mods |= {f"{folder}.{p.stem}": p for p in (REPO / folder).glob("*.py")}
    return mods


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_packages_import_only_what_the_floor_plan_allows() -> None:
    wrong = []
    for path in SRC.rglob("*.py"):
        pkg = _package(_module_name(path))
        if pkg not in ALLOWED:
            assert pkg in ROOT_MODULES | {"cli", "__init__", ""}, f"undeclared package {pkg}"
            continue
        for target in _imports(path):
            other = _package(target) if target.startswith("llm_energy.") else None
            if other and other != pkg and other not in ROOT_MODULES and other not in ALLOWED[pkg]:
                wrong.append(f"{path.relative_to(REPO)} imports {target}")
    assert not wrong, "imports against docs/architecture.md:\n" + "\n".join(sorted(set(wrong)))


def test_no_import_loops_in_src_stages_or_benchmarks() -> None:
    mods = _sources()
    edges = {m: {t for t in _imports(p) if t in mods and t != m} for m, p in mods.items()}
    # benchmarks import each other by bare name (they run as scripts with their folder on sys.path)
    for m, p in mods.items():
        if m.startswith("benchmarks."):
            edges[m] |= {f"benchmarks.{t}" for t in _imports(p) if f"benchmarks.{t}" in mods}
    loops, state = [], dict.fromkeys(edges, 0)

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for t in edges[m]:
            if state[t] == 1:
                loops.append(" -> ".join([*stack[stack.index(t) :], t]))
            elif state[t] == 0:
                visit(t, [*stack, t])
        state[m] = 2

    for m in edges:
        if state[m] == 0:
            visit(m, [m])
    assert not loops, "import loops:\n" + "\n".join(loops)


def _loaded_at_import(script: Path) -> set[str]:
    """Every module a script loads when it starts (top-level imports, followed through src)."""
    mods, seen, todo = _sources(), set(), [script]
    while todo:
        for target in _imports(todo.pop(), top_level_only=True):
            seen.add(target.split(".")[0])
            for i in range(1, len(target.split(".")) + 1):
                name = ".".join(target.split(".")[:i])
                if name in mods and name not in seen:
                    seen.add(name)
                    todo.append(mods[name])
    return seen


def test_the_analysis_stages_never_import_torch_or_transformers() -> None:
    for stage in ("aggregate", "stats", "plots"):
        loaded = _loaded_at_import(REPO / "stages" / f"{stage}.py")
        assert not loaded & {"torch", "transformers", "codecarbon"}, stage


def test_rooms_stay_livable() -> None:
    root = sorted(p.stem for p in SRC.glob("*.py") if p.stem != "__init__")
    assert set(root) == ROOT_MODULES and len(root) <= 10
    total = sum(len(p.read_text(encoding="utf-8").splitlines()) for p in SRC.rglob("*.py"))
    assert total <= 19_000, f"src/llm_energy is {total} lines: the budget is 19,000 (issue 19)"
    for path in SRC.rglob("*.py"):
        lines = path.read_text(encoding="utf-8").splitlines()
        assert len(lines) <= 450, f"{path.relative_to(REPO)}: {len(lines)} lines"
        if len(lines) > 400:  # allowed only with its reason in the first comment
            assert "over 400 lines" in "\n".join(lines[:15]), path.relative_to(REPO)
