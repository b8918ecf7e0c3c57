"""How the package is laid out: imports run one way, no cycle, small modules, argparse in the CLI only.

Read from the source (the import statements, wherever they stand in a module), not by importing it.
"""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "vaelab"
MODULES = {".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__"): p
           for p in PACKAGE.rglob("*.py")}
RUN_TRAINING = {"vaelab.cli", "vaelab.api", "vaelab.demo", "vaelab.sweeps"}  # the modules that start training
COMMAND_LINE = {"vaelab.cli", "vaelab.flags", "vaelab.__main__"}  # the only ones that parse flags
MAX_LINES = 400


def imports(path: Path) -> set[str]:
    """The vaelab modules `path` imports (`from vaelab import x` counts as vaelab.x when x is a module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in MODULES}
    return {name for name in found if name in MODULES}


GRAPH = {name: imports(path) - {name} for name, path in MODULES.items()}


def test_only_the_commands_that_train_import_the_training_loop():
    importers = {name for name, deps in GRAPH.items() if "vaelab.training" in deps}
    assert importers <= RUN_TRAINING, importers - RUN_TRAINING


def test_no_library_module_sees_argparse_or_the_cli():
    for name, path in MODULES.items():
        if name in COMMAND_LINE:
            continue
        tree = ast.parse(path.read_text())
        names = {a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}
        assert "argparse" not in names, name
        assert not GRAPH[name] & COMMAND_LINE, (name, GRAPH[name] & COMMAND_LINE)


def test_the_imports_have_no_cycle():
    done, path = set(), []

    def visit(name):
        if name in path:
            pytest.fail("import cycle: " + " -> ".join(path[path.index(name):] + [name]))
        if name in done:
            return
        path.append(name)
        for dep in sorted(GRAPH[name]):
            visit(dep)
        path.pop()
        done.add(name)
    for name in sorted(GRAPH):
        visit(name)


def test_data_and_models_sit_below_everything_that_uses_them():
    low = {n for n in MODULES if n.startswith(("vaelab.data", "vaelab.models"))}
    below = low | {"vaelab", "vaelab.errors", "vaelab.options", "vaelab.files"}
    for name in low:
        assert GRAPH[name] <= below, (name, GRAPH[name] - below)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_every_module_is_small(name):
    lines = len(MODULES[name].read_text().splitlines())
    assert lines <= MAX_LINES, f"{name} has {lines} lines; a second responsibility has crept in"
