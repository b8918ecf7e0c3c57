"""What several test files share: the command runner, the bundled sample, and runs trained once
per test session."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("VAELAB_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
EXPLORER_SEED = 3  # 2 epochs on the sample: seed 3 gives an informative latent code (KL ~5 nats), not a collapsed one


def run_vaelab(*args, cwd=None, env=None, timeout=600) -> subprocess.CompletedProcess:
    """`python -m vaelab ARGS` as a user runs it, output captured."""
    return subprocess.run(
        [sys.executable, "-m", "vaelab", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=timeout,
    )


def needs_chromium():
    """Skip, saying what is missing, where the browser tests cannot run."""
    pytest.importorskip(
        "playwright.sync_api", reason="the Python package playwright is not installed (pip install playwright)"
    )
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium, or set VAELAB_CHROMIUM)")


@pytest.fixture(scope="session")
def sample():
    """The bundled 5,000 MNIST digits (4,000 train / 1,000 test)."""
    from vaelab.data import load_dataset

    return load_dataset("mnist-sample")


@pytest.fixture(scope="session")
def explorer_run(tmp_path_factory):
    """run(model) -> the folder of a 2-epoch run of `model` on the sample (seed 3), trained once per
    session and shared by the explorer's API and browser tests."""

    def run(model: str):
        from vaelab.config import TrainConfig
        from vaelab.training import train

        out = tmp_path_factory.getbasetemp() / "explorer-runs" / model
        if not (out / "model.safetensors").is_file():
            cfg = TrainConfig(model=model, dataset="mnist-sample", epochs=2, seed=EXPLORER_SEED, device="cpu")
            train(cfg, out=out, overwrite=True, progress=False)
        return out

    return run


@pytest.fixture(scope="session")
def untrained_run(tmp_path_factory) -> Path:
    """A run folder of a fresh mlp (latent 2), written directly: no training needed to read it."""
    import torch

    from vaelab import runs
    from vaelab.config import TrainConfig
    from vaelab.data import load_dataset
    from vaelab.models import build_model, make_config

    run = tmp_path_factory.mktemp("untrained") / "run"
    data = load_dataset("mnist-sample")
    model = build_model("mlp", make_config("mlp", data.image_shape, data.num_classes))
    run.mkdir()
    runs.write_config(
        run, runs.describe(TrainConfig(model="mlp", dataset="mnist-sample"), model, data, torch.device("cpu"))
    )
    runs.save_weights(run / runs.WEIGHTS, model, "mlp")
    return run
