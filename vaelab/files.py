"""Files written whole or not at all: a killed process leaves the previous complete file.

Every file vaelab writes goes through `atomic_write` (temporary file beside it, fsync, rename).
"""
import json
import os
from pathlib import Path

from vaelab.errors import VaelabError


def atomic_write(path: Path, data: bytes) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_json(path: Path, obj) -> None:
    atomic_write(path, (json.dumps(obj, indent=2) + "\n").encode())


def read_json(path: Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise VaelabError(f"{path} is missing: is {path.parent} a complete vaelab run folder?")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise VaelabError(f"{path} is not valid JSON ({e}); the run folder is damaged") from None
