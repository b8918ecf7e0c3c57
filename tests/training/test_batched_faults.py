"""Faults stay per run in a batch: a signal leaves every run of the batch resumable at one position,
and the same command carries on to the runs an uninterrupted batch gives (a run that diverges
stopping alone is tested with the sweep, tests/test_sweep.py)."""

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from vaelab.runs import read_metrics
from vaelab.training import saved_position

SWEEP = ["sweep", "--seed", "3,4", "--model", "mlp", "--dataset", "mnist-sample", "--epochs", "2", "--batched", "on"]
RUNS = ("seed-3", "seed-4")


def sweep(out: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vaelab", *SWEEP, "--out", str(out)], capture_output=True, text=True, timeout=600
    )


def losses(run: Path) -> list:
    return [{k: v for k, v in r.items() if k not in ("seconds", "images_per_second")} for r in read_metrics(run)]


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("straight") / "seeds"
    result = sweep(out)
    assert result.returncode == 0 and "2 runs trained as one batched model" in result.stdout, result.stderr
    return out


@pytest.mark.slow  # real training processes, stopped by signals
@pytest.mark.parametrize("signame, trial", [("SIGINT", 0), ("SIGTERM", 1)])
def test_a_signal_leaves_every_run_resumable_and_the_same_command_finishes_them(signame, trial, straight, tmp_path):
    out = tmp_path / "seeds"
    process = subprocess.Popen(
        [sys.executable, "-m", "vaelab", *SWEEP, "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not (out / RUNS[-1] / "config.json").exists():  # the batch has begun
        assert time.monotonic() < deadline and process.poll() is None, "the sweep never started its batch"
        time.sleep(0.02)
    # Within the batch's training (1.5 s on one idle thread, longer under load): a stop 0.5-3 s in
    # could land after it, while the sweep writes its table, where no checkpoint is due.
    time.sleep(random.Random(trial).uniform(0.05, 0.8))
    process.send_signal(getattr(signal, signame))
    _, stderr = process.communicate(timeout=120)
    if process.returncode != 0:  # stopped before the end: every run has its checkpoint, at one position
        assert process.returncode == 128 + getattr(signal, signame), stderr
        assert "every run of the batch has its checkpoint" in stderr, stderr
        assert len({saved_position(out / run) for run in RUNS}) == 1
        again = sweep(out)
        assert again.returncode == 0, again.stderr
    for run in RUNS:
        assert [r["epoch"] for r in read_metrics(out / run)] == [1, 2]
        assert losses(out / run) == losses(straight / run)
        got, want = load_file(out / run / "model.safetensors"), load_file(straight / run / "model.safetensors")
        assert all(torch.equal(got[k], want[k]) for k in want)
