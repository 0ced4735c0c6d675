"""``stprof``: the parser of every subcommand, and one-line errors for all of them."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from profiler.errors import EXIT_UNAVAILABLE, StprofError
from profiler.version import stprof_version
from stprof import check, compare, doctor, history, record, report, run
from stprof.options import OneLineParser

DESCRIPTION = """\
Profile a command's syscalls and traps on the real kernel: how much of its
system time its syscalls explain, and where the rest went.

  stprof run -- dd if=/dev/zero of=/dev/null bs=10M count=1
"""

EPILOG = """\
exit status: `run` exits with the command's status (128+N when signal N
killed it); 2 bad usage or unreadable input; 125 stprof cannot work here
(no collector, not root, no bcc, no headers); 126 command not executable;
127 command not found. `compare`/`check`: 0 no regression, 1 regression, 2 bad input;
`history`: 0, or 2 bad input.
"""

SUBCOMMANDS = (run, report, doctor, record, compare, check, history)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="stprof",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"stprof {stprof_version()}")
    sub = parser.add_subparsers(dest="subcommand", metavar="COMMAND", parser_class=OneLineParser)
    sub.required = True
    for module in SUBCOMMANDS:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        # building the parser imports the collectors and renderers: a Ctrl-C
        # then is as much an interruption as one during the run
        args = build_parser().parse_args(argv)
        status: int = args.execute(args)
        return status
    except StprofError as exc:
        print(f"stprof: {exc.one_line()}", file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:
        print("stprof: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # a bug: one line, the traceback only on request
        if os.environ.get("STPROF_DEBUG"):
            raise
        print(f"stprof: internal error: {type(exc).__name__}: {exc} "
              "(set STPROF_DEBUG=1 for the traceback)", file=sys.stderr)
        return EXIT_UNAVAILABLE
