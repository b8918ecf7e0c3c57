"""Progress that suits where it runs: a live bar on a terminal, one line per epoch in a pipe or a
log, nothing but those lines with --no-progress or TQDM_DISABLE (the notebook: tests/test_api.py)."""

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios

import pytest

pytestmark = pytest.mark.slow  # training processes on a terminal and in a pipe

TRAIN = ["train", "--model", "mlp", "--dataset", "mnist-sample", "--epochs", "2", "--batch-size", "200", "--no-report"]


def in_terminal(args, env=None) -> str:
    """What `vaelab ARGS` writes to a terminal (stdout and stderr on one pseudo-terminal)."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a 100-column terminal
    process = subprocess.Popen(
        [sys.executable, "-m", "vaelab", *args], stdout=follower, stderr=follower, env={**os.environ, **(env or {})}
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        chunks.append(chunk)
    assert process.wait(timeout=300) == 0
    os.close(leader)
    return b"".join(chunks).decode(errors="replace")


def test_a_terminal_gets_a_live_bar(tmp_path):
    shown = in_terminal([*TRAIN, "--out", tmp_path / "run"])
    assert "\r" in shown and "epoch 1/2:" in shown and "img/s" in shown  # tqdm redrawing its line
    assert shown.count("epoch 2/2  train") == 1


@pytest.mark.parametrize("how", ["--no-progress", "TQDM_DISABLE=1"])
def test_the_bar_can_be_turned_off(tmp_path, how):
    env = {"TQDM_DISABLE": "1"} if how.startswith("TQDM") else {}
    shown = in_terminal([*TRAIN, "--out", tmp_path / "run", *([how] if how.startswith("--") else [])], env)
    assert "img/s]" not in shown and "\r\r" not in shown.replace("\r\n", "")
    assert [line.split()[:2] for line in shown.splitlines() if line.startswith("epoch")] == [
        ["epoch", "1/2"],
        ["epoch", "2/2"],
    ]


def test_a_pipe_gets_one_line_per_epoch(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "vaelab", *map(str, TRAIN), "--out", str(tmp_path / "run")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "\r" not in result.stdout + result.stderr
    assert [line.split()[:2] for line in result.stdout.splitlines() if line.startswith("epoch")] == [
        ["epoch", "1/2"],
        ["epoch", "2/2"],
    ]
    assert result.stderr == ""
