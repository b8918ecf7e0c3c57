"""How the package is laid out: imports run one way, no cycle, small modules, argparse in the CLI only,
each folder's private modules private, one place for the objective, drawing that only draws.

Read from the source (the import statements, wherever they stand in a module), not by importing it.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "vaelab"
MODULES = {
    ".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__"): p
    for p in PACKAGE.rglob("*.py")
}
TREES = {name: ast.parse(path.read_text()) for name, path in MODULES.items()}
RUN_TRAINING = {
    "vaelab.cli.make",
    "vaelab.api",
    "vaelab.demo",
    "vaelab.sweeps",
    "vaelab.notebook",  # Run.resume() continues the run's training
}  # the modules that start training
FOLDERS = (
    "vaelab.runs",
    "vaelab.training",
    "vaelab.report",
    "vaelab.explorer",
    "vaelab.cli",
    "vaelab.evaluation",
    "vaelab.checking",
)
PUBLIC = {"vaelab.report.figures", "vaelab.report.charts", "vaelab.report.pages"}  # besides the faces
MAX_LINES = 400


def imports(tree: ast.Module) -> set[str]:
    """The vaelab modules a module imports (`from vaelab import x` counts as vaelab.x when x is a module)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            submodules = {f"{node.module}.{a.name}" for a in node.names} & set(MODULES)
            found |= submodules  # `from vaelab.cli import flags` imports vaelab.cli.flags; its package's
            if len(submodules) < len(node.names):  # face only when a name is not a module
                found.add(node.module)
    return {name for name in found if name in MODULES}


GRAPH = {name: imports(tree) - {name} for name, tree in TREES.items()}


def folder_of(name: str) -> str | None:
    return next((f for f in FOLDERS if name == f or name.startswith(f + ".")), None)


def test_only_the_commands_that_train_import_the_training_loop():
    importers = {
        name
        for name, deps in GRAPH.items()
        if any(folder_of(d) == "vaelab.training" for d in deps) and folder_of(name) != "vaelab.training"
    }
    assert importers <= RUN_TRAINING, importers - RUN_TRAINING


def test_no_library_module_sees_argparse_or_the_cli():
    command_line = {n for n in MODULES if folder_of(n) == "vaelab.cli"} | {"vaelab.__main__"}
    for name, tree in TREES.items():
        if name in command_line:
            continue
        names = {a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}
        assert "argparse" not in names, name
        assert not GRAPH[name] & command_line - {"vaelab.cli"} or name == "vaelab.__main__", name


def test_outside_a_folder_only_its_face_is_imported():
    """Nothing outside vaelab/runs/ imports vaelab.runs.journal, and so on: each folder's private
    modules are reached through its __init__.py (and report's three public modules)."""
    for name, deps in GRAPH.items():
        for dep in deps:
            folder = folder_of(dep)
            if folder and folder_of(name) != folder and dep != folder and dep not in PUBLIC:
                pytest.fail(f"{name} imports {dep}, private to {folder.replace('.', '/')}/: import from {folder}")


def test_the_imports_have_no_cycle():
    done, path = set(), []

    def visit(name):
        if name in path:
            pytest.fail("import cycle: " + " -> ".join(path[path.index(name) :] + [name]))
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


def test_drawing_imports_nothing_that_runs_a_model():
    runs_a_model = {n for n in MODULES if n.startswith(("vaelab.models", "vaelab.runs", "vaelab.training"))}
    runs_a_model |= {"vaelab.latent"} | {n for n in MODULES if n.startswith("vaelab.evaluation")}
    for name in ("vaelab.report.plots", "vaelab.report.charts"):
        assert not GRAPH[name] & runs_a_model, (name, GRAPH[name] & runs_a_model)


def test_the_objective_is_named_in_one_module():
    """Which objective a run minimises is asked of vaelab.losses.Objective, never compared as text."""
    from vaelab.losses import OBJECTIVES

    for name, tree in TREES.items():
        if name == "vaelab.losses":
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Compare):
                sides = [node.left, *node.comparators]
                named = [s.value for s in sides if isinstance(s, ast.Constant) and s.value in OBJECTIVES]
                assert not named, f"{name} line {node.lineno} compares with {named[0]!r}: ask vaelab.losses.Objective"


def test_one_class_named_run():
    """vaelab.runs.Run is the run; the notebook's vaelab.Run extends it, and nothing else takes the name."""
    found = {
        (name, tuple(ast.unparse(b) for b in node.bases))
        for name, tree in TREES.items()
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef) and node.name == "Run"
    }
    assert found == {("vaelab.runs.run", ()), ("vaelab.notebook", ("runs.Run",))}, found


@pytest.mark.parametrize("name", sorted(MODULES))
def test_every_module_is_small(name):
    lines = len(MODULES[name].read_text().splitlines())
    assert lines <= MAX_LINES, f"{name} has {lines} lines; a second responsibility has crept in"


def test_no_exported_name_is_also_a_module_of_the_package():
    """`import vaelab.NAME` (which vaelab itself does when a function of it is first called) sets the
    package's attribute NAME to the module: an exported function of the same name would be replaced."""
    import pkgutil

    import vaelab

    modules = {m.name for m in pkgutil.iter_modules(vaelab.__path__)}
    assert not modules & set(vaelab.__all__), sorted(modules & set(vaelab.__all__))
