"""``stprof compare``: judge two records, metric by metric (exit 1 on a regression)."""

from __future__ import annotations

import argparse

from profiler.budgets import load_budget
from profiler.compare import check_comparable
from profiler.record import Record
from stprof.ci import EPILOG, add_judging_options, emit_comparison, judge, threshold_of
from stprof.options import Subparsers, check_writable


def register(sub: Subparsers) -> None:
    parser = sub.add_parser(
        "compare", help="compare two records: exit 1 on a regression",
        description="Compare the runs of CURRENT with those of BASELINE, metric by metric.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("baseline", metavar="BASELINE", help="record made by stprof record")
    parser.add_argument("current", metavar="CURRENT", help="record to judge against it")
    add_judging_options(parser)
    parser.set_defaults(execute=execute)


def execute(args: argparse.Namespace) -> int:
    check_writable(args.markdown, args.junit, args.json)
    budget = load_budget(args.budget) if args.budget else None
    threshold = threshold_of(args, budget)
    baseline = Record.load(args.baseline)
    current = Record.load(args.current)
    check_comparable(baseline, current, allow_collector_change=args.allow_collector_change,
                     baseline_source=args.baseline, current_source=args.current)
    comparison = judge(baseline, current, threshold, budget, args.baseline, args.current)
    emit_comparison(comparison, args)
    return comparison.exit_status
