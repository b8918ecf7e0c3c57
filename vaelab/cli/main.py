"""The `vaelab` command: the parser of every subcommand, and one line for every failure.

Every subcommand follows one convention: `add_NAME_parser` declares its flags (those of settings
come from the settings dataclasses, through flags.py), and `cmd_NAME` calls one library function
and prints what it returns (make.py: the commands that make runs; read.py: those that read them).
The library never parses a flag or prints a result. Library modules (and with them PyTorch) are
imported inside the commands, and only the chosen subcommand's flags are built, so `vaelab --help`
answers at once.
"""

import argparse
import os
import sys

from vaelab.cli import grading, make, read
from vaelab.cli.help import HELP
from vaelab.errors import VaelabError
from vaelab.log import verbosity

SUBCOMMANDS = (
    read.add_data_parser,
    read.add_summary_parser,
    make.add_train_parser,
    read.add_sample_parser,
    read.add_report_parser,
    read.add_compare_parser,
    read.add_serve_parser,
    read.add_evaluate_parser,
    make.add_sweep_parser,
    read.add_export_parser,
    make.add_demo_parser,
    grading.add_check_parser,
)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser with every subcommand's flags, or, given the command line, only its subcommand's
    (the others are listed with their help line): building train's flags imports PyTorch."""
    import vaelab

    parser = argparse.ArgumentParser(
        prog="vaelab", description="Train, evaluate and explore VAEs on small image data sets."
    )
    parser.add_argument("--version", action="version", version=f"vaelab {vaelab.__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chosen = None if argv is None else chosen_command(argv)
    for add in SUBCOMMANDS:
        name = add.__name__.removeprefix("add_").removesuffix("_parser")
        if argv is None or name == chosen:
            add(sub)
            quiet = sub.choices[name].add_mutually_exclusive_group()
            quiet.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only, no line per epoch")
            quiet.add_argument("-v", "--verbose", action="store_true", help="more detail: what vaelab chose and why")
        else:
            sub.add_parser(name, help=HELP[name])
    return parser


def chosen_command(argv: list[str]) -> str | None:
    """The subcommand the command line names, if any (the top level takes no option with a value)."""
    return next((a for a in argv if not a.startswith("-")), None)


def main(argv: list[str] | None = None) -> int:
    """Run the command line `argv` (default: this process's); returns the exit status."""
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]  # paths given as Path objects too
    try:
        args = build_parser(argv).parse_args(argv)  # its values' problems name flags (flags.value_parser)
        args.given = getattr(args, "given", set())  # flags.record_given: what the command line gave
        args.argv = argv
        verbose = 0 if getattr(args, "quiet", False) else 2 if getattr(args, "verbose", False) else 1
        with verbosity(verbose):  # the handler names flags, not keywords (flags.command)
            code = args.handler(args) or 0
        sys.stdout.flush()  # a closed pipe shows here, not at exit
        return code
    except VaelabError as e:
        if hasattr(e, "exit_code") and not main_process():  # a stop: rank 0 says it once
            return e.exit_code
        return fail(str(e), getattr(e, "exit_code", 2))
    except KeyboardInterrupt:  # before training began, or outside it: nothing to save
        print("vaelab: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `vaelab train ... | head`: whatever reads the output has gone
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return fail(
            "the output was closed before the command finished (broken pipe, as with `| head`); "
            "send it to a file or a pager instead",
            141,
        )
    except MemoryError:
        return fail(
            "out of memory: use smaller settings (a smaller model, --batch-size, -n or "
            "--eval-batch-size), or a machine with more memory"
        )
    except OSError as e:
        return fail(
            f"{e.filename or 'a file'}: {e.strerror or e}: check that the path exists, is "
            f"readable or writable as needed, and that the disk has room"
        )
    except Exception as e:  # a bug: one line instead of a traceback, which VAELAB_TRACEBACK=1 shows
        if os.environ.get("VAELAB_TRACEBACK"):
            raise
        return fail(
            f"internal error ({type(e).__name__}: {e}); this is a bug in vaelab: please report it "
            f"with the command line (VAELAB_TRACEBACK=1 shows where it happened)",
            70,
        )


def main_process() -> bool:
    """Whether this process speaks for the command: the only one, or rank 0 of several."""
    from vaelab.device import env_rank

    return env_rank() == 0


def fail(message: str, code: int = 2) -> int:
    print(f"vaelab: error: {message}", file=sys.stderr)
    return code
