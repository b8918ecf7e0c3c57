"""Interruption, resume, divergence and hostile files: a user loses nothing and runs no code."""

import json
import os
import pickle
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import copy_run, vaelab_cli
from safetensors.torch import load_file

from vaelab.errors import CheckpointError, VaelabError
from vaelab.runs import load_model, read_metrics
from vaelab.training import resume

TRAIN = [  # conv-small: the conv family's layers and speed mode, 1.4 s an epoch on one thread (conv: 4.3 s),
    "train",  # so a stop 0.2-3 s in falls anywhere in the run: either epoch, its evaluation or its files
    "--model",
    "conv-small",
    "--dataset",
    "mnist-sample",
    "--epochs",
    "2",
    "--seed",
    "5",
    "--no-progress",
    "--no-report",
]


def start(out: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "vaelab", *TRAIN, "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vaelab", *args], capture_output=True, text=True, timeout=600)


def weights(run: Path) -> dict:
    return load_file(run / "model.safetensors")


def same_weights(a: Path, b: Path) -> bool:
    wa, wb = weights(a), weights(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def losses(run: Path) -> list:
    return [{k: v for k, v in r.items() if k not in ("seconds", "images_per_second")} for r in read_metrics(run)]


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("straight") / "run"
    result = finish(*TRAIN, "--out", str(out))
    assert result.returncode == 0, result.stderr
    return out


def wait_for(path: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


@pytest.mark.slow  # real training processes, stopped by signals
@pytest.mark.parametrize("trial", range(3))
def test_ctrl_c_at_a_random_moment_then_resume_is_bit_exact(trial, straight, tmp_path):
    out = tmp_path / "run"
    process = start(out)
    wait_for(out / "config.json")  # training has begun
    time.sleep(random.Random(trial).uniform(0.2, 3.0))
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    if process.returncode != 0:  # stopped before the end: it must say how to go on
        assert process.returncode == 128 + signal.SIGINT, stderr
        assert "checkpoint written. Continue with: vaelab train --resume" in stderr
        result = finish("train", "--resume", str(out), "--no-progress")
        assert result.returncode == 0, result.stderr
    assert [r["epoch"] for r in read_metrics(out)] == [1, 2]
    assert same_weights(straight, out)
    assert losses(straight) == losses(out)


@pytest.mark.slow
@pytest.mark.parametrize("trial", range(2))
def test_kill_9_leaves_a_loadable_checkpoint(trial, straight, tmp_path):
    out = tmp_path / "run"
    process = start(out)
    wait_for(out / "checkpoint.safetensors")  # kill only once a first checkpoint exists
    time.sleep(random.Random(10 + trial).uniform(0.0, 2.0))
    process.kill()
    process.wait(timeout=60)
    load_model(out, weights="checkpoint.safetensors")  # complete, never half-written
    rows = read_metrics(out)
    assert [r["epoch"] for r in rows] == list(range(1, len(rows) + 1))
    if len(rows) < 2:
        result = finish("train", "--resume", str(out), "--no-progress")
        assert result.returncode == 0, result.stderr
    assert same_weights(straight, out)


STOP_AT_STEP = """
import os, signal, sys, vaelab
class Stop(vaelab.Callback):
    step_every = 32  # 4,000 images in batches of 128: the last step of epoch 1
    def on_step(self, step, values):
        os.kill(os.getpid(), getattr(signal, sys.argv[2]))
vaelab.train(model="conv-small", dataset="mnist-sample", epochs=2, seed=5, out=sys.argv[1], progress=False,
             callbacks=[Stop()])
"""


@pytest.mark.slow  # a training process, stopped by a signal
@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
def test_a_stop_on_an_epochs_last_step_ends_that_epoch_then_resume_is_bit_exact(signame, straight, tmp_path):
    """A signal on the last step of an epoch finishes that epoch (a checkpoint inside it would sit at
    step == steps, a position training cannot be at) and stops there; the resume is bit-identical."""
    out = tmp_path / "run"
    process = subprocess.run(
        [sys.executable, "-c", STOP_AT_STEP, str(out), signame], capture_output=True, text=True, timeout=600
    )
    assert process.returncode != 0 and f"stopped by {signame} at the end of epoch 1" in process.stderr, process.stderr
    assert [r["epoch"] for r in read_metrics(out)] == [1]
    result = finish("train", "--resume", str(out), "--no-progress", "--no-report")
    assert result.returncode == 0, result.stderr
    assert same_weights(straight, out)
    assert losses(straight) == losses(out)


@pytest.mark.slow
def test_sigterm_also_checkpoints(tmp_path):
    out = tmp_path / "run"
    process = start(out)
    wait_for(out / "config.json")
    time.sleep(0.3)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert "stopped by SIGTERM" in stderr


def test_divergence_stops_with_the_step_and_keeps_the_good_checkpoint(trained_run, tmp_path):
    run = copy_run(trained_run("mlp"), tmp_path / "run")  # one epoch of mlp
    good = weights(run)
    steps = 32  # 4,000 images in batches of 128, the last one filled up from the epoch's other images
    with pytest.raises(
        VaelabError, match=rf"non-finite in epoch 2 at step \d+ of {steps}.*vaelab.resume\(.*, lr=.*, clip_grad="
    ):
        resume(run, epochs=2, lr=1e30, progress=False)  # an absurd learning rate overflows the weights
    kept = load_file(run / "checkpoint.safetensors")
    assert all(torch.equal(kept[k], good[k]) for k in good)
    assert [r["epoch"] for r in read_metrics(run)] == [1]


def test_a_pickle_where_weights_belong_is_refused_and_never_run(trained_run, tmp_path):
    run = copy_run(trained_run("mlp"), tmp_path / "run")
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    for name in ("model.safetensors", "checkpoint.safetensors"):
        (run / name).write_bytes(pickle.dumps(Payload()))
        with pytest.raises(CheckpointError, match="not a readable safetensors file"):
            load_model(run, weights=name)
    result = vaelab_cli("train", "--resume", run, "--no-progress")
    assert result.returncode == 2 and "not a readable safetensors file" in result.stderr
    result = vaelab_cli("sample", run)
    assert result.returncode == 2 and "not a readable safetensors file" in result.stderr
    assert not marker.exists()


def test_resume_without_a_checkpoint_says_what_to_do(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"train": {}, "model": "mlp"}))
    with pytest.raises(VaelabError, match="has no checkpoint yet.*--overwrite"):
        resume(run)


def test_run_folder_with_missing_files(tmp_path):
    with pytest.raises(VaelabError, match="does not exist"):
        load_model(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(VaelabError, match="config.json is missing"):
        load_model(tmp_path / "empty")


def test_weights_from_another_format_version_are_refused(tmp_path):
    from safetensors.torch import save_file

    from vaelab.models import build_model, make_config

    model = build_model("mlp", make_config("mlp", (1, 28, 28), 10))
    path = tmp_path / "model.safetensors"
    save_file(
        {f"model.{k}": v.contiguous() for k, v in model.state_dict().items()},
        path,
        metadata={"format": "vaelab-0", "model": "mlp"},
    )
    from vaelab.runs import load_weights

    with pytest.raises(CheckpointError, match="has format 'vaelab-0', this vaelab reads 'vaelab-1'"):
        load_weights(model, "mlp", path)


@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
def test_a_stop_on_the_last_step_of_the_last_epoch_is_not_lost(signame, tmp_path):
    """The run is complete, so the stop cannot leave it unresumable; it still ends the call (the command
    would otherwise go on to draw the report the user or the scheduler asked it not to wait for)."""
    import vaelab

    class Stop(vaelab.Callback):
        step_every = 8  # 4,000 images in batches of 500: the last step of the only epoch

        def on_step(self, step, values):
            os.kill(os.getpid(), getattr(signal, signame))

    out = tmp_path / "run"
    with pytest.raises(VaelabError, match=f"stopped by {signame} at the end of epoch 1, the last: the run is complete"):
        vaelab.train("mlp", "mnist-sample", epochs=1, batch_size=500, out=out, progress=False, callbacks=[Stop()])
    assert [r["epoch"] for r in read_metrics(out)] == [1] and load_model(out)


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="no SIGHUP on Windows")
def test_a_terminal_that_closes_mid_epoch_leaves_a_checkpoint(tmp_path):
    """SIGHUP (the terminal closed, an ssh session dropped) stops as Ctrl-C does, with a checkpoint to go
    on from, unless the process ignores it (nohup)."""
    import vaelab

    class HangUp(vaelab.Callback):
        step_every = 3

        def on_step(self, step, values):
            os.kill(os.getpid(), signal.SIGHUP)

    out = tmp_path / "run"
    previous = signal.signal(signal.SIGHUP, signal.SIG_DFL)  # as in a terminal, even when pytest runs under nohup
    try:
        with pytest.raises(VaelabError, match="stopped by SIGHUP in epoch 1 after step 3 of 8; checkpoint written"):
            vaelab.train("mlp", "mnist-sample", epochs=1, batch_size=500, out=out, progress=False, callbacks=[HangUp()])
    finally:
        signal.signal(signal.SIGHUP, previous)
    assert (out / "checkpoint.safetensors").is_file()
    result = finish("train", "--resume", str(out), "--no-progress", "--no-report")
    assert result.returncode == 0 and [r["epoch"] for r in read_metrics(out)] == [1], result.stderr
