"""The layout of sweeps/: which part may import which, and which part owns which library.

Read from the source with `ast` (every import, also those inside functions), so nothing is
imported and a lazy import counts like any other.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PARTS = {  # part -> the parts it may import: imports only go downwards
    "errors": set(),
    "names": set(),
    "record": {"errors"},
    "space": {"names"},
    "tracking": {"errors", "names"},
    "cluster": {"errors"},
    "analysis": {"errors", "names", "space", "tracking"},
    "engine": {"errors", "names", "record", "space", "tracking", "analysis"},
    "cli": {"errors", "names", "record", "space", "tracking", "cluster", "analysis", "engine"},
    "__main__": {"cli"},
}
OWNERS = {  # a library (or part of one) -> the only parts that may use it; the longest name applies
    "ray": {"engine"},
    "ray.job_submission": {"cluster"},
    "mlflow": {"tracking"},
    "optuna": {"engine", "analysis"},
    "optuna.samplers": {"engine"},
    "torch": {"engine"},
    "pyarrow": {"analysis"},
    "models": {"space", "analysis", "engine", "cli"},  # never tracking: its server process stays light
}
READ_SIDE = {"Store", "Sweep", "TrialRecord", "OUTCOME_STATUS", "ARITHMETIC", "VERDICT", "CONFIG_ARTIFACT", "flatten"}
"""What analysis may use of tracking: the read side, and the names of what trial runs record."""


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted((ROOT / "sweeps").rglob("*.py"))}
TREES = {name: ast.parse(path.read_text()) for name, path in MODULES.items()}


def part(module: str) -> str:
    return module.split(".")[1] if "." in module else module


def is_package(module: str) -> bool:
    return MODULES.get(module, Path()).name == "__init__.py"


def imports(tree: ast.AST) -> list[tuple[str, str | None, str, str, str]]:
    """(module imported, name taken from it or None, name bound, module written, name
    written) for every import."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, None, (a.asname or a.name).split(".")[0], a.name, "") for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module != "__future__":
            assert node.level == 0, "relative import"
            for a in node.names:
                full = f"{node.module}.{a.name}"
                # `from pkg import submodule` imports the submodule; `from pkg import NAME`, the package.
                out.append((full, None, a.asname or a.name, node.module, a.name) if full in MODULES else
                           (node.module, a.name, a.asname or a.name, node.module, a.name))
    return out


def used(tree: ast.AST) -> set[str]:
    """Every dotted name the code uses, e.g. `optuna.samplers.TPESampler` (prefixes too)."""
    out = set()
    for node in ast.walk(tree):
        chain = []
        while isinstance(node, ast.Attribute):
            chain.append(node.attr)
            node = node.value
        if isinstance(node, ast.Name):
            names = [node.id] + chain[::-1]
            out |= {".".join(names[:i]) for i in range(1, len(names) + 1)}
    return out


def exported(package: str) -> set[str]:
    tree = TREES[package]
    return {e.value for node in tree.body if isinstance(node, ast.Assign)
            and any(getattr(t, "id", None) == "__all__" for t in node.targets) for e in node.value.elts}


EDGES = {name: {target for target, *_ in imports(tree) if target.split(".")[0] == "sweeps"}
         for name, tree in TREES.items()}


def test_every_module_belongs_to_a_part():
    assert {part(m) for m in MODULES} - {"sweeps"} == set(PARTS)
    assert not TREES["sweeps"].body[1:], "sweeps/__init__.py holds only its docstring"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_go_only_downwards(module):
    wrong = {t for t in EDGES[module] if part(t) != part(module) and part(t) not in PARTS[part(module)]}
    assert not wrong, f"{module} may not import {sorted(wrong)} (allowed: {sorted(PARTS[part(module)])})"


def test_parts_and_modules_form_no_import_cycles():
    def acyclic(graph: dict[str, set[str]]) -> list[str]:
        done, active, cycle = set(), [], []

        def visit(node):
            if node in active:
                cycle.extend(active[active.index(node):] + [node])
            if node in done or cycle:
                return
            active.append(node)
            for nxt in sorted(graph.get(node, ())):
                visit(nxt)
            active.pop()
            done.add(node)

        for node in sorted(graph):
            visit(node)
        return cycle

    assert not acyclic(PARTS)
    used_parts = {}
    for module, targets in EDGES.items():
        used_parts.setdefault(part(module), set()).update(part(t) for t in targets if part(t) != part(module))
    assert not acyclic(used_parts)
    # A module imported from another part runs its package's __init__ first.
    modules = {m: ts | {".".join(t.split(".")[:2]) for t in ts if part(t) != part(m)} for m, ts in EDGES.items()}
    assert not acyclic(modules)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_libraries_are_used_only_by_their_owners(module):
    bound = {alias: target for target, _, alias, *_ in imports(TREES[module])}
    names = {target if name is None else f"{target}.{name}" for target, name, *_ in imports(TREES[module])}
    for use in used(TREES[module]):  # `optuna.samplers.X` reaches `optuna.samplers` with no import of it
        head, _, rest = use.partition(".")
        if head in bound:
            names.add(bound[head] + (f".{rest}" if rest else ""))
    for name in names:
        owner = max((lib for lib in OWNERS if name == lib or name.startswith(lib + ".")), key=len, default=None)
        assert owner is None or part(module) in OWNERS[owner], f"{module} uses {name}, which only {OWNERS[owner]} may"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_parts_meet_through_their_public_names(module):
    """Another part is used through its package and the names its __init__ exports, never
    by reaching into its modules."""
    for target, name, alias, written, written_name in imports(TREES[module]):
        package = ".".join(target.split(".")[:2])
        if target.split(".")[0] != "sweeps" or part(target) == part(module) or not is_package(package):
            continue  # a part that is one module (errors, names, record) is its own public face
        if written == "sweeps":  # `from sweeps import tracking`: every `tracking.X` must be exported
            for use in used(TREES[module]):
                if use.startswith(alias + ".") and use.count(".") == 1:
                    assert use.split(".")[1] in exported(package), f"{module} uses {use}, not exported"
        else:
            assert written == package, f"{module} reaches into {written}; import from {package}"
            assert written_name in exported(package), f"{module} imports {written_name}, not exported by {package}"


def test_analysis_reads_through_the_tracking_read_side():
    for module in (m for m in MODULES if part(m) == "analysis"):
        taken = {name for target, name, *_ in imports(TREES[module]) if target == "sweeps.tracking"}
        assert taken <= READ_SIDE, f"{module} uses {sorted(taken - READ_SIDE)} of tracking"


@pytest.mark.parametrize("package", sorted(p for p in MODULES if is_package(p) and p != "sweeps"))
def test_each_part_says_what_it_owns_and_re_exports_its_public_names(package):
    tree = TREES[package]
    assert ast.get_docstring(tree) and len(ast.get_docstring(tree).split()) > 40, "a paragraph on what it owns"
    bound = {alias for _, _, alias, *_ in imports(tree)}
    assert exported(package) and exported(package) <= bound
    assert all(isinstance(node, (ast.Expr, ast.ImportFrom, ast.Assign)) for node in tree.body), \
        "an __init__ only re-exports"
