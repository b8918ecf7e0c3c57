"""`vaelab check`: a student's file, notebook or a teacher's folder of them against an exercise."""

from pathlib import Path

from vaelab.cli import flags
from vaelab.cli.help import HELP

FORMATS = ("table", "json", "gradescope", "junit")


def add_check_parser(sub) -> None:
    from vaelab.checking import EXERCISES

    p = sub.add_parser("check", help=HELP["check"])
    p.add_argument("source", help="a .py file, a notebook (.ipynb), or a folder of them (one per student)")
    p.add_argument("--exercise", required=True, choices=tuple(EXERCISES), help="the exercise the code answers")
    p.add_argument("--rubric", help="a JSON or TOML file of {check id or piece: points}: only those checks count")
    p.add_argument("--format", default="table", choices=FORMATS, help="table, json, gradescope (results.json) or junit")
    p.add_argument("--out", help="write the result to this file instead of the terminal")
    p.add_argument(
        "--names", default="", help="your names for the pieces, comma separated: Encoder=MyEncoder,kl_divergence=kl"
    )
    p.add_argument("--no-train", action="store_true", help="skip the short training against the reference band")
    p.add_argument("--time-limit", type=float, default=180.0, help="seconds per submission (default: 180)")
    p.add_argument("--memory-limit", type=int, default=4096, help="MB of memory per submission (default: 4096)")
    p.set_defaults(handler=flags.command(cmd_check))


def cmd_check(args) -> int:
    from vaelab.checking import check, render
    from vaelab.errors import VaelabError

    names = {}
    for pair in filter(None, args.names.split(",")):
        piece, sep, name = pair.partition("=")
        if not sep:
            raise VaelabError(f"--names takes PIECE=NAME pairs, comma separated; got {pair!r}")
        names[piece.strip()] = name.strip()
    result = check(
        args.source,
        args.exercise,
        names=names or None,
        rubric=args.rubric,
        train=not args.no_train,
        time_limit=args.time_limit,
        memory_mb=args.memory_limit,
        figures=False,  # pictures are for a notebook's table
    )
    reports = list(result) if isinstance(result, list) else [result]
    text = render(reports, args.format)
    if args.out:
        Path(args.out).write_text(text + "\n")
        print(f"wrote {args.out}")
    else:
        print(text)
    return 0 if all(r.passed for r in reports) else 1
