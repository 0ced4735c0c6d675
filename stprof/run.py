"""``stprof run``: run a command (or attach to -p PID), trace it, report."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Callable

from profiler.errors import StprofError, UsageError
from profiler.model import Interval, Profile
from profiler.phases import phase
from reports import ViewOptions
from stprof.options import (
    Subparsers,
    add_collector_options,
    add_long_run_options,
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

TRACE_SET_HELP = """\
-e trace=SET traces only the syscalls of SET (strace's syntax): names, %file,
%desc, %network (%net), %process, %memory, %signal, %ipc, %creds, %clock,
/REGEX, a leading ! for all but SET; e.g. -e trace=%file, -e 'trace=!read'.
The others are not counted or timed.  With ptrace, a seccomp-bpf filter in the
command (as strace --seccomp-bpf) stops it only at SET's calls; installing it
as a user other than root sets no_new_privs in the command, so setuid programs
it runs do not gain privileges then.  With ebpf, faults, interrupts and the
time budget still cover the whole command; add --no-budget to probe only SET's
syscalls (cheaper; no budget then; the kernel detaches about 40 ms per syscall
of SET, in a keeper process after stprof has exited).  -e NAME,... without
trace= traces everything and filters only the table, as in stprof report."""


def register(sub: Subparsers) -> None:
    parser = sub.add_parser("run", help="run a command (or attach to -p PID) and profile it",
                            description="Run COMMAND, trace its syscalls and traps, report.",
                            epilog=TRACE_SET_HELP,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    add_collector_options(parser)
    add_view_options(parser)
    add_timeline_options(parser)
    add_long_run_options(parser)
    parser.set_defaults(execute=execute)


def execute(args: argparse.Namespace) -> int:
    time_phases(args)
    with phase("checks (options, collector choice)"):
        view = view_of(args)
        check_writable(args.output, args.json, args.stacks, args.html, args.timeline)
        check_syscall_names(view.only)
        options = collector_options(args)
        options.show_interval = interval_printer(view)
        cls = choose_collector(args.collector)
    if options.trace_set is not None and not cls.filters_syscalls:
        raise UsageError(f"-e trace=: the {cls.name} collector cannot filter what it traces "
                         "(the ebpf and ptrace collectors can)")
    if args.timeline is not None and not cls.writes_timeline:
        raise UsageError(f"--timeline: the {cls.name} collector cannot write a timeline "
                         "(the ebpf and ptrace collectors can)")
    if options.pin_cpu is not None and not cls.pins:
        raise UsageError(f"--pin: only the ptrace collector pins (the {cls.name} collector's "
                         "probes do not stop the command)")
    wanted = (("-i", options.interval_s), ("--duration", options.duration_s),
              ("-P", options.per_process), ("--per-thread", options.per_thread))
    asked = [flag for flag, value in wanted if value]
    if asked and not cls.long_runs:
        raise UsageError(f"{asked[0]}: the {cls.name} collector cannot do this "
                         "(the ebpf and ptrace collectors can)")
    # SIGUSR1 kills by default: until the collector's clock shows the run so far,
    # one sent during start-up (or the report) is ignored, not fatal
    previous_usr1 = signal.signal(signal.SIGUSR1, _not_tracing_yet)
    try:
        with cls(options) as collector, phase("run (command) and read"):
            profile: Profile = collector.run()
    finally:
        signal.signal(signal.SIGUSR1, previous_usr1)
    if profile.intervals and options.show_interval is not None:
        options.show_interval(profile.intervals[-1], "last interval")
    try:
        with phase("report"):
            emit(profile, args, view)
    except StprofError as exc:  # the command ran: its status still wins
        say(exc.one_line())
    time_phases_end(args)
    return profile.exit_status or 0


def _not_tracing_yet(_signum: int, _frame: object) -> None:
    """SIGUSR1 outside tracing: nothing to summarise."""


def interval_printer(view: ViewOptions) -> Callable[[Interval, str], None]:
    """Print an interval's summary (or the run so far) on stderr, the report's stream."""
    from reports.text import interval_summary

    def show(interval: Interval, what: str) -> None:
        # one write(2), not sys.stderr: this runs in signal handlers, which may
        # interrupt another summary's write (buffered streams refuse re-entry)
        sys.stderr.flush()
        data = interval_summary(interval, what, view.top or 5).encode(errors="replace")
        while data:
            try:
                data = data[os.write(2, data):]
            except InterruptedError:
                continue
            except OSError:
                return

    return show
