"""Each subcommand's `--help`, rendered once and kept in help.json, so `vaelab train --help` answers at
once: the flags come from the settings dataclasses, whose modules load PyTorch (seconds), which a
help text does not need. The text is the live parser's, rendered 100 columns wide; a test renders
it again and fails when the two differ (then: `python -m vaelab.cli.cached_help` writes it anew).
"""

import json
import os
from pathlib import Path

TABLE = Path(__file__).with_name("help.json")
WIDTH = "100"


def cached(argv: list[str]) -> str | None:
    """The help text `argv` (SUBCOMMAND ... -h|--help) asks for, when help.json holds it."""
    from vaelab.cli.main import chosen_command

    name = chosen_command(argv)
    if name is None or not {"-h", "--help"} & set(argv[argv.index(name) + 1 :]):
        return None
    try:
        return json.loads(TABLE.read_text()).get(name)
    except (OSError, ValueError):
        return None


def render() -> dict[str, str]:
    """{subcommand: its help text} from the live parsers (this imports what the flags need)."""
    from vaelab.cli.help import HELP
    from vaelab.cli.main import build_parser

    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = WIDTH  # argparse wraps to the terminal's width: one width for the table
    try:
        texts = {}
        for name in HELP:
            parser = build_parser([name])
            sub = next(a for a in parser._subparsers._group_actions if a.choices)
            texts[name] = sub.choices[name].format_help()
        return texts
    finally:
        if previous is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = previous


if __name__ == "__main__":
    TABLE.write_text(json.dumps(render(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {TABLE}")
