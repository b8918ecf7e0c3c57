"""Progress that suits where it runs.

    a terminal        a live bar per epoch (tqdm), on stderr
    a notebook        a widget bar per epoch when ipywidgets is installed; otherwise no bar
    anything else     no bar (a log file, a pipe, CI)

In every case training prints one line per finished epoch, so a log or a notebook cell reads as
a table. `progress=False` (`--no-progress`) and the environment variable TQDM_DISABLE=1 turn the
bar off; the epoch lines stay.
"""

import os
import sys


def in_notebook() -> bool:
    """True inside a Jupyter kernel (IPython's ZMQ shell), where stderr is not a terminal."""
    shell = sys.modules.get("IPython") and sys.modules["IPython"].get_ipython()
    return type(shell).__name__ == "ZMQInteractiveShell"


def where() -> str:
    """ "notebook", "terminal" or "log": where this process's progress is seen."""
    if in_notebook():
        return "notebook"
    return "terminal" if sys.stderr.isatty() else "log"


def disabled_by_environment() -> bool:
    return os.environ.get("TQDM_DISABLE", "").strip().lower() not in ("", "0", "false", "no")


class NoBar:
    """What a bar does where no bar is shown: nothing."""

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, **_) -> None:
        pass

    def close(self) -> None:
        pass


def bar(total: int, initial: int = 0, desc: str = "", show: bool = True, unit: str = "img"):
    """A progress bar for one epoch (or any count), or a NoBar where none suits."""
    if not show or disabled_by_environment():
        return NoBar()
    place = where()
    if place == "notebook":
        try:
            import ipywidgets  # noqa: F401
            from tqdm.notebook import tqdm  # a widget; needs ipywidgets
        except ImportError:
            return NoBar()  # without widgets every update would be a new output; the epoch lines suffice
        return tqdm(total=total, initial=initial, unit=unit, unit_scale=True, desc=desc, leave=False)
    if place == "terminal":
        from tqdm import tqdm

        return tqdm(total=total, initial=initial, unit=unit, unit_scale=True, desc=desc, leave=False, file=sys.stderr)
    return NoBar()
