"""`vaelab check`: whether a student's own VAE pieces are right, and an auto-grader for a teacher.
`vaelab.check(...)` is the function `check` below.

    >>> report = vaelab.check("my_vae.py", exercise="conv")   # a table in Jupyter, text when printed
    >>> report.failed()                                        # ids of the checks that did not pass

    exercises.py  the exercises: the pieces each asks for and vaelab's model that answers it
    source.py     the pieces found in a .py file, a notebook's code cells, a module or keywords
    pieces.py     the functions against vaelab's references, with the usual mistakes named
    models.py     the Encoder and Decoder: how they are called, and their layers against the table
    training.py   a short fixed-seed training of the student's model with the student's loss
    core.py       one submission against one exercise: every check, in order
    runner.py     each file in its own process under a time and a memory limit
    worker.py     that process
    results.py    the report: table, HTML, JSON, Gradescope, JUnit; the rubric

Modules outside this folder import from here only; the tests check it.
"""

from pathlib import Path

from vaelab.checking.exercises import EXERCISES, PIECES
from vaelab.checking.results import Check, Report, Reports, apply_rubric, read_rubric, render
from vaelab.checking.training import ShortTraining
from vaelab.errors import VaelabError

__all__ = ["EXERCISES", "PIECES", "Check", "Report", "Reports", "ShortTraining", "check", "render"]


def check(
    source=None,
    exercise: str = "mlp",
    *,
    names: dict | None = None,
    rubric=None,
    train: bool = True,
    isolate: bool | None = None,
    time_limit: float = 180.0,
    memory_mb: int = 4096,
    figures: bool | None = None,
    **objects,
):
    """Check a student's VAE pieces against `exercise` (vaelab.checking.EXERCISES): a Report, or Reports
    for a folder. Shown in Jupyter as a table; `print(report)` gives text.

    source: a .py file, a notebook (.ipynb; its definitions are run, not its training), a folder of
        them (one report per file), a module (or its name), or None with the pieces as keywords (Encoder=...,
        kl_divergence=...). names maps the exercise's names to yours: {"Encoder": "MyEncoder"}.
    rubric: {check id or piece: points}, or a JSON or TOML file of them; only those checks count.
    train: include the short training that must land in the reference band (seconds to a minute).
    isolate: run each file in its own process with `time_limit` seconds and `memory_mb` MB
        (default: yes for files and folders, no for modules and objects).
    figures: after the training, the latent scatter and manifold of your model beside those of
        vaelab's trained alike, shown under the table in Jupyter (default: for one submission, not
        for a folder; it trains vaelab's model too, seconds to a minute more).

    Examples:
        >>> report = vaelab.check("my_vae.py", exercise="mlp")
        >>> report = vaelab.check(exercise="losses", kl_divergence=my_kl, reparameterize=my_reparameterize,
        ...                       reconstruction_loss=my_loss)
        >>> report.failed()
        []
    """
    from vaelab.checking.exercises import get_exercise

    get_exercise(exercise)  # an unknown name fails before any work
    points = read_rubric(rubric) if isinstance(rubric, (str, Path)) else rubric
    if isinstance(source, (str, Path)) and Path(source).is_dir():
        from vaelab.checking.runner import submissions_in

        files = submissions_in(Path(source))
        if not files:
            raise VaelabError(f"{source} holds no .py or .ipynb files to check")
        draw = bool(figures) and train
        reports = Reports(_one(f, exercise, names, train, isolate, time_limit, memory_mb, draw, {}) for f in files)
        return Reports(apply_rubric(r, points) for r in reports) if points else reports
    draw = (figures is None or figures) and train
    report = _one(source, exercise, names, train, isolate, time_limit, memory_mb, draw, objects)
    return apply_rubric(report, points) if points else report


def _one(source, exercise, names, train, isolate, time_limit, memory_mb, figures, objects) -> Report:
    if isinstance(source, str) and _module_name(source):
        import importlib

        source = importlib.import_module(source)  # a module of yours, by name: checked in this process
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise VaelabError(f"{path} does not exist: give a .py file, a notebook (.ipynb) or a folder of them")
        if isolate is None or isolate:
            from vaelab.checking.runner import check_isolated

            return check_isolated(path, exercise, names, train, time_limit, memory_mb, figures)
        from vaelab.checking.worker import check_source

        return check_source(str(path), exercise, names, train, time_limit, figures)
    from vaelab.checking.core import run_checks
    from vaelab.checking.source import find_pieces

    name = getattr(source, "__name__", "your pieces") if source is not None else "your pieces"
    found = find_pieces(source, names, **objects)
    return run_checks(found, exercise, name, train=train, time_limit=time_limit, figures=figures)


def _module_name(text: str) -> bool:
    """Whether `text` names a module (my_vae, course.week3.vae) rather than a file that is not there."""
    import importlib.util
    import re

    if Path(text).exists() or not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", text) or text.endswith(".py"):
        return False
    try:
        return importlib.util.find_spec(text) is not None
    except (ImportError, ValueError):
        return False
