"""``stprof check``: record with a baseline's settings and compare, in one step."""

from __future__ import annotations

import argparse
import shlex

from profiler.budgets import load_budget
from profiler.compare import check_comparable
from profiler.errors import InputError, UsageError, shown
from profiler.record import Record
from stprof.ci import (
    EPILOG,
    add_judging_options,
    add_run_options,
    emit_comparison,
    judge,
    record_command,
    threshold_of,
)
from stprof.history import add_check_db_options, baseline_from_history
from stprof.options import Subparsers, check_writable, command_of, credentials_of, say


def register(sub: Subparsers) -> None:
    parser = sub.add_parser(
        "check", help="record with a baseline's settings and compare, in one step",
        description="Run COMMAND (default: the baseline's) as the baseline was recorded\n"
                    "(repeat, warmup, collector) and compare the runs with it.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", metavar="FILE",
                        help="record made by stprof record (or --db: a history)")
    parser.add_argument("--update", action="store_true",
                        help="rewrite the baseline with the new runs and exit 0")
    parser.add_argument("-o", "--output", metavar="FILE",
                        help="also save the new runs as a record")
    add_run_options(parser, collector_default=None)
    add_judging_options(parser)
    add_check_db_options(parser)
    parser.add_argument("command", nargs=argparse.REMAINDER, metavar="-- COMMAND [ARGS...]")
    parser.set_defaults(execute=execute)


def execute(args: argparse.Namespace) -> int:
    budget = load_budget(args.budget) if args.budget else None
    threshold = threshold_of(args, budget)
    if bool(args.baseline) == bool(args.db):
        raise UsageError("give one baseline: --baseline FILE or --db FILE.sqlite --name NAME")
    if args.db and args.update:
        raise UsageError("--update rewrites a --baseline file; a history grows with "
                         "`stprof record --db` instead")
    if args.db:
        baseline, source = baseline_from_history(args)
    else:
        baseline, source = Record.load(args.baseline), args.baseline
    check_writable(args.output, args.markdown, args.junit, args.json, args.html,
                   args.baseline if args.update else None)
    command = command_of(args) or baseline.command
    collector = args.collector or baseline.collector
    if not args.update:
        _refuse_other_run(baseline, command, collector, args, source)
    current = record_command(command, collector, baseline.settings, credentials_of(args))
    if args.output:
        current.save(args.output)
    if args.update:
        return _replace_baseline(args.baseline, current)
    check_comparable(baseline, current, allow_collector_change=args.allow_collector_change,
                     baseline_source=source, current_source="this check")
    comparison = judge(baseline, current, threshold, budget, source,
                       args.output or "this check")
    emit_comparison(comparison, args)
    return comparison.exit_status


def _replace_baseline(path: str, current: Record) -> int:
    """--update: the new runs become the baseline, on purpose; never a failure."""
    current.save(path)
    say(f"baseline {shown(path)} updated: {len(current.runs)} runs of "
        f"{shlex.join(current.command)} with the {current.collector} collector")
    return 0


def _refuse_other_run(baseline: Record, command: list[str], collector: str,
                      args: argparse.Namespace, source: str) -> None:
    """Refuse before running anything what could not be compared afterwards."""
    if command != baseline.command:
        raise InputError(f"{shown(source)}: recorded for another command "
                         f"({shlex.join(baseline.command)}, not {shlex.join(command)}); "
                         "pass --update to replace it")
    if collector not in ("auto", baseline.collector) and not args.allow_collector_change:
        raise InputError(f"{shown(source)}: recorded with the {baseline.collector} "
                         f"collector, not {collector} "
                         "(pass --allow-collector-change to compare anyway)")
