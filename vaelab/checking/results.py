"""A check's outcome and its outputs: a table (text in a terminal, HTML in Jupyter), JSON, Gradescope's
results.json and JUnit XML; a rubric that chooses the checks and their points.

Gradescope's format (https://gradescope-autograders.readthedocs.io/en/latest/specs/): a JSON object
with "score", "execution_time", "output" and "tests", each test with "name", "score", "max_score",
"status" ("passed" or "failed") and "output". JUnit XML: <testsuites> of <testsuite name tests
failures errors skipped time>, each <testcase classname name time> holding a <failure message>,
<error message> or <skipped/> when it did not pass.
"""

import html
import json
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from xml.etree import ElementTree as ET

from vaelab.errors import VaelabError

STATUSES = ("pass", "fail", "error", "skip")
MARK = {"pass": "ok", "fail": "FAIL", "error": "ERROR", "skip": "skip"}


@dataclass
class Check:
    """One check: its id (piece.aspect), whether it passed, and what to do about it."""

    id: str
    status: str  # one of STATUSES
    message: str
    points: float = 1.0

    @property
    def passed(self) -> bool:
        return self.status == "pass"

    @property
    def score(self) -> float:
        return self.points if self.passed else 0.0


@dataclass(repr=False)
class Report:
    """Every check of one submission against one exercise.

    Examples:
        >>> report = vaelab.check("my_vae.py", exercise="mlp")
        >>> report.passed, report.score, report.max_score
        (True, 11.0, 11.0)
    """

    submission: str
    exercise: str
    checks: list[Check] = field(default_factory=list)
    training: dict = field(default_factory=dict)
    seconds: float = 0.0
    figures: dict = field(default_factory=dict)  # name -> PNG as base64: the latent scatter and manifold

    @property
    def passed(self) -> bool:
        """True when every counted check passed (skipped ones do not count)."""
        return all(c.status in ("pass", "skip") for c in self.checks) and any(c.passed for c in self.checks)

    @property
    def score(self) -> float:
        return sum(c.score for c in self.counted)

    @property
    def max_score(self) -> float:
        return sum(c.points for c in self.counted)

    @property
    def counted(self) -> list[Check]:
        return [c for c in self.checks if c.status != "skip"]

    def failed(self) -> list[str]:
        """The ids of the checks that did not pass (failed or raised)."""
        return [c.id for c in self.checks if c.status in ("fail", "error")]

    def table(self, only_failed: bool = False) -> str:
        """One line per check (`only_failed`: only those that did not pass)."""
        width = max([len(c.id) for c in self.checks] + [5])
        lines = [f"{self.submission}: exercise {self.exercise}, {self.score:g}/{self.max_score:g} points"]
        for c in self.checks:
            if only_failed and c.status not in ("fail", "error"):
                continue
            lines.append(f"  {MARK[c.status]:<5} {c.id:<{width}}  {c.message}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()

    def __repr__(self) -> str:
        points = f"{self.score:g}/{self.max_score:g}"
        return f"<Report {self.submission}, exercise {self.exercise}: {points}, not passed {self.failed()}>"

    def _repr_html_(self) -> str:
        colours = {"pass": "#1a7f37", "fail": "#cf222e", "error": "#cf222e", "skip": "#6e7781"}
        rows = "".join(
            f"<tr><td style='color:{colours[c.status]};font-weight:bold'>{MARK[c.status]}</td>"
            f"<td><code>{html.escape(c.id)}</code></td><td style='text-align:left'>{html.escape(c.message)}</td></tr>"
            for c in self.checks
        )
        head = html.escape(f"{self.submission}: exercise {self.exercise}, {self.score:g}/{self.max_score:g} points")
        pictures = "".join(
            f"<p><img alt='{name}' src='data:image/png;base64,{data}'></p>" for name, data in self.figures.items()
        )
        return f"<div><b>{head}</b><table>{rows}</table>{pictures}</div>"

    def to_dict(self) -> dict:
        return {
            "submission": self.submission,
            "exercise": self.exercise,
            "passed": self.passed,
            "score": self.score,
            "max_score": self.max_score,
            "seconds": round(self.seconds, 2),
            "training": self.training,
            "checks": [asdict(c) for c in self.checks],
            "figures": self.figures,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Report":
        checks = [Check(**c) for c in d["checks"]]
        return cls(
            d["submission"], d["exercise"], checks, d.get("training", {}), d.get("seconds", 0.0), d.get("figures", {})
        )

    def gradescope(self) -> dict:
        tests = [
            {
                "name": c.id,
                "score": c.score,
                "max_score": c.points,
                "status": "passed" if c.passed else "failed",
                "output": c.message,
            }
            for c in self.counted
        ]
        return {
            "score": self.score,
            "execution_time": round(self.seconds, 2),
            "output": f"vaelab check, exercise {self.exercise}: {self.score:g}/{self.max_score:g}",
            "tests": tests,
        }

    def junit_suite(self) -> ET.Element:
        suite = ET.Element(
            "testsuite",
            name=self.submission,
            tests=str(len(self.checks)),
            failures=str(sum(c.status == "fail" for c in self.checks)),
            errors=str(sum(c.status == "error" for c in self.checks)),
            skipped=str(sum(c.status == "skip" for c in self.checks)),
            time=f"{self.seconds:.2f}",
        )
        for c in self.checks:
            case = ET.SubElement(suite, "testcase", classname=f"vaelab.checking.{self.exercise}", name=c.id, time="0")
            if c.status in ("fail", "error"):
                ET.SubElement(case, "failure" if c.status == "fail" else "error", message=c.message).text = c.message
            elif c.status == "skip":
                ET.SubElement(case, "skipped", message=c.message)
        return suite


def render(reports: list[Report], fmt: str) -> str:
    """The reports of one or more submissions as text: table, json, gradescope (one submission) or junit."""
    if fmt == "table":  # a folder: what did not pass for each submission, then one line each
        if len(reports) == 1:
            return reports[0].table()
        return "\n\n".join([r.table(only_failed=True) for r in reports] + [summary_table(reports)])
    if fmt == "json":
        body = [r.to_dict() for r in reports]
        return json.dumps(body[0] if len(body) == 1 else body, indent=1)
    if fmt == "gradescope":
        if len(reports) != 1:
            raise VaelabError("--format gradescope writes one submission's results.json: give one file, not a folder")
        return json.dumps(reports[0].gradescope(), indent=1)
    if fmt == "junit":
        root = ET.Element("testsuites")
        root.extend(r.junit_suite() for r in reports)
        return ET.tostring(root, encoding="unicode", xml_declaration=True)
    raise VaelabError(f"--format must be one of table, json, gradescope, junit; not {fmt!r}")


def summary_table(reports: list[Report]) -> str:
    """One line per submission: score, and the checks it did not pass."""
    width = max(len(r.submission) for r in reports)
    lines = [f"{'submission':<{width}}  {'score':>9}  not passed"]
    for r in reports:
        lines.append(f"{r.submission:<{width}}  {r.score:>4g}/{r.max_score:<4g}  {', '.join(r.failed()) or '-'}")
    return "\n".join(lines)


# ---- rubric ------------------------------------------------------------------------------------------


def read_rubric(path) -> dict[str, float]:
    """{check id or piece: points} from a JSON or TOML file: {"points": {"kl_divergence": 2, ...}}
    (or the mapping at the top level). A piece's points are shared by its checks."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (OSError, ValueError) as e:
        raise VaelabError(f"cannot read the rubric {path} ({e}): give a JSON or TOML file of check: points") from None
    points = data.get("points", data) if isinstance(data, dict) else None
    if not isinstance(points, dict) or not all(isinstance(v, (int, float)) for v in points.values()):
        raise VaelabError(f'the rubric {path} must map check ids to points, e.g. {{"points": {{"kl_divergence": 2}}}}')
    return {str(k): float(v) for k, v in points.items()}


def apply_rubric(report: Report, rubric: dict[str, float]) -> Report:
    """Keep the checks the rubric names (by id, or by piece: the part before the dot) with their points;
    a check it names that did not run (the submission crashed first) counts as failed, so every
    submission is marked out of the same total. The submission's own errors stay, at 0 points."""
    kept = []
    for c in report.checks:
        piece = c.id.split(".")[0]
        if c.id in rubric:
            kept.append(Check(c.id, c.status, c.message, rubric[c.id]))
        elif piece in rubric:
            share = sum(1 for d in report.checks if d.id.split(".")[0] == piece and d.id not in rubric)
            kept.append(Check(c.id, c.status, c.message, rubric[piece] / share))
        elif piece == "submission":
            kept.append(Check(c.id, c.status, c.message, 0.0))
    seen = {c.id for c in kept} | {c.id.split(".")[0] for c in kept}
    for key, points in rubric.items():
        if key not in seen:
            kept.append(Check(key, "fail", "not checked: the submission did not get this far", points))
    return Report(report.submission, report.exercise, kept, report.training, report.seconds, report.figures)


class Reports(list):
    """The reports of a folder of submissions: one table in a terminal or in Jupyter.

    Examples:
        >>> reports = vaelab.check("submissions/", exercise="conv")
        >>> print(reports.table())
    """

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self)

    def table(self) -> str:
        return summary_table(self)

    def __str__(self) -> str:
        return self.table()

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td><code>{html.escape(r.submission)}</code></td><td>{r.score:g}/{r.max_score:g}</td>"
            f"<td style='text-align:left'>{html.escape(', '.join(r.failed()) or '-')}</td></tr>"
            for r in self
        )
        return f"<table><tr><th>submission</th><th>score</th><th>not passed</th></tr>{rows}</table>"
