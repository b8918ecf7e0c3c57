"""A run of your own model names the module its classes live in; opening the run imports that module
(runs its code) only when the call says it trusts it, from Python and from the command line."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

MODULE = """
import pathlib
import torch
from torch import nn

pathlib.Path("imported.txt").write_text("ownmodels ran")  # what a planted module could do


class Encoder(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        self.hidden = nn.Linear(784, 64)
        self.mu, self.logvar = nn.Linear(64, config.latent_dim), nn.Linear(64, config.latent_dim)

    def forward(self, x, y=None):
        h = torch.relu(self.hidden(x.flatten(1)))
        return self.mu(h), self.logvar(h)


class Decoder(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(config.latent_dim, 64), nn.ReLU(), nn.Linear(64, 784))

    def forward(self, z, y=None):
        return self.net(z).view(-1, 1, 28, 28)
"""

TRAIN = """
import vaelab, ownmodels
config = vaelab.ModelConfig(latent_dim=2)
model = vaelab.VAE(config, ownmodels.Encoder(config), ownmodels.Decoder(config))
vaelab.train(model=model, dataset="mnist-sample", epochs=1, batch_size=500, out="run", progress=False)
"""


def python(code: str, folder: Path, *args) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(folder), os.environ.get("PYTHONPATH")) if p)}
    return subprocess.run(
        [sys.executable, "-c", code, *args], cwd=folder, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def own_run(tmp_path_factory) -> Path:
    """A folder holding ownmodels.py and `run`, a run of a model built from its classes."""
    folder = tmp_path_factory.mktemp("own")
    (folder / "ownmodels.py").write_text(MODULE)
    result = python(TRAIN, folder)
    assert result.returncode == 0, result.stderr
    (folder / "imported.txt").unlink()
    return folder


def test_loading_a_run_does_not_import_its_module_unless_trusted(own_run):
    refused = python("import vaelab; vaelab.load('run')", own_run)
    assert refused.returncode != 0 and "ownmodels" in refused.stderr and "trust_code=True" in refused.stderr
    assert not (own_run / "imported.txt").exists()
    trusted = python("import vaelab; print(vaelab.load('run', trust_code=True).model.config.latent_dim)", own_run)
    assert trusted.returncode == 0 and trusted.stdout.strip() == "2", trusted.stderr
    assert (own_run / "imported.txt").is_file()
    (own_run / "imported.txt").unlink()


def test_a_module_already_imported_needs_no_trust(own_run):
    result = python("import vaelab, ownmodels; print(vaelab.load('run').config['model'])", own_run)
    assert result.returncode == 0 and result.stdout.strip() == "custom", result.stderr
    (own_run / "imported.txt").unlink()


@pytest.mark.parametrize("command", [["sample", "run", "-n", "4"], ["export", "run", "--format", "torchscript"]])
def test_the_command_line_asks_for_trust_code_and_then_finds_the_module_in_its_folder(own_run, command):
    """The console script's sys.path lacks the folder it is called in (python -m has it): with
    --trust-code the module is found there, as a user would expect."""
    vaelab = Path(sys.executable).with_name("vaelab")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONPATH": str(Path(__file__).parents[2])}
    refused = subprocess.run([vaelab, *command], cwd=own_run, env=env, capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and "--trust-code" in refused.stderr, refused.stderr
    assert not (own_run / "imported.txt").exists()
    done = subprocess.run(
        [vaelab, *command, "--trust-code"], cwd=own_run, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    (own_run / "imported.txt").unlink()


@pytest.mark.parametrize("name", ["os:system", "builtins:exec", "vaelab.files:atomic_write"])
def test_a_config_naming_something_that_is_not_a_class_is_refused(own_run, tmp_path, name):
    run = tmp_path / "run"
    run.mkdir()
    for file in ("config.json", "model.safetensors"):
        (run / file).write_bytes((own_run / "run" / file).read_bytes())
    config = json.loads((run / "config.json").read_text())
    config["custom"]["decoder_class"] = name
    (run / "config.json").write_text(json.dumps(config))
    result = python(f"import vaelab, ownmodels; vaelab.load(r'{run}')", own_run)
    assert result.returncode != 0 and "is not a subclass of torch.nn" in result.stderr, result.stderr
    (own_run / "imported.txt").unlink()
