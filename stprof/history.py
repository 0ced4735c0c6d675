"""``stprof history`` and the ``--db`` options of ``record`` and ``check``.

The history (profiler/history.py) keeps every recorded run per commit;
``record --db`` adds to it, ``check --db`` draws its baseline from it, and
``history`` shows a workload's metrics per commit, with the commits where a
metric's level changed (profiler/changepoint.py), as a table and as charts.
"""

from __future__ import annotations

import argparse
import os
import subprocess
from pathlib import Path

from profiler.changepoint import Change, StepRule, change_points
from profiler.compare import Kind, Threshold
from profiler.errors import UsageError
from profiler.history import HistoryStore, Series, Where
from profiler.model import write_text_atomically
from profiler.record import Record
from stprof.ci import fraction
from stprof.options import Subparsers, check_writable, say

DEFAULT_METRICS = ("total.calls", "total.syscall_ns", "faults.count")
DEFAULT_BRANCH = "main"


# ------------------------------------------------------------------ options
def add_record_db_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("history (--db)")
    group.add_argument("--db", metavar="FILE.sqlite",
                       help="add the runs to this history (created if missing)")
    group.add_argument("--name", metavar="NAME",
                       help="the workload's name in the history (default: the command's "
                            "file name)")
    group.add_argument("--commit", metavar="SHA",
                       help="the commit measured (default: git rev-parse HEAD here)")
    group.add_argument("--branch", metavar="NAME",
                       help="its branch (default: the checkout's current branch)")
    group.add_argument("--label", metavar="K=V", action="append", default=[], type=label,
                       help="a label kept with the runs (repeatable)")


def add_check_db_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("history (--db, instead of --baseline)")
    group.add_argument("--db", metavar="FILE.sqlite", help="draw the baseline from this history")
    group.add_argument("--name", metavar="NAME", help="the workload's name in the history")
    group.add_argument("--against", metavar="BRANCH|SHA|last:N", default=DEFAULT_BRANCH,
                       help=f"the baseline: a branch's last 10 runs (default: "
                            f"{DEFAULT_BRANCH}), one commit's runs, or the last N runs of "
                            f"{DEFAULT_BRANCH}")


def label(text: str) -> tuple[str, str]:
    """An argparse type: 'K=V' -> (K, V)."""
    key, equals, value = text.partition("=")
    if not equals or not key.strip():
        raise argparse.ArgumentTypeError(f"not KEY=VALUE: {text!r}")
    return key.strip(), value


# ------------------------------------------------------------------ record --db
def open_history_for_record(args: argparse.Namespace, command: list[str]) -> tuple[
        HistoryStore, Where]:
    """Before anything runs: where the runs will go, and the open history."""
    where = Where(
        name=args.name or os.path.basename(command[0]),
        commit=args.commit or _git("rev-parse", "HEAD", what="--commit"),
        branch=args.branch or _current_branch(),
        labels=dict(args.label),
    )
    return HistoryStore.open_for_writing(args.db), where


def store_record(store: HistoryStore, where: Where, record: Record) -> None:
    with store:
        store.add_record(record, where)
    say(f"{len(record.runs)} runs of {where.name} stored in {store.path} for commit "
        f"{where.commit[:10]} on {where.branch}")


def _current_branch() -> str:
    branch = _git("symbolic-ref", "--short", "-q", "HEAD", what="--branch")
    return branch


def _git(*words: str, what: str) -> str:
    """A git answer about the working directory, or a one-line demand for ``what``."""
    try:
        done = subprocess.run(["git", *words], capture_output=True, text=True, check=False,
                              timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        raise UsageError(f"{what} required: git cannot be run here") from None
    answer = done.stdout.strip()
    if done.returncode != 0 or not answer:
        reason = ("detached HEAD" if what == "--branch" and "symbolic-ref" in words
                  else "not a git checkout")
        raise UsageError(f"{what} required ({Path.cwd()}: {reason})")
    return answer


# ------------------------------------------------------------------ check --db
def baseline_from_history(args: argparse.Namespace) -> tuple[Record, str]:
    """The baseline ``check --db`` compares with, and its description naming the commits."""
    if args.update:
        raise UsageError("--update rewrites a --baseline file; with --db, record instead")
    if not args.name:
        raise UsageError("--db needs --name NAME (the workload to check)")
    with HistoryStore.open_for_reading(args.db) as store:
        store.check_name(args.name)
        baseline = store.baseline(args.name, args.against, DEFAULT_BRANCH)
    source = f"{args.db} [{baseline.description}: {baseline.commit_list}]"
    return baseline.record, source


# ------------------------------------------------------------------ history
def register(sub: Subparsers) -> None:
    parser = sub.add_parser(
        "history", help="a workload's metrics per commit, with the changes, from a --db history",
        description="Print NAME's metrics per commit (oldest first) from the history, mark\n"
                    "the commits where a metric's level changed, and draw trend charts.",
        epilog="exit status: 0; 2 bad usage, unknown name or metric, unreadable history.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", metavar="FILE.sqlite", required=True, help="the history")
    parser.add_argument("--name", metavar="NAME", required=True, help="the workload")
    parser.add_argument("--metric", metavar="METRIC", action="append", default=[],
                        help="a metric to show, e.g. read.calls, total.syscall_ns "
                             f"(repeatable; default: {', '.join(DEFAULT_METRICS)})")
    parser.add_argument("--branch", metavar="NAME", help="only the runs of this branch")
    parser.add_argument("--time-changes", type=fraction, metavar="PCT",
                        help="also mark time changes of PCT or more (default: counts only; "
                             "times move with the machine's load)")
    parser.add_argument("--html", metavar="FILE", help="write the trend charts as a web page")
    parser.add_argument("--png", metavar="FILE", help="write the trend charts as a PNG image")
    parser.set_defaults(execute=execute)


def execute(args: argparse.Namespace) -> int:
    check_writable(args.html, args.png)
    with HistoryStore.open_for_reading(args.db) as store:
        store.check_name(args.name)
        kinds = store.metric_kinds(args.name)
        metrics = _chosen_metrics(args.metric, kinds, args.db, args.name)
        series = [store.series(args.name, metric, kinds[metric], args.branch)
                  for metric in metrics]
    if not series[0].commits:
        raise UsageError(f"{args.db}: no runs of {args.name!r} on branch {args.branch!r}")
    changes = {s.metric: detect_changes(s, args.time_changes) for s in series
               if s.kind is not Kind.TIME or args.time_changes is not None}
    from reports.history_text import render_history_table

    print(render_history_table(series, changes), end="", flush=True)
    if args.html:
        from reports.history_html import render_history_html

        write_text_atomically(Path(args.html), render_history_html(series, changes))
    if args.png:
        from reports.history_png import render_history_png

        render_history_png(series, changes, Path(args.png))
    return 0


def detect_changes(series: Series, time_relative: float | None = None) -> list[Change]:
    """Where ``series`` changed level; times by ``time_relative`` or more."""
    threshold = Threshold() if time_relative is None else Threshold(time_relative=time_relative)
    groups = [commit.values for commit in series.commits]
    return change_points(groups, StepRule.for_kind(series.kind, threshold))


def _chosen_metrics(asked: list[str], kinds: dict[str, Kind], path: str,
                    name: str) -> list[str]:
    if not asked:
        chosen = [metric for metric in DEFAULT_METRICS if metric in kinds]
        return chosen or sorted(kinds)[:3]
    unknown = [metric for metric in asked if metric not in kinds]
    if unknown:
        raise UsageError(f"{path}: no metric {', '.join(map(repr, unknown))} recorded for "
                         f"{name!r} (e.g. {', '.join(sorted(kinds)[:6])})")
    return list(dict.fromkeys(asked))
