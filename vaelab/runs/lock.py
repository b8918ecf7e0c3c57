"""One writer per run folder: the folder itself is held with flock(2) while a process trains into it.

The lock is on the folder, not on a file in it, so deleting or replacing a file cannot let a second
writer in. The kernel releases the lock when its holder exits, however it exits (kill -9 included),
so a lock never outlives its process and never needs cleaning up. `RUN/.lock` only says who holds
it: a second writer is refused at once with the holder's pid and command line. A process that
only reads a run never takes it.
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
HELD: dict[str, int] = {}  # the folders this process holds (absolute path -> the descriptor locked)


class RunInUse(VaelabError):
    """Another process is writing the run folder."""


class RunLock:
    """`with RunLock(run_dir):` the body runs as the run folder's only writer, or RunInUse is raised."""

    def __init__(self, run_dir: Path):
        self.folder, self.path = Path(run_dir), Path(run_dir) / LOCK
        self.fd = None

    def __enter__(self):
        try:
            self.fd = os.open(self.folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        except OSError as e:
            raise storage_error(self.folder, e, "open the run folder") from None
        if fcntl is not None:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = self.holder()
                os.close(self.fd)
                raise RunInUse(
                    f"{self.folder} is being written by another vaelab process{holder}; two "
                    f"writers would overwrite each other's epochs. Wait for it to finish, stop it "
                    f"(Ctrl-C, or kill -INT PID: it writes a checkpoint), or pick another --out"
                ) from None
        try:  # never through a symbolic link: truncating it would empty another file
            with os.fdopen(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | NOFOLLOW, 0o666), "w") as f:
                f.write(json.dumps({"pid": os.getpid(), "command": sys.argv}) + "\n")
        except OSError as e:
            os.close(self.fd)
            raise storage_error(self.path, e, "create the lock file") from None
        HELD[os.path.abspath(self.folder)] = self.fd
        return self

    def holder(self) -> str:
        """' (pid N: COMMAND)' from the lock file, or '' when it cannot be read."""
        try:
            with os.fdopen(os.open(self.path, os.O_RDONLY | NOFOLLOW)) as f:
                info = json.loads(f.read(1 << 16) or "{}")
            return f" (pid {int(info['pid'])}: {' '.join(map(str, info['command']))})"
        except (ValueError, KeyError, TypeError, OSError):
            return ""

    def __exit__(self, *_):
        HELD.pop(os.path.abspath(self.folder), None)
        os.close(self.fd)  # closing the descriptor releases the lock


def check_held(folder: Path) -> None:
    """Refuse to write into `folder` when the folder this process locked under that name was moved or
    replaced since: its files would start a second, partial run there (the lock is on the folder
    it locked, wherever that went)."""
    fd = HELD.get(os.path.abspath(folder))
    if fd is None:
        return
    try:
        same = os.path.samestat(os.fstat(fd), os.stat(folder))
    except OSError:
        same = False
    if not same:
        raise VaelabError(
            f"{folder} was moved or replaced while this process trained into it, so it stops rather than "
            f"write there; the run it trained is wherever the folder went: continue it with "
            f"`vaelab train --resume NEW_PLACE`"
        )
