"""What vaelab says as it works (a line per epoch, notes, warnings) goes through Python's logging, to
the logger "vaelab" and its children, so a notebook, a script or a service can quiet it or route it.

The logger has one handler of its own: INFO lines to standard output and warnings to standard
error, bare, as a terminal, a notebook cell and a log file read them. `verbosity` sets its level for
one call (`verbose=` of vaelab.train and the others, `-q` and `-v` on the command line) and puts it
back after. To send vaelab's lines to your own logging instead:

    logging.getLogger("vaelab").handlers.clear()   # they propagate to your handlers
"""

import contextlib
import logging
import sys

LOGGER = logging.getLogger("vaelab")
LEVELS = {0: logging.WARNING, 1: logging.INFO, 2: logging.DEBUG}  # quiet, the default, everything


class Console(logging.Handler):
    """INFO and below to sys.stdout, warnings and errors to sys.stderr: the streams as they are
    when a line is written (a notebook or a test may have replaced them)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            stream = sys.stderr if record.levelno >= logging.WARNING else sys.stdout
            stream.write(self.format(record) + "\n")
            stream.flush()
        except Exception:  # as logging.StreamHandler does: a broken stream never ends training
            self.handleError(record)


def setup() -> None:
    """Give the "vaelab" logger its handler and level, once (importing vaelab does)."""
    if not any(isinstance(h, Console) for h in LOGGER.handlers):
        LOGGER.addHandler(Console())
        if LOGGER.level == logging.NOTSET:
            LOGGER.setLevel(logging.INFO)


@contextlib.contextmanager
def verbosity(verbose: int | bool | None):
    """For the body, vaelab's lines at `verbose`: 0 (or False) warnings only, 1 (True) a line per
    epoch and notes, 2 everything; None keeps the level as it is."""
    if verbose is None:
        yield
        return
    if int(verbose) not in LEVELS:
        from vaelab.errors import VaelabError

        raise VaelabError(f"verbose is 0 (warnings only), 1 (a line per epoch) or 2 (everything), got {verbose!r}")
    previous = LOGGER.level
    LOGGER.setLevel(LEVELS[int(verbose)])
    try:
        yield
    finally:
        LOGGER.setLevel(previous)
