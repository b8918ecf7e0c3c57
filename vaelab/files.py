"""Files written whole or not at all: a killed process leaves the previous complete file.

Every file vaelab writes goes through `atomic_write` (temporary file beside it, fsync, rename).
A write that fails (a full disk, a read-only folder) removes its temporary file and raises a
VaelabError naming the file, the reason and the fix.
"""

import errno
import json
import os
from pathlib import Path

from vaelab.errors import VaelabError

NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)

FIXES = {
    errno.ENOSPC: "the disk is full: free some space, or write to another disk",
    errno.EDQUOT: "the disk quota is used up: free some space, or write to another disk",
    errno.EACCES: "there is no permission to write there: pick a folder you can write to",
    errno.EPERM: "there is no permission to write there: pick a folder you can write to",
    errno.EROFS: "the file system is read-only: pick a folder on a writable disk",
    errno.ENOENT: "its folder does not exist (was it removed?): create it, or pick another folder",
    errno.ENOTDIR: "a part of the path is a file, not a folder: pick another path",
    errno.EISDIR: "a folder is in the way: remove it, or pick another path",
    errno.ELOOP: "a symbolic link is in the way of a file vaelab writes: remove it",
}


def storage_error(path, error: OSError, doing: str = "write") -> VaelabError:
    """A VaelabError for an OSError met while writing or creating `path`."""
    fix = FIXES.get(error.errno, "check the path and the disk")
    return VaelabError(f"cannot {doing} {path} ({error.strerror or error}): {fix}")


def atomic_write(path: Path, data: bytes) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:  # O_NOFOLLOW: a link planted where the temporary file goes is refused, never written through
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | NOFOLLOW, 0o666), "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:  # a full disk, or Ctrl-C outside training: no stray temporary file
        try:
            tmp.unlink()
        except OSError:
            pass
        if isinstance(e, OSError):
            raise storage_error(path, e) from None
        raise


def make_folder(path: Path) -> Path:
    """`path` and its parents, created if missing; a VaelabError saying why when that fails."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise VaelabError(f"{path} is a file, not a folder: pick another path (or remove the file)")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise storage_error(path, e, "create the folder") from None
    return path


def write_json(path: Path, obj) -> None:
    atomic_write(path, (json.dumps(obj, indent=2) + "\n").encode())


def strict_json(text):
    """json.loads that refuses an object repeating a key (plain JSON keeps the last one silently, so an
    edited file could say one thing to one reader and another to the next)."""
    return json.loads(text, object_pairs_hook=unique_keys)


def unique_keys(pairs: list) -> dict:
    keys = [k for k, _ in pairs]
    repeated = sorted({k for k in keys if keys.count(k) > 1})
    if repeated:
        raise ValueError(f"the key {repeated[0]!r} appears more than once in one object")
    return dict(pairs)


def read_json(path: Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise VaelabError(f"{path} is missing: is {path.parent} a complete vaelab run folder?")
    try:
        return strict_json(path.read_text())
    except (ValueError, RecursionError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise VaelabError(f"{path} is not valid JSON ({e}); the run folder is damaged") from None
    except OSError as e:
        raise VaelabError(f"{path} cannot be read ({e.strerror or e}): check its permissions") from None
