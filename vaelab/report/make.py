"""`vaelab report RUN`: one self-contained page that answers the exercises' questions about a run.

    RUN/figures/NAME.png   every figure (figures.py), at 100 dpi
    RUN/report.html        one section per question, each with its numbers and figures: the model;
                           training; the latent space; generation; conditional generation (CVAE);
                           classification from z; how good the model is. The evaluation's answers
                           (RUN/eval.json) are on the page when `vaelab evaluate` has run, and the
                           command to get them is when it has not. Images by relative path, no
                           scripts, no network: the page opens from disk and survives copying.

Reads only the run folder (and the data set it names), through vaelab.runs. matplotlib comes in
when a report is drawn, not when the CLI starts.
"""

from dataclasses import replace
from pathlib import Path

from vaelab import runs
from vaelab.errors import VaelabError
from vaelab.report.settings import ReportSettings, fitted, settings_problem


def make_report(run, settings: ReportSettings | None = None, trust_code: bool = False, **changes) -> Path:
    """Write RUN/figures/*.png and RUN/report.html of `run` (a vaelab.runs.Run or its folder);
    returns the page's path. `changes` are ReportSettings fields (grid=31, labels=(4, 8), ...);
    `trust_code` lets a run of your own model import its classes' module (vaelab/models/custom.py)."""
    run = run if isinstance(run, runs.Run) else runs.Run.open(run, trust_code=trust_code)
    s = fitted(replace(settings or ReportSettings(), **changes), run.classes)
    problem = settings_problem(s, run.classes)
    if problem:
        raise VaelabError(problem)  # before any work
    from vaelab.report.page import render_page, sections  # matplotlib: only when a report is drawn

    evaluation = runs.read_eval(run.dir)
    parts = list(sections(run, s, evaluation))
    drawn = {name for _, _, items in parts for kind, name, *_ in items if kind == "figure"}
    for _, _, items in parts:
        for kind, name, *rest in items:
            if kind == "figure" and rest[0] is not None:
                runs.save_figure(run.dir, name, rest[0])
    runs.remove_figures(run.dir, keep=drawn)
    return runs.write_report(run.dir, render_page(run, parts, evaluation))
