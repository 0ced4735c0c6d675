"""What the subcommands share: the parser class, argument types, option groups,
and turning parsed arguments into collector and view options."""

from __future__ import annotations

import argparse
import errno
import os
import platform
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from profiler.errors import EXIT_USAGE, UsageError, shown, single_line
from profiler.timeline import DEFAULT_LIMIT as DEFAULT_TIMELINE_LIMIT

if TYPE_CHECKING:
    from collectors import Collector, Options
    from collectors.trace_set import TraceSet
    from profiler.target import Credentials
    from reports import ViewOptions



# the type of add_subparsers()' result (not subscriptable at run time)
if TYPE_CHECKING:
    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]
else:
    Subparsers = argparse._SubParsersAction


class OneLineParser(argparse.ArgumentParser):
    """argparse with one-line errors: 'stprof: <what>' and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {single_line(message)} (see '{self.prog} --help')\n")


# ------------------------------------------------------------ argument types
def natural_int(text: str) -> int:
    """An argparse type: a whole number, 0 or more."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text!r}")
    return value


def positive_int(text: str) -> int:
    """An argparse type: a whole number, 1 or more."""
    value = natural_int(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return value


def positive_seconds(text: str) -> float:
    """An argparse type: a number of seconds greater than 0 (e.g. 0.5)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds: {text!r}")
    return value


def name_set(text: str) -> set[str]:
    """An argparse type: 'a,b,c' -> {'a', 'b', 'c'}."""
    return {name.strip() for name in text.split(",") if name.strip()}


TRACE_PREFIX = "trace="


def event_expression(text: str) -> str | set[str]:
    """An argparse type for -e: 'trace=SET' stays a string (the set to trace,
    parsed by collectors.trace_set once the machine's table is known);
    'a,b,c' is the view filter, a set of names."""
    if text.startswith(TRACE_PREFIX):
        return text
    return name_set(text)


# ------------------------------------------------------------ option groups
def add_view_options(parser: argparse.ArgumentParser) -> None:
    from reports import SORT_KEYS

    group = parser.add_argument_group("report")
    group.add_argument("-S", "--sort", default="time", choices=sorted(SORT_KEYS),
                       help="order of the syscall table (default: time)")
    group.add_argument("--top", type=positive_int, metavar="N",
                       help="show only the first N syscalls")
    group.add_argument("-e", "--syscalls", metavar="NAME,...", type=event_expression,
                       action="append", default=[],
                       help="show only these syscalls in the table (all are traced; "
                            "see -e trace=SET of stprof run to trace only some)")
    group.add_argument("--histogram", action="store_true",
                       help="print each syscall's latency histogram (log2 buckets, as bcc's "
                            "tools do) and the page-fault time histogram")
    group.add_argument("-o", "--output", metavar="FILE",
                       help="write the report to FILE instead of stderr")
    group.add_argument("--json", metavar="FILE", help="also save the profile as JSON")
    group.add_argument("--stacks", metavar="FILE",
                       help="write sampled kernel stacks as folded stacks (flamegraph.pl, "
                            "inferno, speedscope)")
    group.add_argument("--html", metavar="FILE",
                       help="also write the report as one self-contained HTML page")


def add_collector_options(parser: argparse.ArgumentParser) -> None:
    from collectors import NAMES
    from collectors.base import DEFAULT_STACK_HZ

    group = parser.add_argument_group("tracing")
    group.add_argument("-c", "--collector", default="auto", choices=("auto", *NAMES),
                       help="how to trace (default: auto: ebpf where it can run, "
                            "dtrace on FreeBSD, else ptrace)")
    group.add_argument("-p", "--pid", type=positive_int, metavar="PID",
                       help="attach to a running process and its threads until it exits "
                            "or Ctrl-C, then detach")
    group.add_argument("-f", "--follow", dest="follow", action="store_true", default=True,
                       help="follow children and threads (the default)")
    group.add_argument("--no-follow", dest="follow", action="store_false",
                       help="trace only the first process")
    add_identity_options(group)
    group.add_argument("-v", "--verbose", action="store_true",
                       help="say on stderr how long each phase of stprof took (start-up, "
                            "compile, attach, the run, teardown, report)")
    group.add_argument("--no-budget", dest="budget", action="store_false",
                       help="with -e trace=SET, the ebpf collector probes only the set's "
                            "own syscall tracepoints, so that the others cost next to "
                            "nothing; there is then no time budget, and faults outside "
                            "the traced syscalls are of unknown context")
    group.add_argument("--pin", nargs="?", const=-1, type=cpu_number, metavar="CPU",
                       help="ptrace: run stprof and the command on one CPU (CPU, or the one "
                            "stprof starts on). On a virtual machine a stop then costs a "
                            "fraction, as no side waits for an idle CPU to wake up; but the "
                            "command and every child get that one CPU (an inherited, "
                            "visible affinity: nproc says 1), so a parallel build or a "
                            "multi-threaded program runs slower, and so does the command's "
                            "time. Not with -p")
    group.add_argument("--kernel-stacks", choices=("faults", "all", "off"), default="faults",
                       help="sample kernel stacks during page faults (default), all kernel "
                            "time, or not at all")
    group.add_argument("-F", "--frequency", type=positive_int, default=DEFAULT_STACK_HZ,
                       metavar="HZ",
                       help=f"stack sampling frequency (default: {DEFAULT_STACK_HZ} Hz)")
    group.add_argument("command", nargs=argparse.REMAINDER, metavar="-- COMMAND [ARGS...]")


def add_timeline_options(parser: argparse.ArgumentParser) -> None:
    """--timeline (stprof run): every event as Chrome Trace Event JSON (docs/timeline.md)."""
    from profiler.timeline import DEFAULT_LIMIT

    group = parser.add_argument_group("timeline")
    group.add_argument("--timeline", metavar="FILE",
                       help="also write every syscall, fault and interrupt as a Chrome Trace "
                            "Event JSON timeline (Perfetto UI, chrome://tracing, speedscope)")
    group.add_argument("--timeline-limit", type=positive_int, default=DEFAULT_LIMIT,
                       metavar="N",
                       help="stop recording the timeline after N syscall slices (or as many "
                            f"fault or interrupt slices; default {DEFAULT_LIMIT:,})")


def add_long_run_options(parser: argparse.ArgumentParser) -> None:
    """-i, --duration, --per-process, --per-thread (stprof run)."""
    group = parser.add_argument_group("long runs")
    group.add_argument("-i", "--interval", type=positive_seconds, metavar="SECONDS",
                       help="every SECONDS, print a summary of that interval (top syscalls "
                            "by time, faults, the budget) to stderr; the JSON gets "
                            "`intervals`. `kill -USR1` to stprof prints the run so far, "
                            "with or without -i")
    group.add_argument("--duration", type=positive_seconds, metavar="SECONDS",
                       help="stop tracing after SECONDS: with -p, detach and report (the "
                            "process runs on); with a command, stop counting then and let "
                            "it finish untraced, and report when it exits")
    group.add_argument("--duration-kill", action="store_true",
                       help="with --duration and a command: kill the command (SIGKILL) at "
                            "the deadline instead of letting it finish")
    group.add_argument("-P", "--per-process", action="store_true",
                       help="also print one syscall table per process (pid, comm)")
    group.add_argument("--per-thread", action="store_true",
                       help="also print one syscall table per thread (tid, pid, comm)")


def add_identity_options(group: Any) -> None:
    """Who the command runs as: root is for the probes, not for the command."""
    identity = group.add_mutually_exclusive_group()
    identity.add_argument("-u", "--user", metavar="USER",
                          help="run the command as USER (needs root)")
    identity.add_argument("--as-root", action="store_true",
                          help="under sudo, run the command as root instead of the "
                               "invoking user")


# ------------------------------------------------------------ interpretation
def credentials_of(args: argparse.Namespace) -> Credentials | None:
    """Who the command runs as: -u USER, --as-root, else sudo's invoking user."""
    from profiler.target import choose_credentials

    return choose_credentials(args.user, args.as_root, dict(os.environ))


def command_of(args: argparse.Namespace) -> list[str]:
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    return command


def cpu_number(text: str) -> int:
    """A CPU for --pin (a number from 0)."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"not a CPU number: {text!r}")
    return value


def pinned_cpu(asked: int | None, pid: int | None) -> int | None:
    """--pin's CPU (-1: the one stprof runs on now), checked against stprof's own."""
    if asked is None:
        return None
    if pid is not None:
        raise UsageError("--pin needs a command: stprof does not change the CPUs of a "
                         "process it attaches to")
    allowed = os.sched_getaffinity(0)
    cpu = asked if asked >= 0 else current_cpu(allowed)
    if cpu not in allowed:
        shown_cpus = ",".join(str(c) for c in sorted(allowed))
        raise UsageError(f"--pin {cpu}: stprof may run only on CPU(s) {shown_cpus}")
    return cpu


def current_cpu(allowed: set[int]) -> int:
    """The CPU this process last ran on (/proc/self/stat's field 39), else its first."""
    try:
        with open("/proc/self/stat", "rb") as stat:
            return int(stat.read().rsplit(b")", 1)[1].split()[36])
    except (OSError, ValueError, IndexError):
        return min(allowed)


def collector_options(args: argparse.Namespace) -> Options:
    """Options for the collectors from the parsed arguments (checked for sense)."""
    from collectors import Options
    from profiler.target import resolve_command, why_not_attachable

    command = command_of(args)
    if command and args.pid is not None:
        raise UsageError("give either a command or -p PID, not both")
    if not command and args.pid is None:
        raise UsageError("no command given (usage: stprof run [OPTIONS] -- COMMAND [ARGS...])")
    if getattr(args, "duration_kill", False) and (args.pid is not None
                                                   or getattr(args, "duration", None) is None):
        raise UsageError("--duration-kill needs --duration and a command (not -p)")
    if command:
        resolve_command(command)
    elif is_stprof_itself(args.pid):
        raise UsageError(f"-p {args.pid}: that is stprof itself, and no process can trace itself")
    elif sys.platform.startswith("linux"):
        problem = why_not_attachable(args.pid)
        if problem:
            raise UsageError(f"-p {args.pid}: {problem}")
    trace = trace_set_of(args)
    pin = pinned_cpu(getattr(args, "pin", None), args.pid)
    if not getattr(args, "budget", True) and trace is None:
        raise UsageError("--no-budget needs -e trace=SET (it probes only the set's syscalls)")
    return Options(
        trace_set=None if trace is None else trace.names,
        trace_spec="" if trace is None else trace.spec,
        budget=getattr(args, "budget", True),
        pin_cpu=pin,
        command=command,
        attach_pid=args.pid,
        follow=args.follow,
        credentials=credentials_of(args),
        kernel_stacks=args.kernel_stacks,
        stack_frequency_hz=args.frequency,
        timeline=getattr(args, "timeline", None),
        timeline_limit=getattr(args, "timeline_limit", DEFAULT_TIMELINE_LIMIT),
        interval_s=getattr(args, "interval", None),
        duration_s=getattr(args, "duration", None),
        duration_kill=getattr(args, "duration_kill", False),
        per_process=getattr(args, "per_process", False),
        per_thread=getattr(args, "per_thread", False),
    )


def is_stprof_itself(pid: int) -> bool:
    """Whether ``pid`` is stprof's process or one of its threads (a thread's
    id is a pid to /proc and to -p alike)."""
    if pid == os.getpid():
        return True
    try:
        with open(f"/proc/{pid}/status", encoding="utf-8", errors="replace") as stream:
            for line in stream:
                if line.startswith("Tgid:"):
                    return int(line.split()[1]) == os.getpid()
    except (OSError, ValueError, IndexError):
        pass
    return False


def choose_collector(name: str) -> type[Collector]:
    """The collector class for -c NAME, saying why auto passed others over."""
    from collectors import choose

    cls, passed_over = choose(name)
    for reason in passed_over:
        print(f"stprof: {reason}; using {cls.name}", file=sys.stderr)
    return cls


def view_of(args: argparse.Namespace) -> ViewOptions:
    from reports import ViewOptions

    only: set[str] = set()
    for expression in args.syscalls:
        if isinstance(expression, set):
            only |= expression
    return ViewOptions(sort=args.sort, top=args.top, only=only, histograms=args.histogram)


def trace_spec_of(args: argparse.Namespace) -> str | None:
    """The SET of the last -e trace=SET given, None without one."""
    specs = [e[len(TRACE_PREFIX):] for e in getattr(args, "syscalls", [])
             if isinstance(e, str)]
    return specs[-1] if specs else None


def trace_set_of(args: argparse.Namespace) -> TraceSet | None:
    """-e trace=SET against this machine's syscall table (UsageError if unknown)."""
    from collectors.syscall_names import syscall_table
    from collectors.trace_set import parse_trace_set

    spec = trace_spec_of(args)
    if spec is None:
        return None
    known = set(syscall_table().values())
    if not known:
        raise UsageError(f"-e trace=: stprof has no syscall table for {platform.machine()}")
    return parse_trace_set(spec, known)


def check_syscall_names(names: set[str]) -> None:
    """Refuse a -e name this machine's syscall table lacks, as strace does.

    Only where stprof knows the table (Linux on x86-64 and aarch64); a
    ``syscall_N`` name (a number without a name) always passes.
    """
    from collectors.syscall_names import syscall_table

    if not sys.platform.startswith("linux"):
        return
    known = set(syscall_table().values())
    unknown = sorted(name for name in names
                     if name not in known and not re.fullmatch(r"syscall_-?\d+", name))
    if known and unknown:
        raise UsageError(f"-e: no syscall named {', '.join(unknown)} on "
                         f"{platform.machine()} Linux")


def check_writable(*paths: str | None) -> None:
    """Refuse an output path that cannot be written, before the command runs.

    Tried for real, the way stprof will write it
    (:func:`profiler.model.write_text_atomically`), since permission bits
    say yes to root for /proc/version: a regular file, or a new one, is
    replaced through a new file beside it, so one is created there and
    removed at once; anything else (a device, a FIFO, a link) is opened for
    writing, not truncated, written no bytes, and closed.  Nothing is left
    and nothing changes.
    """
    for path in paths:
        if path is None:
            continue
        problem = why_not_writable(Path(path))
        if problem:
            raise UsageError(f"{shown(path)}: cannot write ({problem})")


def why_not_writable(target: Path) -> str | None:
    if target.is_dir():
        return os.strerror(errno.EISDIR)
    if target.is_symlink() and not target.exists():
        return _why_no_new_file(Path(os.path.realpath(target)))  # writing creates its target
    if target.is_symlink() or (target.exists() and not target.is_file()):
        return _why_not_openable(target)
    return _why_no_new_file(target)


def _why_not_openable(target: Path) -> str | None:
    """Open for writing and write nothing: a file of /proc opens for root but
    refuses every write (EIO), /dev/full refuses with ENOSPC, while a write
    of no bytes changes no file, device or pipe."""
    try:
        fd = os.open(target, os.O_WRONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ENXIO:
            return None  # a FIFO with no reader yet: the write waits for one
        return exc.strerror or str(exc)
    try:
        os.write(fd, b"")
    except BlockingIOError:
        pass  # a full pipe or terminal: the real write waits
    except OSError as exc:
        return exc.strerror or str(exc)
    finally:
        os.close(fd)
    return None


def _why_no_new_file(target: Path) -> str | None:
    directory = target.parent
    if not directory.is_dir():
        return os.strerror(errno.ENOENT)
    try:
        import tempfile  # here: its import costs every run's start-up

        fd, probe = tempfile.mkstemp(prefix=".stprof-check-", dir=directory)
    except OSError as exc:
        return f"no new file can be made in {shown(directory)}: {exc.strerror}"
    os.close(fd)
    os.unlink(probe)
    return None


def time_phases(args: argparse.Namespace) -> None:
    """With -v: say each phase's time on stderr, from the interpreter's start on."""
    from profiler import phases

    if not getattr(args, "verbose", False):
        return
    phases.echo(True)
    since_exec = phases.since_exec()
    if since_exec is not None:
        phases.record("start-up (python, imports, arguments)", since_exec)


def time_phases_end(args: argparse.Namespace) -> None:
    """With -v: the whole time since the interpreter started, phases and gaps."""
    from profiler import phases

    since_exec = phases.since_exec() if getattr(args, "verbose", False) else None
    if since_exec is not None:
        phases.record("total (since exec)", since_exec)


def say(message: str) -> None:
    """One line for the user on stderr, as every message of stprof."""
    print(f"stprof: {single_line(message)}", file=sys.stderr)
