"""The example notebooks run top to bottom in a real Jupyter kernel, offline, and show their figures."""

import re
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="the test extras are not installed: pip install -e '.[test]'")
nbclient = pytest.importorskip("nbclient", reason="the test extras are not installed: pip install -e '.[test]'")

EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.ipynb"))
CHECK = next(p for p in EXAMPLES if p.stem == "05-check-your-vae")  # shows tables, not figures
FIGURES = [p for p in EXAMPLES if p != CHECK]


def test_there_is_a_notebook_per_exercise_family_and_one_that_checks_a_students_vae():
    assert len(FIGURES) == 4 and CHECK.is_file()


def executed(path: Path, tmp_path: Path, epochs: int | None = None):
    """The notebook's outputs after a real kernel ran it. `epochs`: a cell put after the first code
    cell (where each notebook sets DATASET and EPOCHS, the "change me" line) sets EPOCHS, as
    papermill injects parameters: every cell runs as written, each training for that many epochs."""
    notebook = nbformat.read(path, as_version=4)
    assert not any(cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), (
        "commit it without outputs"
    )
    if epochs is not None:
        first = next(i for i, cell in enumerate(notebook.cells) if cell.cell_type == "code")
        assert re.search(r"^DATASET, EPOCHS\b", notebook.cells[first].source, re.M), notebook.cells[first].source
        notebook.cells.insert(first + 1, nbformat.v4.new_code_cell(f"EPOCHS = {epochs}  # injected by the test"))
    nbclient.NotebookClient(
        notebook, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()  # raises on any error
    return [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]


@pytest.mark.slow  # a Jupyter kernel, and a short training
def test_the_check_notebook_fails_the_broken_file_and_passes_the_fixed_one(tmp_path):
    outputs = executed(CHECK, tmp_path)
    tables = [o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    assert len(tables) == 2
    assert tables[0].count(">FAIL<") == 3 and "uses log σ² as σ" in tables[0]
    assert ">FAIL<" not in tables[1] and "within the reference band" in tables[1]


@pytest.mark.slow  # a Jupyter kernel for each notebook
@pytest.mark.parametrize("path", FIGURES, ids=[p.stem for p in FIGURES])
def test_the_notebook_runs_and_shows_its_figures(path, tmp_path):
    outputs = executed(path, tmp_path, epochs=1)  # the README's commands are tested at one epoch too
    assert not [o for o in outputs if o.output_type == "error"]
    pictures = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(pictures) >= 3, f"{path.name} showed {len(pictures)} figures"
    assert not [o for o in outputs if o.get("name") == "stderr" and "Traceback" in o.get("text", "")]
