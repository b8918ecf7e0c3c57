"""`python -m vaelab` and the `vaelab` command: Ctrl-C while the libraries load ends quietly too.

While torch loads (a second or two), Ctrl-C is noted rather than raised: raised inside its import
it can be swallowed there (the command then runs on), or end in a traceback.
"""

import os
import signal
import sys
import threading

INTERRUPTED = 130  # 128 + SIGINT


def main() -> int:
    noted = []
    main_thread = threading.current_thread() is threading.main_thread()
    if main_thread:
        previous = signal.signal(signal.SIGINT, lambda signum, _frame: noted.append(signum))
    try:
        from vaelab import cli

        if (text := cli.cached(sys.argv[1:])) is not None:  # a subcommand's --help, kept: no PyTorch to wait for
            print(text, end="")
            return 0
        if cli.chosen_command(sys.argv[1:]):  # a subcommand will need PyTorch: load it here, where Ctrl-C waits
            import torch  # noqa: F401  (`vaelab --help` skips it and answers at once)
    finally:
        if main_thread:
            signal.signal(signal.SIGINT, previous)
    code = interrupted() if noted else cli.main()
    if code == INTERRUPTED:  # leave now: had Ctrl-C landed inside code that an extension ran through
        sys.stdout.flush()  # PyRun_String, Python would still end the process by SIGINT at exit
        sys.stderr.flush()
        os._exit(code)
    return code


def interrupted() -> int:
    print("vaelab: interrupted", file=sys.stderr)
    return INTERRUPTED


if __name__ == "__main__":
    raise SystemExit(main())
