"""``stprof run``: run a command (or attach to -p PID), trace it, report."""

from __future__ import annotations

import argparse

from profiler.errors import StprofError, UsageError
from profiler.model import Profile
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
    view_of,
)
from stprof.outputs import emit

TRACE_SET_HELP = """\
-e trace=SET traces only the syscalls of SET (strace's syntax): names, %file,
%desc, %network (%net), %process, %memory, %signal, %ipc, %creds, %clock,
/REGEX, a leading ! for all but SET; e.g. -e trace=%file, -e 'trace=!read'.
The others are not counted or timed.  With ptrace, a seccomp-bpf filter in the
command (as strace --seccomp-bpf) stops it only at SET's calls; installing it
as a user other than root sets no_new_privs in the command, so setuid programs
it runs do not gain privileges then.  With ebpf, faults, interrupts and the
time budget still cover the whole command; add --no-budget to probe only SET's
syscalls (cheaper; no budget then; detaching takes about 40 ms per syscall in
SET).  -e NAME,... without trace= traces everything and filters only the
table, as in stprof report."""


def register(sub: Subparsers) -> None:
    parser = sub.add_parser("run", help="run a command (or attach to -p PID) and profile it",
                            description="Run COMMAND, trace its syscalls and traps, report.",
                            epilog=TRACE_SET_HELP,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    add_collector_options(parser)
    add_view_options(parser)
    add_timeline_options(parser)
    parser.set_defaults(execute=execute)


def execute(args: argparse.Namespace) -> int:
    view = view_of(args)
    check_writable(args.output, args.json, args.stacks, args.html, args.timeline)
    check_syscall_names(view.only)
    options = collector_options(args)
    cls = choose_collector(args.collector)
    if options.trace_set is not None and not cls.filters_syscalls:
        raise UsageError(f"-e trace=: the {cls.name} collector cannot filter what it traces "
                         "(the ebpf and ptrace collectors can)")
    if args.timeline is not None and not cls.writes_timeline:
        raise UsageError(f"--timeline: the {cls.name} collector cannot write a timeline "
                         "(the ebpf and ptrace collectors can)")
    with cls(options) as collector:
        profile: Profile = collector.run()
    try:
        emit(profile, args, view)
    except StprofError as exc:  # the command ran: its status still wins
        say(exc.one_line())
    return profile.exit_status or 0
