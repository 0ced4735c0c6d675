"""``stprof run``: run a command (or attach to -p PID), trace it, report."""

from __future__ import annotations

import argparse

from profiler.errors import StprofError, UsageError
from profiler.model import Profile
from profiler.phases import phase
from stprof.options import (
    Subparsers,
    add_collector_options,
    add_timeline_options,
    add_view_options,
    check_syscall_names,
    check_writable,
    choose_collector,
    collector_options,
    say,
    time_phases,
    time_phases_end,
    view_of,
)
from stprof.outputs import emit


def register(sub: Subparsers) -> None:
    parser = sub.add_parser("run", help="run a command (or attach to -p PID) and profile it",
                            description="Run COMMAND, trace its syscalls and traps, report.")
    add_collector_options(parser)
    add_view_options(parser)
    add_timeline_options(parser)
    parser.set_defaults(execute=execute)


def execute(args: argparse.Namespace) -> int:
    time_phases(args)
    with phase("checks (options, collector choice)"):
        view = view_of(args)
        check_writable(args.output, args.json, args.stacks, args.html, args.timeline)
        check_syscall_names(view.only)
        options = collector_options(args)
        cls = choose_collector(args.collector)
    if args.timeline is not None and not cls.writes_timeline:
        raise UsageError(f"--timeline: the {cls.name} collector cannot write a timeline "
                         "(the ebpf and ptrace collectors can)")
    with cls(options) as collector, phase("run (command) and read"):
        profile: Profile = collector.run()
    try:
        with phase("report"):
            emit(profile, args, view)
    except StprofError as exc:  # the command ran: its status still wins
        say(exc.one_line())
    time_phases_end(args)
    return profile.exit_status or 0
