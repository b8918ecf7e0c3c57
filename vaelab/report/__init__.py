"""The report: the figures of the exercises, each with its caption, on one page by question.

    settings.py   what a report draws (`vaelab report`'s flags), fitted to the run's classes
    make.py       `make_report`: the figures and the page of a run          (private to this folder)
    page.py       the page's sections, one per question the exercises ask   (private)
    figures.py    what to draw of a run and its caption: the notebook's figures too
    plots.py      drawing: arrays in, matplotlib Figures out; no model      (private)
    charts.py     figures of several runs and of numbers (comparison, evaluation, sweep)
    pages.py      HTML pages that open from disk, and the tables they hold

Modules outside this folder import from here, or figures.py, charts.py and pages.py; the tests check it.
"""

from vaelab.report.make import make_report
from vaelab.report.settings import (
    GRID_LIMITS,
    MAX_SAMPLES,
    ReportSettings,
    fitted,
    grid_size,
    settings_problem,
)

__all__ = ["GRID_LIMITS", "MAX_SAMPLES", "ReportSettings", "fitted", "grid_size", "make_report", "settings_problem"]
