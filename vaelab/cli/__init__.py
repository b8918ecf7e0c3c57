"""The command line: `vaelab COMMAND ...`, one subcommand per job.

    main.py    the parser, and one `vaelab: error:` line for every failure   (private to this folder)
    make.py    the commands that make runs: train, demo, sweep              (private)
    read.py    the commands that read: data, summary, sample, report, compare, evaluate, export, serve (private)
    grading.py the command that checks students' code: check               (private)
    flags.py   flags derived from the settings dataclasses                   (private)
    help.py    one line per subcommand, for `vaelab --help`                  (private)
    cached_help.py  each subcommand's --help kept in help.json, answered without PyTorch

Modules outside this folder import from here only; the tests check it.
"""

from vaelab.cli.main import build_parser, chosen_command, main


def cached(argv: list[str]) -> str | None:
    """A subcommand's --help from help.json (vaelab/cli/cached_help.py), or None. Imported when
    called, so `python -m vaelab.cli.cached_help` runs that module once, as __main__."""
    from vaelab.cli.cached_help import cached as kept

    return kept(argv)


__all__ = ["build_parser", "cached", "chosen_command", "main"]
