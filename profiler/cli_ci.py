"""The CI commands: ``stprof record``, ``stprof compare`` and ``stprof check``.

``record`` runs a command N times under one prepared collector and keeps
every run; ``compare`` judges two records (profiler.compare) and checks
budgets (profiler.budgets); ``check`` records with a baseline's settings and
compares in one step.  Exit statuses: 0 no regression, 1 regression, 2 bad
usage or unreadable input; 125/126/127 as for ``stprof run``.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from profiler.budgets import BudgetFile, check_budgets, load_budget
from profiler.cli import (
    add_identity_options,
    check_writable,
    command_of,
    credentials_of,
    natural_int,
    positive_int,
)
from profiler.compare import (
    Comparison,
    ComparisonRenderer,
    Threshold,
    check_comparable,
    compare_records,
)
from profiler.errors import InputError, UsageError
from profiler.model import Profile, write_text_atomically
from profiler.record import Record, Settings, new_record, record_runs

if TYPE_CHECKING:
    from profiler.target import Credentials

DEFAULT_REPEAT = 5
DEFAULT_WARMUP = 1

CI_EPILOG = """\
exit status: 0 no regression, 1 regression (or a budget exceeded), 2 bad usage
or unreadable/incomparable input; record and check: 125 collector unavailable,
126/127 command not executable/not found.
"""


def add_subcommands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register record, compare and check on the stprof command line."""
    _add_record(sub)
    _add_compare(sub)
    _add_check(sub)


# ------------------------------------------------------------------ parsers
def _add_record(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "record", help="run a command N times and save every run as a baseline",
        description="Run COMMAND --warmup + --repeat times under one collector (probes\n"
                    "loaded once) and save the --repeat kept runs as a record.",
        epilog=CI_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-o", "--output", metavar="FILE", required=True,
                        help="where to write the record (JSON, schema stprof-record/1)")
    _add_run_options(parser, collector_default="auto")
    parser.add_argument("--repeat", type=positive_int, default=DEFAULT_REPEAT, metavar="N",
                        help=f"runs to keep (default: {DEFAULT_REPEAT})")
    parser.add_argument("--warmup", type=natural_int, default=DEFAULT_WARMUP, metavar="K",
                        help=f"runs to make first and discard (default: {DEFAULT_WARMUP})")
    parser.add_argument("command", nargs=argparse.REMAINDER, metavar="-- COMMAND [ARGS...]")
    parser.set_defaults(func=cmd_record)


def _add_compare(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "compare", help="compare two records: exit 1 on a regression",
        description="Compare the runs of CURRENT with those of BASELINE, metric by metric.",
        epilog=CI_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("baseline", metavar="BASELINE", help="record made by stprof record")
    parser.add_argument("current", metavar="CURRENT", help="record to judge against it")
    _add_judging_options(parser)
    parser.set_defaults(func=cmd_compare)


def _add_check(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "check", help="record with a baseline's settings and compare, in one step",
        description="Run COMMAND (default: the baseline's) as the baseline was recorded\n"
                    "(repeat, warmup, collector) and compare the runs with it.",
        epilog=CI_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", metavar="FILE", required=True,
                        help="record made by stprof record")
    parser.add_argument("--update", action="store_true",
                        help="rewrite the baseline with the new runs and exit 0")
    parser.add_argument("-o", "--output", metavar="FILE",
                        help="also save the new runs as a record")
    _add_run_options(parser, collector_default=None)
    _add_judging_options(parser)
    parser.add_argument("command", nargs=argparse.REMAINDER, metavar="-- COMMAND [ARGS...]")
    parser.set_defaults(func=cmd_check)


def _add_run_options(parser: argparse.ArgumentParser, collector_default: str | None) -> None:
    from collectors import NAMES

    default = ("the baseline's" if collector_default is None
               else "auto: ebpf where it can run, else ptrace")
    group = parser.add_argument_group("tracing")
    group.add_argument("-c", "--collector", default=collector_default,
                       choices=("auto", *NAMES), help=f"how to trace (default: {default})")
    add_identity_options(group)


def _add_judging_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--budget", metavar="FILE",
                        help="TOML file of limits ([max] read.calls = 10, "
                             "total.syscall_ns = \"+10%%\"...)")
    parser.add_argument("--allow-collector-change", action="store_true",
                        help="compare records made by different collectors")
    group = parser.add_argument_group("thresholds (override the budget file's [tolerance])")
    group.add_argument("--count-tolerance", type=_fraction, metavar="PCT",
                       help="how far a count may leave the baseline's range (default: "
                            f"{_pct(Threshold().count_relative)})")
    group.add_argument("--time-threshold", type=_fraction, metavar="PCT",
                       help="smallest significant time change shown as slower/faster "
                            "(default: "
                            f"{_pct(Threshold().time_relative)})")
    group.add_argument("--fail-on-time", type=_fraction, metavar="PCT",
                       help="fail when a time is significantly slower by PCT or more "
                            "(default: slower times are shown, never fail)")
    group.add_argument("--alpha", type=_probability, metavar="P",
                       help=f"significance level of the rank test (default: {Threshold().alpha})")
    out = parser.add_argument_group("output (the verdict goes to stdout)")
    out.add_argument("--markdown", metavar="FILE",
                     help="write the comparison as Markdown (also appended to "
                          "$GITHUB_STEP_SUMMARY when set)")
    out.add_argument("--junit", metavar="FILE", help="write JUnit XML, one testcase a metric")
    out.add_argument("--json", metavar="FILE", help="write the whole comparison as JSON")


def _pct(fraction: float) -> str:
    """A percentage for argparse help, whose text is a %-format."""
    return f"{fraction:.0%}".replace("%", "%%")


def _fraction(text: str) -> float:
    """'10%' or '0.1' -> 0.1."""
    try:
        value = float(text[:-1]) / 100.0 if text.endswith("%") else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a percentage: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text!r}")
    return value


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must lie between 0 and 1: {text!r}")
    return value


# ----------------------------------------------------------------- commands
def cmd_record(args: argparse.Namespace) -> int:
    command = command_of(args)
    if not command:
        raise UsageError("no command given (usage: stprof record -o FILE [--repeat N] "
                         "-- COMMAND [ARGS...])")
    check_writable(args.output)
    settings = Settings(repeat=args.repeat, warmup=args.warmup,
                        requested_collector=args.collector)
    record = _record(command, args.collector, settings, credentials_of(args))
    record.save(args.output)
    _say(f"recorded {len(record.runs)} runs of {shlex.join(command)} with the "
         f"{record.collector} collector in {args.output}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    budget = load_budget(args.budget) if args.budget else None
    threshold = _threshold(args, budget)
    baseline = Record.load(args.baseline)
    current = Record.load(args.current)
    check_comparable(baseline, current, allow_collector_change=args.allow_collector_change,
                     baseline_source=args.baseline, current_source=args.current)
    comparison = _compare(baseline, current, threshold, budget, args.baseline, args.current)
    _emit(comparison, args)
    return comparison.exit_status


def cmd_check(args: argparse.Namespace) -> int:
    budget = load_budget(args.budget) if args.budget else None
    threshold = _threshold(args, budget)
    baseline = Record.load(args.baseline)
    check_writable(args.output, args.markdown, args.junit, args.json,
                   args.baseline if args.update else None)
    command = command_of(args) or baseline.command
    collector = args.collector or baseline.collector
    if not args.update:
        _refuse_other_run(baseline, command, collector, args)
    current = _record(command, collector, baseline.settings, credentials_of(args))
    if args.output:
        current.save(args.output)
    if args.update:
        return _replace_baseline(args.baseline, current)
    check_comparable(baseline, current, allow_collector_change=args.allow_collector_change,
                     baseline_source=args.baseline, current_source="this check")
    comparison = _compare(baseline, current, threshold, budget, args.baseline,
                          args.output or "this check")
    _emit(comparison, args)
    return comparison.exit_status


def _replace_baseline(path: str, current: Record) -> int:
    """--update: the new runs become the baseline, on purpose; never a failure."""
    current.save(path)
    _say(f"baseline {path} updated: {len(current.runs)} runs of "
         f"{shlex.join(current.command)} with the {current.collector} collector")
    return 0


def _refuse_other_run(baseline: Record, command: list[str], collector: str,
                      args: argparse.Namespace) -> None:
    """Refuse before running anything what could not be compared afterwards."""
    if command != baseline.command:
        raise InputError(f"{args.baseline}: recorded for another command "
                         f"({shlex.join(baseline.command)}, not {shlex.join(command)}); "
                         "pass --update to replace it")
    if collector not in ("auto", baseline.collector) and not args.allow_collector_change:
        raise InputError(f"{args.baseline}: recorded with the {baseline.collector} collector, "
                         f"not {collector} (pass --allow-collector-change to compare anyway)")


# ---------------------------------------------------------------- pieces
def _record(command: list[str], collector_name: str, settings: Settings,
            credentials: Credentials | None) -> Record:
    """Make ``settings.repeat`` runs of ``command`` (after the warm-up) and keep them."""
    from collectors import Options
    from profiler.cli import choose_collector
    from profiler.target import resolve_command

    resolve_command(command)
    collector_class = choose_collector(collector_name)
    options = Options(
        command=command,
        follow=settings.follow,
        credentials=credentials,
        kernel_stacks=settings.kernel_stacks,
    )
    runs = record_runs(collector_class, options, settings.repeat, settings.warmup,
                       on_run=_warn_on_failure)
    return new_record(command, collector_class.name, settings, runs)


def _warn_on_failure(index: int, profile: Profile) -> None:
    if profile.exit_status:
        _say(f"warning: run {index} exited with status {profile.exit_status}")


def _threshold(args: argparse.Namespace, budget: BudgetFile | None) -> Threshold:
    """Defaults, then the budget file's [tolerance], then the command line."""
    threshold = budget.threshold(Threshold()) if budget else Threshold()
    overrides = {
        "count_relative": args.count_tolerance,
        "time_relative": args.time_threshold,
        "alpha": args.alpha,
        "time_fail": args.fail_on_time,
    }
    return replace(threshold, **{k: v for k, v in overrides.items() if v is not None})


def _compare(baseline: Record, current: Record, threshold: Threshold,
             budget: BudgetFile | None, baseline_source: str, current_source: str) -> Comparison:
    comparison = compare_records(baseline, current, threshold, baseline_source, current_source)
    if budget is not None:
        comparison.budgets = check_budgets(budget.limits, baseline.runs, current.runs,
                                           threshold.alpha, source="budget")
    return comparison


def _emit(comparison: Comparison, args: argparse.Namespace) -> None:
    """The verdict on stdout; the files the user asked for; the job summary."""
    from reports.compare_json import CompareJsonRenderer
    from reports.compare_junit import CompareJunitRenderer
    from reports.compare_markdown import CompareMarkdownRenderer
    from reports.compare_text import CompareTextRenderer

    files: list[tuple[str | None, ComparisonRenderer]] = [
        (args.markdown, CompareMarkdownRenderer()),
        (args.junit, CompareJunitRenderer()),
        (args.json, CompareJsonRenderer()),
    ]
    for path, renderer in files:
        if path:
            write_text_atomically(Path(path), renderer.render(comparison))
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        _append(Path(summary), CompareMarkdownRenderer().render(comparison))
    sys.stdout.write(CompareTextRenderer().render(comparison))
    sys.stdout.flush()


def _append(path: Path, text: str) -> None:
    try:
        with path.open("a", encoding="utf-8") as stream:
            stream.write(text)
    except OSError as exc:
        raise InputError(f"{path}: cannot append the summary ({exc.strerror})") from None


def _say(message: str) -> None:
    print(f"stprof: {message}", file=sys.stderr)
