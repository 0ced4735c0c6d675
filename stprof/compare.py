"""``stprof compare``: judge two records, metric by metric (exit 1 on a regression).

Either side may also be a plain profile (``run --json``): it is a record of
one run.  The checks are the same: the same command, the same collector
(unless --allow-collector-change).  With --html, a refused pair still gets
its page, the refusal in place of the verdict.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from profiler.budgets import load_budget
from profiler.compare import check_comparable, compare_records
from profiler.errors import InputError
from profiler.model import SCHEMA as PROFILE_SCHEMA
from profiler.model import (
    Profile,
    load_json_text,
    read_input_file,
    write_text_atomically,
)
from profiler.record import Record, Settings
from stprof.ci import EPILOG, add_judging_options, emit_comparison, judge, threshold_of
from stprof.options import Subparsers, check_writable


def register(sub: Subparsers) -> None:
    parser = sub.add_parser(
        "compare", help="compare two records (or profiles): exit 1 on a regression",
        description="Compare the runs of CURRENT with those of BASELINE, metric by metric.\n"
                    "Each is a record (stprof record) or a profile (stprof run --json),\n"
                    "which counts as a record of one run.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("baseline", metavar="BASELINE",
                        help="record made by stprof record, or a profile")
    parser.add_argument("current", metavar="CURRENT", help="record or profile to judge against it")
    add_judging_options(parser)
    parser.set_defaults(execute=execute)


def execute(args: argparse.Namespace) -> int:
    check_writable(args.markdown, args.junit, args.json, args.html)
    budget = load_budget(args.budget) if args.budget else None
    threshold = threshold_of(args, budget)
    baseline = load_side(args.baseline)
    current = load_side(args.current)
    try:
        check_comparable(baseline, current, allow_collector_change=args.allow_collector_change,
                         baseline_source=args.baseline, current_source=args.current)
    except InputError as refusal:
        if args.html:
            _write_refused_page(baseline, current, args, refusal)
        raise
    comparison = judge(baseline, current, threshold, budget, args.baseline, args.current)
    emit_comparison(comparison, args)
    return comparison.exit_status


def load_side(path: str) -> Record:
    """A record, or a profile as a record of its one run."""
    data = load_json_text(read_input_file(path), path)
    if isinstance(data, dict) and data.get("schema") == PROFILE_SCHEMA:
        return record_of(Profile.from_dict(data, path))
    return Record.from_dict(data, path)


def record_of(profile: Profile) -> Record:
    stacks = profile.stacks.mode if profile.stacks is not None else "off"
    settings = Settings(repeat=1, warmup=0, requested_collector=profile.collector,
                        kernel_stacks=stacks)
    return Record(command=list(profile.command), collector=profile.collector,
                  settings=settings, runs=[profile], host=dict(profile.host))


def _write_refused_page(baseline: Record, current: Record, args: argparse.Namespace,
                        refusal: InputError) -> None:
    from reports.html_compare import CompareHtmlRenderer

    comparison = compare_records(baseline, current, threshold_of(args, None),
                                 args.baseline, args.current)
    page = CompareHtmlRenderer(refusal=refusal.one_line()).render(comparison)
    write_text_atomically(Path(args.html), page)
