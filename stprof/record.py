"""``stprof record``: run a command N times and save every run as a baseline."""

from __future__ import annotations

import argparse
import shlex

from profiler.errors import UsageError, shown
from profiler.record import Settings
from stprof.ci import (
    DEFAULT_REPEAT,
    DEFAULT_WARMUP,
    EPILOG,
    add_run_options,
    record_command,
)
from stprof.history import add_record_db_options, open_history_for_record, store_record
from stprof.options import (
    Subparsers,
    check_writable,
    command_of,
    credentials_of,
    natural_int,
    positive_int,
    say,
)


def register(sub: Subparsers) -> None:
    parser = sub.add_parser(
        "record", help="run a command N times and save every run as a baseline",
        description="Run COMMAND --warmup + --repeat times under one collector (probes\n"
                    "loaded once) and save the --repeat kept runs as a record.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-o", "--output", metavar="FILE",
                        help="where to write the record (JSON, schema stprof-record/1); "
                             "-o, --db or both")
    add_run_options(parser, collector_default="auto")
    parser.add_argument("--repeat", type=positive_int, default=DEFAULT_REPEAT, metavar="N",
                        help=f"runs to keep (default: {DEFAULT_REPEAT})")
    parser.add_argument("--warmup", type=natural_int, default=DEFAULT_WARMUP, metavar="K",
                        help=f"runs to make first and discard (default: {DEFAULT_WARMUP})")
    add_record_db_options(parser)
    parser.add_argument("command", nargs=argparse.REMAINDER, metavar="-- COMMAND [ARGS...]")
    parser.set_defaults(execute=execute)


def execute(args: argparse.Namespace) -> int:
    command = command_of(args)
    if not command:
        raise UsageError("no command given (usage: stprof record -o FILE [--repeat N] "
                         "-- COMMAND [ARGS...])")
    if not args.output and not args.db:
        raise UsageError("where to? give -o FILE, --db FILE.sqlite or both")
    check_writable(args.output)
    history = open_history_for_record(args, command) if args.db else None
    settings = Settings(repeat=args.repeat, warmup=args.warmup,
                        requested_collector=args.collector)
    record = record_command(command, args.collector, settings, credentials_of(args))
    if history is not None:
        store_record(*history, record)
    if args.output:
        record.save(args.output)
        say(f"recorded {len(record.runs)} runs of {shlex.join(command)} with the "
            f"{record.collector} collector in {shown(args.output)}")
    return 0
