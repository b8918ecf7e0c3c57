"""Each submission in its own process: one that hangs, crashes, prints without end or has no pieces
gets its line, and the folder runs into one table."""

from pathlib import Path

import pytest

import vaelab

FOLDER = Path(__file__).resolve().parent / "students" / "folder"


@pytest.mark.slow  # one submission waits out its time limit
def test_a_folder_with_a_hanging_and_a_crashing_submission_runs_into_one_table():
    reports = vaelab.check(FOLDER, "mlp", train=False, time_limit=20)
    by_name = {r.submission: r for r in reports}
    assert sorted(by_name) == ["correct.py", "crashes.py", "empty.py", "floods.py", "hangs.py"]
    assert by_name["correct.py"].passed
    runs = {n: next((c.message for c in r.checks if c.id == "submission.runs"), None) for n, r in by_name.items()}
    assert "did not finish in 20 s" in runs["hangs.py"]
    assert "crashed (signal SIGABRT)" in runs["crashes.py"]
    assert "printed more than" in runs["floods.py"]
    assert runs["empty.py"] is None and "encoder.found" in by_name["empty.py"].failed()
    table = reports.table()
    assert len(table.splitlines()) == 6 and "hangs.py" in table
    assert not reports.passed


def test_a_submission_that_raises_gets_its_line(tmp_path):
    (tmp_path / "broken.py").write_text("import torch\n\nx = 1 / 0\n")
    report = vaelab.check(tmp_path / "broken.py", "losses", train=False, time_limit=60)
    first = report.checks[0]
    assert first.id == "submission.runs" and "ZeroDivisionError" in first.message and "(line 3)" in first.message
