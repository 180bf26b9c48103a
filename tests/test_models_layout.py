"""The layout of models/: no import cycles (imports inside functions count; type-only ones under
`if TYPE_CHECKING:` do not run and do not), config.py a leaf, and validating a config without
torch. Read from the source with `ast`, so nothing is imported for the first two."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODULES = {".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
           for p in sorted((ROOT / "models").rglob("*.py"))}


def _type_only(node: ast.If) -> bool:
    return isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def imported(module: str) -> set[str]:
    """The models modules `module` imports, resolved to the longest module name that exists."""
    found = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _type_only(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
            found.add(node.module)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(MODULES[module].read_text()))
    return {name for name in found if name in MODULES and name != module} - _parents(module)


def _parents(module: str) -> set[str]:
    """A module's packages, which Python imports before it: not an edge of the graph."""
    parts = module.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


def test_models_has_no_import_cycles():
    graph = {module: imported(module) for module in MODULES}
    done, path = set(), []

    def walk(module: str) -> None:
        if module in path:
            raise AssertionError("import cycle: " + " -> ".join(path[path.index(module):] + [module]))
        if module in done:
            return
        path.append(module)
        for target in sorted(graph[module]):
            walk(target)
        path.pop()
        done.add(module)

    for module in graph:
        walk(module)


def test_config_is_a_leaf():
    assert imported("models.config") == set()


def test_validating_every_preset_imports_no_torch():
    code = ("import sys\nfrom models.presets import PRESETS, preset_config\nfrom models.resolve import parse_config\n"
            "for name in PRESETS:\n    parse_config(preset_config(name))\n"
            "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if m.startswith('models'))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
