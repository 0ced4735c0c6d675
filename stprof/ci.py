"""What ``record``, ``compare`` and ``check`` share: their options, recording
runs under one collector, judging two records and writing the verdict.

Exit statuses: 0 no regression, 1 regression, 2 bad usage or unreadable
input; 125/126/127 as for ``stprof run``.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from profiler.budgets import BudgetFile, check_budgets
from profiler.compare import Comparison, ComparisonRenderer, Threshold, compare_records
from profiler.errors import InputError, shown
from profiler.model import Profile, write_text_atomically
from profiler.record import Record, Settings, new_record
from stprof.options import add_identity_options, choose_collector, say

if TYPE_CHECKING:
    from collections.abc import Callable

    from collectors import Collector, Options
    from profiler.target import Credentials

DEFAULT_REPEAT = 5
DEFAULT_WARMUP = 1

EPILOG = """\
exit status: 0 no regression, 1 regression (or a budget exceeded), 2 bad usage
or unreadable/incomparable input; record and check: 125 collector unavailable,
126/127 command not executable/not found.
"""


# ------------------------------------------------------------------ options
def add_run_options(parser: argparse.ArgumentParser, collector_default: str | None) -> None:
    from collectors import NAMES

    default = ("the baseline's" if collector_default is None
               else "auto: ebpf where it can run, else ptrace")
    group = parser.add_argument_group("tracing")
    group.add_argument("-c", "--collector", default=collector_default,
                       choices=("auto", *NAMES), help=f"how to trace (default: {default})")
    add_identity_options(group)


def add_judging_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--budget", metavar="FILE",
                        help="TOML file of limits ([max] read.calls = 10, "
                             "total.syscall_ns = \"+10%%\"...)")
    parser.add_argument("--allow-collector-change", action="store_true",
                        help="compare records made by different collectors")
    group = parser.add_argument_group("thresholds (override the budget file's [tolerance])")
    group.add_argument("--count-tolerance", type=fraction, metavar="PCT",
                       help="how far a count may leave the baseline's range (default: "
                            f"{_pct(Threshold().count_relative)})")
    group.add_argument("--time-threshold", type=fraction, metavar="PCT",
                       help="smallest significant time change shown as slower/faster "
                            "(default: "
                            f"{_pct(Threshold().time_relative)})")
    group.add_argument("--fail-on-time", type=fraction, metavar="PCT",
                       help="fail when a time is significantly slower by PCT or more "
                            "(default: slower times are shown, never fail)")
    group.add_argument("--alpha", type=probability, metavar="P",
                       help=f"significance level of the rank test (default: {Threshold().alpha})")
    out = parser.add_argument_group("output (the verdict goes to stdout)")
    out.add_argument("--markdown", metavar="FILE",
                     help="write the comparison as Markdown (also appended to "
                          "$GITHUB_STEP_SUMMARY when set)")
    out.add_argument("--junit", metavar="FILE", help="write JUnit XML, one testcase a metric")
    out.add_argument("--json", metavar="FILE", help="write the whole comparison as JSON")
    out.add_argument("--html", metavar="FILE",
                     help="write the comparison as one self-contained HTML page")


def _pct(value: float) -> str:
    """A percentage for argparse help, whose text is a %-format."""
    return f"{value:.0%}".replace("%", "%%")


def fraction(text: str) -> float:
    """An argparse type: '10%' or '0.1' -> 0.1."""
    try:
        value = float(text[:-1]) / 100.0 if text.endswith("%") else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a percentage: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text!r}")
    return value


def probability(text: str) -> float:
    """An argparse type: a number strictly between 0 and 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must lie between 0 and 1: {text!r}")
    return value


# ------------------------------------------------------------------ running
def record_command(command: list[str], collector_name: str, settings: Settings,
                   credentials: Credentials | None) -> Record:
    """Make ``settings.repeat`` runs of ``command`` (after the warm-up) and keep them."""
    from collectors import Options
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


def record_runs(
    collector_class: type[Collector],
    options: Options,
    repeat: int,
    warmup: int = 0,
    on_run: Callable[[int, Profile], None] | None = None,
) -> list[Profile]:
    """Run the command ``warmup + repeat`` times under one prepared collector.

    The probes are loaded once (one ``with``); each ``run()`` starts from zero.
    The warm-up runs are discarded.  ``on_run(index, profile)`` is told about
    every kept run (index from 1), e.g. to show progress.
    """
    kept: list[Profile] = []
    with collector_class(options) as collector:
        for _ in range(warmup):
            collector.run()
        for index in range(1, repeat + 1):
            profile = collector.run()
            kept.append(profile)
            if on_run is not None:
                on_run(index, profile)
    return kept


def _warn_on_failure(index: int, profile: Profile) -> None:
    if profile.exit_status:
        say(f"warning: run {index} exited with status {profile.exit_status}")


# ------------------------------------------------------------------ judging
def threshold_of(args: argparse.Namespace, budget: BudgetFile | None) -> Threshold:
    """Defaults, then the budget file's [tolerance], then the command line."""
    threshold = budget.threshold(Threshold()) if budget else Threshold()
    overrides = {
        "count_relative": args.count_tolerance,
        "time_relative": args.time_threshold,
        "alpha": args.alpha,
        "time_fail": args.fail_on_time,
    }
    return replace(threshold, **{k: v for k, v in overrides.items() if v is not None})


def judge(baseline: Record, current: Record, threshold: Threshold,
          budget: BudgetFile | None, baseline_source: str, current_source: str) -> Comparison:
    comparison = compare_records(baseline, current, threshold, baseline_source, current_source)
    if budget is not None:
        comparison.budgets = check_budgets(budget.limits, baseline.runs, current.runs,
                                           threshold.alpha, source="budget")
    return comparison


def emit_comparison(comparison: Comparison, args: argparse.Namespace) -> None:
    """The verdict on stdout; the files the user asked for; the job summary."""
    from reports.compare_json import CompareJsonRenderer
    from reports.compare_junit import CompareJunitRenderer
    from reports.compare_markdown import CompareMarkdownRenderer
    from reports.compare_text import CompareTextRenderer
    from reports.html_compare import CompareHtmlRenderer

    files: list[tuple[str | None, ComparisonRenderer]] = [
        (args.markdown, CompareMarkdownRenderer()),
        (args.junit, CompareJunitRenderer()),
        (args.json, CompareJsonRenderer()),
        (args.html, CompareHtmlRenderer()),
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
        raise InputError(f"{shown(path)}: cannot append the summary ({exc.strerror})") from None
