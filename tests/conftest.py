"""What several test files share: the command runners (in this process, or a new one where the
process itself is tested), the bundled sample, and the runs trained once per test session."""

import contextlib
import hashlib
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

# Under pytest-xdist the workers share the cores: each gets its share of threads (OpenMP threads
# that outnumber the cores spin against each other and slow every worker many times over), and
# the processes, kernels and servers its tests start inherit it.
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    share = max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
    os.environ.setdefault("OMP_NUM_THREADS", str(share))


def pytest_collection_modifyitems(config, items):
    """With several workers the slow tests start first, so none of them is left to run alone at
    the end (longest first is the classic schedule for jobs on parallel machines)."""
    if getattr(config.option, "numprocesses", None):
        items.sort(key=lambda item: item.get_closest_marker("slow") is None)


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
TRAINED = {  # model -> the settings of its run on the sample that every test reading such a run shares
    "conv": dict(epochs=10, batch_size=32),  # as the demo trains it: the per-class grid must show its classes
    "cvae": dict(epochs=2, batch_size=32),  # its label already matters: it classifies by its bound above chance
    "cvae-mlp": dict(epochs=2, batch_size=32),
    "mlp": dict(epochs=1),  # batch 128 (the default): 32 steps an epoch
}


def vaelab_cli(*args) -> subprocess.CompletedProcess:
    """`vaelab ARGS` run in this process through vaelab.cli.main (what `python -m vaelab` calls),
    its exit status and what it printed, as run_vaelab gives them, without starting Python and
    PyTorch again (about a second each time). Where the process itself is tested (its exit status as
    the shell sees it, signals, a terminal or a pipe, several processes), use run_vaelab."""
    from vaelab.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in args])
        except SystemExit as e:  # argparse's own errors, --help and --version
            code = e.code if isinstance(e.code, int) else int(e.code is not None)
    return subprocess.CompletedProcess(["vaelab", *map(str, args)], code, out.getvalue(), err.getvalue())


def run_vaelab(*args, cwd=None, env=None, timeout=600) -> subprocess.CompletedProcess:
    """`python -m vaelab ARGS` as a user runs it, in a new process, output captured."""
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


def shared_root(tmp_path_factory) -> Path:
    """The session's base temp folder; under pytest-xdist, its parent, which every worker shares."""
    root = tmp_path_factory.getbasetemp()
    return root.parent if os.environ.get("PYTEST_XDIST_WORKER") else root


@pytest.fixture(scope="session", autouse=True)
def session_cache(tmp_path_factory):
    """vaelab's cache (the sample-quality classifiers, copied or trained once per data set) in one folder of
    the test session, shared by its workers and by the commands, kernels and processes its tests
    start: the suite starts from an empty cache, as on a new machine, and never touches the user's."""
    folder = shared_root(tmp_path_factory) / "xdg-cache"
    before = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(folder)
    yield folder
    if before is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = before


@pytest.fixture(scope="session")
def sample():
    """The bundled 5,000 MNIST digits (4,000 train / 1,000 test)."""
    from vaelab.data import load_dataset

    return load_dataset("mnist-sample")


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """trained_run(model) -> the folder of `model`'s run on the sample (settings in TRAINED), trained
    the first time a test asks for it and shared by every test after. Tests only read it: a test
    that writes into a run folder (a report, an evaluation, an export) works on copy_run(...) of it.
    At the end of the session every shared run must be as it was trained."""
    from filelock import FileLock

    from vaelab.config import TrainConfig
    from vaelab.training import train

    # Under pytest-xdist the workers share one set of trained runs: the first to ask trains, the
    # others wait and read.
    root = shared_root(tmp_path_factory)
    folders, trained = {}, {}

    def run(model: str) -> Path:
        if model not in folders:
            out = root / "trained" / model
            with FileLock(str(out) + ".training"):
                if not (out.parent / f"{model}.sha256").is_file():
                    cfg = TrainConfig(model=model, dataset="mnist-sample", device="cpu", **TRAINED[model])
                    train(cfg, out=out, overwrite=True, progress=False)
                    (out.parent / f"{model}.sha256").write_text(digest(out))
            folders[model], trained[model] = out, (out.parent / f"{model}.sha256").read_text()
        return folders[model]

    yield run
    changed = [model for model, folder in folders.items() if digest(folder) != trained[model]]
    assert not changed, f"a test wrote into the shared run of {changed}: give it copy_run(trained_run(...), tmp_path)"


def digest(folder: Path) -> str:
    """SHA-256 over the names and bytes of every file of a run folder but its lock."""
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.name != ".lock":
            h.update(str(p.relative_to(folder)).encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


def copy_run(folder: Path, to: Path) -> Path:
    """A copy of a run folder (without its lock file) at `to`, for a test that writes into it."""
    shutil.copytree(folder, to, ignore=shutil.ignore_patterns(".lock"))
    return to


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
