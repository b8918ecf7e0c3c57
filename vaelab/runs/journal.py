"""Several files of one folder replaced as one: all of them, or none.

    FOLDER/.commit/0, 1, ...     the new contents, each written whole and synced
    FOLDER/.commit/files.json    written last (atomically): the commit point, naming each file

Once files.json exists the change is decided: its files are renamed into place, then files.json
and the staging folder are removed. A process killed before files.json leaves the old files and a
staging folder that the next `recover` deletes; one killed after it leaves a staging folder that
`recover` finishes. Renames within one folder are atomic, so every file is always whole.
"""

import json
import os
import re
import shutil
from pathlib import Path

from vaelab.errors import VaelabError
from vaelab.files import atomic_write, storage_error
from vaelab.runs.lock import RunLock, check_held

STAGE = ".commit"
MANIFEST = "files.json"


def commit(folder: Path, files: dict[str, bytes], allowed: re.Pattern) -> None:
    """Replace folder/NAME by each of `files` (NAME: bytes), together. Names are relative paths
    that match `allowed`."""
    folder = Path(folder)
    check_held(folder)
    stage = folder / STAGE
    assert all(allowed.fullmatch(name) for name in files), list(files)
    recover(folder, allowed)
    for name in files:  # every folder a file goes into is a real folder of `folder`, never a link
        check_no_link(folder, name)
    try:
        stage.mkdir()
        for i, data in enumerate(files.values()):
            with open(stage / str(i), "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
    except OSError as e:
        shutil.rmtree(stage, ignore_errors=True)
        raise storage_error(folder, e, "write the new files into") from None
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    atomic_write(stage / MANIFEST, json.dumps(list(files)).encode())  # the commit point
    sync_folder(stage)  # the staged files and the manifest outlast a power cut before any rename
    finish(folder, list(files))


def finish(folder: Path, names: list[str]) -> None:
    stage = folder / STAGE
    try:
        for i, name in enumerate(names):
            if (stage / str(i)).exists():  # already moved when an earlier finish was cut short
                (folder / name).parent.mkdir(parents=True, exist_ok=True)
                os.replace(stage / str(i), folder / name)
        for parent in {(folder / name).parent for name in names}:
            sync_folder(parent)
        (stage / MANIFEST).unlink()
        shutil.rmtree(stage)
    except OSError as e:
        raise storage_error(folder, e, "move the new files into") from None


def recover(folder: Path, allowed: re.Pattern) -> bool:
    """Finish a commit that was decided but cut short, or drop one that was not; True when a
    decided commit was finished."""
    stage = Path(folder) / STAGE
    if stage.is_symlink():
        raise VaelabError(f"{stage} is a symbolic link, which vaelab never writes: remove it and continue")
    if not stage.is_dir():
        return False
    names = pending(stage)
    if names is None:
        shutil.rmtree(stage, ignore_errors=True)
        return False
    bad = [n for n in names if not isinstance(n, str) or not allowed.fullmatch(n)]
    if not bad:
        for name in names:
            check_no_link(Path(folder), name)
    if bad:
        raise VaelabError(
            f"{stage / MANIFEST} names files outside the run ({bad[0]!r}): it was not written "
            f"by vaelab. Delete the folder {stage} and continue"
        )
    finish(Path(folder), names)
    return True


def settle(folder: Path, allowed: re.Pattern) -> None:
    """`recover` for a reader: only when no live writer holds the folder (that one finishes its own
    commit), and only where it can write (a read-only copy is read as it is)."""
    if not (Path(folder) / STAGE).is_dir():
        return
    try:
        with RunLock(folder):
            recover(Path(folder), allowed)
    except (VaelabError, OSError):  # RunInUse among them
        pass


def pending(stage: Path) -> list | None:
    """The names a decided commit replaces, or None when none was decided."""
    try:
        names = json.loads((stage / MANIFEST).read_text())
    except (OSError, ValueError):
        return None  # absent, or cut short: atomic_write makes the latter impossible
    return names if isinstance(names, list) else None


def remove(folder: Path, names: list[str]) -> None:
    """Delete folder/NAME for each of `names` (files or folders), in order, and stray temporary files;
    a symbolic link is removed itself, never what it points to."""
    for path in [folder / name for name in names] + list(folder.glob(".*.tmp")):
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()
        except OSError as e:
            raise storage_error(path, e, "remove") from None


def check_no_link(folder: Path, name: str) -> None:
    """Refuse a file `name` (a relative path) whose folders inside `folder` include a symbolic link."""
    path = folder
    for part in Path(name).parts[:-1]:
        path = path / part
        if path.is_symlink():
            raise VaelabError(
                f"{path} is a symbolic link, not a folder of the run: vaelab never writes through a link "
                f"(it could point anywhere); remove the link and try again"
            )


def sync_folder(folder: Path) -> None:
    """fsync a folder, so that the renames in it survive a power cut (POSIX; elsewhere a no-op)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
