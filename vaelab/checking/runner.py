"""Each submission in its own process, with a time and a memory limit: a submission that hangs,
crashes, fills the output or has none of the pieces gets its line in the table, and the next one is
checked. The limits are the operating system's (resource.setrlimit: address space, file size, CPU
seconds); the time limit is also the wall clock's, and the whole process group is killed past it."""

import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from vaelab.checking.core import run_checks
from vaelab.checking.results import Check, Report

OUTPUT_LIMIT = 10 * 2**20  # bytes a submission may print
SUFFIXES = (".py", ".ipynb")


def submissions_in(folder: Path) -> list[Path]:
    """The .py and .ipynb files of a folder and of its sub-folders (one per student), sorted."""
    files = [
        p
        for p in sorted(folder.rglob("*"))
        if p.suffix in SUFFIXES and p.is_file() and ".ipynb_checkpoints" not in p.parts
    ]
    return [p for p in files if p.name != "__init__.py"]


def check_isolated(
    path: Path,
    exercise: str,
    names=None,
    train: bool = True,
    time_limit: float = 180.0,
    memory_mb: int = 4096,
    figures: bool = False,
) -> Report:
    """The report of one file, checked in a new Python process under the limits."""
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="vaelab-check-") as tmp:
        out, log = Path(tmp) / "report.json", Path(tmp) / "output.txt"
        args = {
            "path": str(path.resolve()),
            "exercise": exercise,
            "names": names,
            "train": train,
            "time_limit": max(1.0, time_limit - 30),
            "figures": figures,
            "out": str(out),
        }
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([_package_root(), os.environ.get("PYTHONPATH", "")])}
        env.setdefault("OMP_NUM_THREADS", "1")
        with open(log, "wb") as output:
            process = subprocess.Popen(
                [sys.executable, "-m", "vaelab.checking.worker", json.dumps(args)],
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=path.resolve().parent,
                env=env,
                start_new_session=True,
                preexec_fn=_limits(time_limit, memory_mb),
            )
            try:
                code = process.wait(time_limit)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                code = None
        report = _read(out, path, exercise, code, log, time_limit, memory_mb)
    report.seconds = time.perf_counter() - start
    return report


def _package_root() -> str:
    return str(Path(__file__).resolve().parents[2])


def _limits(time_limit: float, memory_mb: int):
    cpu = int(time_limit) + 10  # a backstop: the wall clock's limit comes first
    limits = (
        (resource.RLIMIT_AS, memory_mb * 2**20),
        (resource.RLIMIT_FSIZE, OUTPUT_LIMIT),
        (resource.RLIMIT_CPU, cpu),
    )

    def apply():
        for which, value in limits:
            try:
                resource.setrlimit(which, (value, value))
            except (
                ValueError,
                OSError,
            ):  # a system that does not enforce it (macOS and RLIMIT_AS): the clock still does
                pass

    return apply


def _read(out: Path, path: Path, exercise: str, code, log: Path, time_limit: float, memory_mb: int) -> Report:
    if code == 0 and out.is_file():
        try:
            return Report.from_dict(json.loads(out.read_text()))
        except (ValueError, KeyError, TypeError):
            pass
    tail = _tail(log)
    if code is None:
        why = (
            f"did not finish in {time_limit:g} s and was stopped: a loop that never ends, or training at the top "
            f'level of the file (put it under `if __name__ == "__main__":`)'
        )
    elif log.stat().st_size >= OUTPUT_LIMIT or "File too large" in tail:
        why = f"printed more than {OUTPUT_LIMIT // 2**20} MB and was stopped: print less"
    elif "MemoryError" in tail or "std::bad_alloc" in tail or "DefaultCPUAllocator" in tail:
        why = f"ran out of its {memory_mb:,} MB of memory: {tail.splitlines()[-1] if tail else ''}"
    else:
        reason = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"
        why = f"crashed ({reason})" + (f": {tail.splitlines()[-1]}" if tail.strip() else "")
    report = run_checks({}, exercise, path.name, train=False)
    report.checks.insert(0, Check("submission.runs", "error", why))
    return report


def _tail(log: Path, size: int = 4000) -> str:
    with open(log, "rb") as f:
        f.seek(max(0, log.stat().st_size - size))
        return f.read().decode("utf-8", errors="replace").strip()
