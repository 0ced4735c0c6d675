"""``stprof``: the parser of every subcommand, and one-line errors for all of them."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from profiler.errors import EXIT_UNAVAILABLE, StprofError
from profiler.version import stprof_version
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

class VersionAction(argparse.Action):
    """--version, whose version is looked up only when asked for: the package
    metadata costs a run tens of milliseconds of start-up."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: str | None = None) -> None:
        print(f"stprof {stprof_version()}")
        parser.exit()


SUBCOMMANDS = ("run", "report", "doctor", "record", "compare", "check", "history")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser of every subcommand, or with ``only`` of that one alone: each
    subcommand's module is imported only when registered (start-up time)."""
    parser = OneLineParser(
        prog="stprof",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action=VersionAction, nargs=0,
                        help="show stprof's version and exit")
    sub = parser.add_subparsers(dest="subcommand", metavar="COMMAND", parser_class=OneLineParser)
    sub.required = True
    for name in SUBCOMMANDS if only is None else (only,):
        importlib.import_module(f"stprof.{name}").register(sub)
    return parser


def subcommand_named(argv: Sequence[str]) -> str | None:
    """The subcommand argv names, when it comes first (``stprof run ...``): only it
    needs to be registered.  None for anything else (--help, --version, typos)."""
    return argv[0] if argv and argv[0] in SUBCOMMANDS else None


def main(argv: Sequence[str] | None = None) -> int:
    try:
        # building the parser imports the collectors and renderers: a Ctrl-C
        # then is as much an interruption as one during the run
        arguments = sys.argv[1:] if argv is None else list(argv)
        args = build_parser(subcommand_named(arguments)).parse_args(arguments)
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
