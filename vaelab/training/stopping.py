"""Stopping training cleanly: SIGINT/SIGTERM/SIGHUP become a flag the loop reads after each step, so
the step finishes, a checkpoint is written and `Interrupted` carries the signal's exit status; a
non-finite loss ends a run with `Diverged`."""

import signal
import threading

from vaelab.errors import VaelabError
from vaelab.training import distributed
from vaelab.training.distributed import Ranks


class Interrupted(VaelabError):
    """Training stopped by SIGINT, SIGTERM or SIGHUP after a checkpoint was written."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.exit_code = 128 + signum


class Diverged(VaelabError):
    """Training stopped because the loss became non-finite; the run keeps its last good checkpoint.
    A sweep goes on with its other runs (vaelab/sweeps.py)."""


def stop_signals() -> list:
    """SIGINT (Ctrl-C), SIGTERM (a scheduler) and SIGHUP (the terminal closed, an ssh session dropped),
    but not SIGHUP where it is ignored: `nohup` asks that training goes on when the terminal closes."""
    hangup = getattr(signal, "SIGHUP", None)  # none on Windows
    keep = hangup is not None and signal.getsignal(hangup) is not signal.SIG_IGN
    return [signal.SIGINT, signal.SIGTERM, *([hangup] if keep else [])]


class StopSignals:
    """Turns SIGINT/SIGTERM/SIGHUP into a flag the loop checks after each step (main thread only)."""

    def __enter__(self):
        self.signum = None
        self.active = threading.current_thread() is threading.main_thread()
        if self.active:
            self.previous = {s: signal.signal(s, self.handle) for s in stop_signals()}
        return self

    def handle(self, signum, _frame):
        self.signum = signum

    def __exit__(self, *_):
        if self.active:
            for s, handler in self.previous.items():
                signal.signal(s, handler)


def stop_requested(stop: "StopSignals", step: int, steps: int, device, ranks: Ranks) -> bool:
    """Whether a signal asked to stop; several processes agree every 25 steps and at epoch end."""
    if ranks.world == 1:
        return stop.signum is not None
    due = step % 25 == 24 or step == steps - 1
    return due and distributed.any_rank(stop.signum is not None, device, ranks)
