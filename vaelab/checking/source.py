"""Finding a student's pieces: in a Python file, a notebook's code cells, a module, or objects given
by keyword. Names are the exercises' (Encoder, Decoder, reparameterize, ...); `names` maps others.

A notebook is run for its definitions only (imports, functions, classes, and assignments that call
nothing but a few constructors): its training loops and plots stay out, so a check takes seconds.
A Python file runs as a module named `submission` (code under `if __name__ == "__main__":` does not).
"""

import ast
import json
import types
from pathlib import Path

from vaelab.checking.exercises import PIECES
from vaelab.errors import VaelabError

SAFE_CALLS = ("device", "dataclass", "field", "TypeVar", "namedtuple")  # calls a definition cell may make


def find_pieces(source=None, names: dict | None = None, **objects) -> dict:
    """{piece: object} of the pieces in `source` (a path to a .py or .ipynb file, a module, or a
    dict), then in `objects` (Encoder=..., kl_divergence=...; lower-case encoder/decoder too)."""
    namespace = {} if source is None else namespace_of(source)
    found = {}
    for piece in PIECES:
        name = (names or {}).get(piece, piece)
        if name in namespace:
            found[piece] = namespace[name]
    for key, value in objects.items():
        piece = {"encoder": "Encoder", "decoder": "Decoder"}.get(key, key)
        if piece not in PIECES:
            raise VaelabError(f"vaelab.check has no piece {key!r}; the pieces are {', '.join(PIECES)}")
        found[piece] = value
    return found


def namespace_of(source) -> dict:
    if isinstance(source, dict):
        return source
    if isinstance(source, types.ModuleType):
        return vars(source)
    path = Path(source)
    if not path.is_file():
        raise VaelabError(f"{path} is not a file: give a .py file, a notebook (.ipynb) or a module")
    if path.suffix == ".ipynb":
        return run_code(notebook_definitions(path), path)
    if path.suffix == ".py":
        return run_code(path.read_text(encoding="utf-8", errors="replace"), path)
    raise VaelabError(f"{path} is neither a .py file nor a notebook (.ipynb): vaelab check reads those two")


def run_code(code: str, path: Path) -> dict:
    module = types.ModuleType("submission")
    module.__file__ = str(path)
    import sys

    sys.modules["submission"] = module  # classes defined there can be found again (pickling, dataclasses)
    exec(compile(code, str(path), "exec"), vars(module))
    return vars(module)


def notebook_definitions(path: Path) -> str:
    """The definitions of a notebook's code cells, as one Python source."""
    try:
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    except (ValueError, KeyError, TypeError) as e:
        raise VaelabError(f"{path} is not a Jupyter notebook ({e}): save it again from Jupyter") from None
    kept = []
    for cell in cells:
        if cell.get("cell_type") != "code":
            continue
        text = "".join(cell.get("source", []))
        lines = [line for line in text.splitlines() if not line.lstrip().startswith(("%", "!"))]
        try:
            tree = ast.parse("\n".join(lines))
        except SyntaxError:
            continue  # a cell that does not parse defines nothing a check could use
        kept += [ast.get_source_segment("\n".join(lines), node) for node in tree.body if is_definition(node)]
    return "\n\n".join(kept)


def is_definition(node: ast.stmt) -> bool:
    if isinstance(node, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)):
        return True
    if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
        calls = [n for n in ast.walk(node.value) if isinstance(n, ast.Call)]
        return all(_called_name(c) in SAFE_CALLS for c in calls)
    return False


def _called_name(call: ast.Call) -> str:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
