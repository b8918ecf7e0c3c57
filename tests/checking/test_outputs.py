"""What `vaelab check` writes: Gradescope's results.json and JUnit XML in their documented shapes, a table,
JSON, and the exit status (0 only when every check passes)."""

import json
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

import vaelab
from vaelab.checking import render

STUDENTS = Path(__file__).resolve().parent / "students"


@pytest.fixture(scope="module")
def reports():
    return [
        vaelab.check(STUDENTS / n, "mlp", isolate=False, train=False) for n in ("mlp_correct.py", "kl_wrong_sign.py")
    ]


def test_gradescope_results_have_the_documented_shape(reports):
    """https://gradescope-autograders.readthedocs.io/en/latest/specs/: top-level score and tests, each
    test with name, score, max_score, status passed/failed and output."""
    for report in reports:
        results = json.loads(render([report], "gradescope"))
        assert set(results) == {"score", "execution_time", "output", "tests"}  # top-level keys the spec names
        assert isinstance(results["score"], (int, float)) and isinstance(results["execution_time"], (int, float))
        assert isinstance(results["output"], str) and results["tests"]
        for test in results["tests"]:
            assert set(test) == {"name", "score", "max_score", "status", "output"}
            assert test["status"] in ("passed", "failed") and 0 <= test["score"] <= test["max_score"]
        assert results["score"] == sum(t["score"] for t in results["tests"])
    wrong = json.loads(render([reports[1]], "gradescope"))
    failed = [t for t in wrong["tests"] if t["status"] == "failed"]
    assert [t["name"] for t in failed] == ["kl_divergence.value"] and "wrong sign" in failed[0]["output"]
    assert wrong["score"] == sum(t["max_score"] for t in wrong["tests"]) - 1


def test_junit_xml_has_suites_cases_and_failures(reports):
    root = ET.fromstring(render(reports, "junit"))
    assert root.tag == "testsuites"
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == ["mlp_correct.py", "kl_wrong_sign.py"]
    for suite, report in zip(suites, reports, strict=True):
        cases = suite.findall("testcase")
        assert int(suite.get("tests")) == len(cases) == len(report.checks)
        assert int(suite.get("failures")) == len([c for c in cases if c.find("failure") is not None])
        assert int(suite.get("skipped")) == len([c for c in cases if c.find("skipped") is not None]) == 1
        assert all(c.get("classname") == "vaelab.checking.mlp" and c.get("name") for c in cases)
    failures = [c for c in suites[1].findall("testcase") if c.find("failure") is not None]
    assert [c.get("name") for c in failures] == ["kl_divergence.value"]
    assert "wrong sign" in failures[0].find("failure").get("message")


def test_the_table_and_json(reports):
    table = render(reports, "table")
    assert "FAIL  kl_divergence.value" in table and "kl_wrong_sign.py" in table.splitlines()[-1]
    assert "<table>" in reports[1]._repr_html_() and "wrong sign" in reports[1]._repr_html_()
    body = json.loads(render(reports, "json"))
    assert [r["passed"] for r in body] == [True, False]
    with pytest.raises(vaelab.VaelabError, match="one submission"):
        render(reports, "gradescope")


def test_the_command_exits_0_only_when_every_check_passes(tmp_path):
    from conftest import vaelab_cli

    good = vaelab_cli("check", STUDENTS / "mlp_correct.py", "--exercise", "mlp", "--no-train")
    assert good.returncode == 0, good.stderr
    assert "ok    kl_divergence.value" in good.stdout
    out = tmp_path / "results.json"
    bad = vaelab_cli(
        "check",
        STUDENTS / "kl_wrong_sign.py",
        "--exercise",
        "mlp",
        "--no-train",
        "--format",
        "gradescope",
        "--out",
        out,
    )
    assert bad.returncode == 1 and json.loads(out.read_text())["tests"]
    renamed = vaelab_cli("check", STUDENTS / "mlp_correct.py", "--exercise", "mlp", "--names", "Encoder", "--no-train")
    assert renamed.returncode == 2 and "--names takes PIECE=NAME pairs" in renamed.stderr
