"""The process a submission is checked in (`vaelab.checking.runner` starts it): reads the submission,
runs the checks, writes the report as JSON. Its one argument is a JSON object of check_source's
arguments and "out", the file to write. Whatever the student's code prints goes to this process's
output, which the runner keeps apart from the report."""

import errno
import json
import sys
from pathlib import Path

from vaelab.checking.core import run_checks
from vaelab.checking.results import Check, Report
from vaelab.checking.source import find_pieces


def check_source(
    path: str, exercise: str, names=None, train: bool = True, time_limit: float = 100.0, figures: bool = False
) -> Report:
    """The report of the file at `path`; an error while its code runs becomes the check submission.runs."""
    name = Path(path).name
    try:
        found = find_pieces(path, names)
    except (Exception, SystemExit) as e:  # the student's module-level code
        report = run_checks({}, exercise, name, train=False)
        where = _line_in(e, path)
        message = f"running {name} raised {type(e).__name__}: {e}{where}; the pieces could not be read"
        if isinstance(e, OSError) and e.errno == errno.EFBIG:  # the runner's limit on what a submission prints
            message = f"{name} printed more than its limit of output{where} and was stopped: print less"
        report.checks.insert(0, Check("submission.runs", "error", message))
        return report
    return run_checks(found, exercise, name, train=train, time_limit=time_limit, figures=figures)


def _line_in(error: BaseException, path: str) -> str:
    tb, line = error.__traceback__, None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == str(path):
            line = tb.tb_lineno
        tb = tb.tb_next
    return f" (line {line})" if line else ""


def main() -> None:
    args = json.loads(sys.argv[1])
    out = Path(args.pop("out"))
    report = check_source(**args)
    out.write_text(json.dumps(report.to_dict()))


if __name__ == "__main__":
    main()
