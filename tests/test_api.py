"""The Python API in a real Jupyter kernel, as a student uses it: train, figures inline, load,
your own model, and progress that suits a notebook."""

import json
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="the test extras are not installed: pip install -e '.[test]'")
nbclient = pytest.importorskip("nbclient", reason="the test extras are not installed: pip install -e '.[test]'")

pytestmark = pytest.mark.slow  # a Jupyter kernel

OWN_MODEL = """
import torch
from torch import nn

class Encoder(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.hidden = nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU())
        self.mu, self.logvar = nn.Linear(64, config.latent_dim), nn.Linear(64, config.latent_dim)
    def forward(self, x, y=None):
        h = self.hidden(x)
        return self.mu(h), self.logvar(h)

class Decoder(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(config.latent_dim, 64), nn.ReLU(), nn.Linear(64, 784))
    def forward(self, z, y=None):
        return self.net(z).view(-1, 1, 28, 28)

config = vaelab.ModelConfig(latent_dim=2)
mine = vaelab.train(model=vaelab.VAE(config, Encoder(config), Decoder(config)), dataset="mnist-sample",
                    epochs=2, batch_size=100, out="mine")
"""
README = (Path(__file__).parents[1] / "README.md").read_text()
README_CELL = README.split("## From a notebook", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
CELLS = {
    "train": "import vaelab\n"
    'run = vaelab.train(model="mlp", dataset="mnist-sample", epochs=2, batch_size=500, out="mlp")\nrun',
    "scatter": "run.scatter()",
    "manifold": "run.manifold(grid=5)",
    "history": "run.history",
    "load": 'again = vaelab.load("mlp")\n'
    "import torch\n"
    "print(again.history.rows == run.history.rows, "
    "all(torch.equal(a, b) for a, b in zip(again.model.state_dict().values(), run.model.state_dict().values())))",
    "own": OWN_MODEL + "mine",
    "readme": README_CELL.replace("epochs=5)", 'epochs=2, batch_size=500, out="readme")'),
    "own_again": 'print(vaelab.load("mine").history["test_elbo"] == mine.history["test_elbo"])\n'
    "print(mine.report())\nmine.walks()",
    "malformed": "class NoHeads(nn.Module):\n"
    "    def __init__(self):\n"
    "        super().__init__(); self.config = config; self.encoder = self.decoder = nn.Linear(2, 2)\n"
    "    def encode(self, x, y=None): return x.flatten(1)[:, :2]\n"
    "    def decode(self, z, y=None): return z\n"
    'try:\n    vaelab.train(model=NoHeads(), dataset="mnist-sample", epochs=1, out="bad")\n'
    'except vaelab.VaelabError as e:\n    print("refused:", e)',
}


@pytest.fixture(scope="module")
def cells(tmp_path_factory):
    """Every cell's outputs, from one fresh kernel with no %matplotlib magic."""
    folder = tmp_path_factory.mktemp("kernel")
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code) for code in CELLS.values()])
    nbclient.NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(folder)}}
    ).execute()
    return {name: cell.outputs for name, cell in zip(CELLS, notebook.cells, strict=True)}, folder


def test_the_readme_block_as_one_cell_shows_what_it_says(cells):
    outputs, _ = cells
    printed = text(outputs["readme"])
    assert printed.count("epoch ") == 2 and printed.strip().splitlines()[-1].startswith("[-")  # the ELBOs
    (shown,) = data(outputs["readme"], "text/html")
    assert shown.count("data:image/png;base64,") == 4
    assert all(f"<figcaption>{name}</figcaption>" in shown for name in ("curves", "scatter", "manifold", "class_grid"))


def data(outputs, kind: str) -> list:
    return [o["data"][kind] for o in outputs if kind in o.get("data", {})]


def text(outputs, stream: str = "stdout") -> str:
    return "".join(o["text"] for o in outputs if o.get("name") == stream)


def test_train_returns_a_run_and_prints_one_line_per_epoch(cells):
    outputs, folder = cells
    shown = data(outputs["train"], "text/plain")[-1]
    assert shown.startswith("Run('mlp': mlp on mnist-sample, 2 epochs, test ELBO -")
    lines = text(outputs["train"]).splitlines()
    assert [line.split()[:2] for line in lines] == [["epoch", "1/2"], ["epoch", "2/2"]]
    assert text(outputs["train"], "stderr") == ""  # no bar written as text: a widget, or nothing
    assert (folder / "mlp" / "report.html").is_file() is False  # the API reports when asked to
    command = json.loads((folder / "mlp" / "config.json").read_text())["command"]
    assert command == "vaelab.train(model='mlp', dataset='mnist-sample', epochs=2, batch_size=500)"


@pytest.mark.parametrize("name", ["scatter", "manifold", "own_again"])
def test_figures_show_inline_as_png(cells, name):
    outputs, _ = cells
    assert data(outputs[name], "image/png"), outputs[name]


def test_history_is_a_table_and_load_gives_the_same_run(cells):
    outputs, _ = cells
    assert "<table>" in data(outputs["history"], "text/html")[0]
    assert text(outputs["load"]).split() == ["True", "True"]


def test_your_own_model_trains_reloads_and_reports(cells):
    outputs, folder = cells
    assert "custom on mnist-sample, 2 epochs" in data(outputs["own"], "text/plain")[-1]
    reloaded, page = text(outputs["own_again"]).splitlines()[:2]
    assert reloaded == "True" and Path(folder / page).is_file()
    saved = json.loads((folder / "mine" / "config.json").read_text())
    assert saved["custom"]["encoder_class"] == "__main__:Encoder" and saved["model"] == "custom"
    assert (folder / "mine" / "figures" / "scatter.png").is_file()


def test_a_module_that_does_not_follow_the_interface_is_refused(cells):
    outputs, folder = cells
    assert "refused: your model's encode(x, y) must return (mu, logvar)" in text(outputs["malformed"])
    assert not (folder / "bad").exists()


def test_without_ipywidgets_a_notebook_has_no_warning_and_the_report_is_a_link(tmp_path):
    """The README's notebook install has no ipywidgets: no red TqdmWarning (pooch's import of
    tqdm.auto raised it), one line per epoch; run.report() as a cell's last line shows a link."""
    code = [
        "import sys\nsys.modules['ipywidgets'] = None  # as if not installed\nimport vaelab\n"
        'run = vaelab.train("mlp", "mnist-sample", epochs=2, batch_size=500, out="run")',
        "run.report()",
    ]
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in code])
    nbclient.NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    train, report = (cell.outputs for cell in notebook.cells)
    streams = [o for cell in (train, report) for o in cell if o["output_type"] == "stream"]
    assert not [o for o in streams if o["name"] == "stderr"], streams
    assert [line.split()[:2] for o in streams for line in o["text"].splitlines()] == [
        ["epoch", "1/2"],
        ["epoch", "2/2"],
    ]
    shown = next(o for o in report if o["output_type"] == "execute_result")["data"]
    assert shown["text/html"].startswith('<a href="run/report.html" target="_blank">report.html of ')
