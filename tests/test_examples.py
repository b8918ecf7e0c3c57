"""The example notebooks run top to bottom in a real Jupyter kernel, offline, and show their figures."""

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="the test extras are not installed: pip install -e '.[test]'")
nbclient = pytest.importorskip("nbclient", reason="the test extras are not installed: pip install -e '.[test]'")

EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.ipynb"))


def test_there_is_a_notebook_per_exercise_family():
    assert len(EXAMPLES) == 4


@pytest.mark.slow  # a Jupyter kernel for each notebook
@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_the_notebook_runs_and_shows_its_figures(path, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # its own classifier cache, as on a new machine
    notebook = nbformat.read(path, as_version=4)
    assert not any(cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), (
        "commit it without outputs"
    )
    nbclient.NotebookClient(
        notebook, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()  # raises on any error
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    pictures = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(pictures) >= 3, f"{path.name} showed {len(pictures)} figures"
    assert not [o for o in outputs if o.get("name") == "stderr" and "Traceback" in o.get("text", "")]
