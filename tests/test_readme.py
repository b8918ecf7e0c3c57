"""The README's commands run as written, each bash block in a fresh folder, in order: every one that
can run offline.

Left out, because this machine cannot: downloads of full MNIST and CIFAR-10 (and the commands that
read their runs), several GPUs or machines, `pip install`, the CI script and the benchmarks; and
`vaelab check` of a student's file, which the README does not hold (tests/checking checks such files).
To keep the suite short, training runs for one epoch (`--epochs N` becomes `--epochs 1`, and `vaelab demo`
gets `--epochs 1`); every other word is the README's.
"""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
NEEDS_MORE = (
    "--dataset mnist ",
    "--dataset cifar10",
    "runs/iwae",
    "torchrun",
    "--nproc",
    "pip install",
    ".ci/run",
    "bench/",
    "pytest",
    "vaelab check",  # a student's file or a folder of submissions: tests/checking runs the checks on such files
)


def readme_blocks() -> list[list[str]]:
    """The `vaelab ...` lines of each of the README's bash blocks, comments removed, in order."""
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), re.S)
    lines = [[line.split("  #")[0].strip() for line in block.splitlines()] for block in blocks]
    return [[line for line in block if re.match(r"(vaelab|python -m vaelab) ", line)] for block in lines]


def readme_commands() -> list[str]:
    return [command for block in readme_blocks() for command in block]


def offline(command: str) -> bool:
    return not any(word in command + " " for word in NEEDS_MORE)


def shortened(command: str) -> str:
    command = re.sub(r"--epochs \d+", "--epochs 1", command)
    return command + " --epochs 1" if command.startswith("vaelab demo") and "--epochs" not in command else command


OFFLINE_BLOCKS = [commands for commands in ([c for c in b if offline(c)] for b in readme_blocks()) if commands]


def test_the_readme_has_commands_that_run_offline():
    commands = [command for block in OFFLINE_BLOCKS for command in block]
    assert len(commands) >= 6, commands
    assert any(c.startswith("vaelab train") for c in commands) and any(c.startswith("vaelab compare") for c in commands)


@pytest.mark.slow  # each command in a shell, as typed
@pytest.mark.parametrize("commands", OFFLINE_BLOCKS, ids=["-".join(c.split()[1] for c in b) for b in OFFLINE_BLOCKS])
def test_every_offline_readme_command_runs(commands, tmp_path):
    """A block's commands in one fresh folder, in order (a later one reads what an earlier wrote);
    the blocks are independent, so each is its own test."""
    if not shutil.which("vaelab"):
        pytest.fail("the vaelab command is not installed: pip install -e .")
    for command in commands:
        result = subprocess.run(
            ["bash", "-c", shortened(command)], cwd=tmp_path, capture_output=True, text=True, timeout=900
        )
        assert result.returncode == 0, f"{command}\n{result.stderr[-3000:]}"
