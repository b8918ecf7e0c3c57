"""One writer per run folder: `RUN/.lock`, held with flock(2) while a process trains into RUN.

The kernel releases the lock when its holder exits, however it exits (kill -9 included), so a
lock never outlives its process and never needs cleaning up. A second writer is refused at once
with the holder's pid and command line. A process that only reads a run never takes it.
"""

import json
import os
import sys
from pathlib import Path

from vaelab.errors import VaelabError
from vaelab.files import NOFOLLOW, storage_error

try:
    import fcntl
except ImportError:  # not POSIX: no lock (flock(2) has no portable equivalent in the standard library)
    fcntl = None

LOCK = ".lock"


class RunInUse(VaelabError):
    """Another process is writing the run folder."""


class RunLock:
    """`with RunLock(run_dir):` the body runs as the run folder's only writer, or RunInUse is raised."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK
        self.file = None

    def __enter__(self):
        try:  # never through a symbolic link: truncating it would empty another file
            self.file = os.fdopen(os.open(self.path, os.O_RDWR | os.O_CREAT | NOFOLLOW, 0o666), "r+")
        except OSError as e:
            raise storage_error(self.path, e, "create the lock file") from None
        if fcntl is not None:
            try:
                fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = self.holder()
                self.file.close()
                raise RunInUse(
                    f"{self.path.parent} is being written by another vaelab process{holder}; two "
                    f"writers would overwrite each other's epochs. Wait for it to finish, stop it "
                    f"(Ctrl-C, or kill -INT PID: it writes a checkpoint), or pick another --out"
                ) from None
        self.file.seek(0)
        self.file.truncate()
        self.file.write(json.dumps({"pid": os.getpid(), "command": sys.argv}) + "\n")
        self.file.flush()
        return self

    def holder(self) -> str:
        """' (pid N: COMMAND)' from the lock file, or '' when it cannot be read."""
        try:
            self.file.seek(0)
            info = json.loads(self.file.read(1 << 16) or "{}")
            return f" (pid {int(info['pid'])}: {' '.join(map(str, info['command']))})"
        except (ValueError, KeyError, TypeError, OSError):
            return ""

    def __exit__(self, *_):
        self.file.close()  # closing the descriptor releases the lock
