"""The stprof command line: the one place collectors and renderers meet."""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

from profiler.errors import EXIT_UNAVAILABLE, EXIT_USAGE, StprofError, UsageError
from profiler.model import Profile, write_text_atomically
from profiler.version import stprof_version

if TYPE_CHECKING:
    from collectors import Collector, Options
    from profiler.target import Credentials
    from reports import ViewOptions

DESCRIPTION = """\
Profile a command's syscalls and traps on the real kernel: how much of its
system time its syscalls explain, and where the rest went.

  stprof run -- dd if=/dev/zero of=/dev/null bs=10M count=1
"""

EPILOG = """\
exit status: `run` exits with the command's status (128+N when signal N
killed it); 2 bad usage or unreadable input; 125 stprof cannot work here
(no collector, not root, no bcc, no headers); 126 command not executable;
127 command not found. `compare`/`check`: 0 no regression, 1 regression, 2 bad input.
"""


class OneLineParser(argparse.ArgumentParser):
    """argparse with one-line errors: 'stprof: <what>' and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="stprof",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"stprof {stprof_version()}")
    sub = parser.add_subparsers(dest="subcommand", metavar="COMMAND", parser_class=OneLineParser)
    sub.required = True
    _add_run(sub)
    _add_report(sub)
    _add_doctor(sub)
    _add_ci(sub)
    return parser


# ------------------------------------------------------------ shared options
def add_view_options(parser: argparse.ArgumentParser) -> None:
    from reports import SORT_KEYS

    group = parser.add_argument_group("report")
    group.add_argument("-S", "--sort", default="time", choices=sorted(SORT_KEYS),
                       help="order of the syscall table (default: time)")
    group.add_argument("--top", type=positive_int, metavar="N",
                       help="show only the first N syscalls")
    group.add_argument("-e", "--syscalls", metavar="NAME,...", type=_name_set, default=set(),
                       help="show only these syscalls")
    group.add_argument("-o", "--output", metavar="FILE",
                       help="write the report to FILE instead of stderr")
    group.add_argument("--json", metavar="FILE", help="also save the profile as JSON")
    group.add_argument("--stacks", metavar="FILE",
                       help="write sampled kernel stacks as folded stacks (flamegraph.pl, "
                            "inferno, speedscope)")


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
    group.add_argument("--kernel-stacks", choices=("faults", "all", "off"), default="faults",
                       help="sample kernel stacks during page faults (default), all kernel "
                            "time, or not at all")
    group.add_argument("-F", "--frequency", type=positive_int, default=DEFAULT_STACK_HZ,
                       metavar="HZ",
                       help=f"stack sampling frequency (default: {DEFAULT_STACK_HZ} Hz)")
    group.add_argument("command", nargs=argparse.REMAINDER, metavar="-- COMMAND [ARGS...]")


def add_identity_options(group: argparse._ArgumentGroup) -> None:
    """Who the command runs as: root is for the probes, not for the command."""
    identity = group.add_mutually_exclusive_group()
    identity.add_argument("-u", "--user", metavar="USER",
                          help="run the command as USER (needs root)")
    identity.add_argument("--as-root", action="store_true",
                          help="under sudo, run the command as root instead of the "
                               "invoking user")


def credentials_of(args: argparse.Namespace) -> Credentials | None:
    """Who the command runs as: -u USER, --as-root, else sudo's invoking user."""
    from profiler.target import choose_credentials

    return choose_credentials(args.user, args.as_root, dict(os.environ))


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


def _name_set(text: str) -> set[str]:
    return {name.strip() for name in text.split(",") if name.strip()}


def command_of(args: argparse.Namespace) -> list[str]:
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    return command


def collector_options(args: argparse.Namespace) -> Options:
    """Options for the collectors from the parsed arguments (checked for sense)."""
    from collectors import Options
    from profiler.target import resolve_command, why_not_attachable

    command = command_of(args)
    if command and args.pid is not None:
        raise UsageError("give either a command or -p PID, not both")
    if not command and args.pid is None:
        raise UsageError("no command given (usage: stprof run [OPTIONS] -- COMMAND [ARGS...])")
    if command:
        resolve_command(command)
    elif sys.platform.startswith("linux"):
        problem = why_not_attachable(args.pid)
        if problem:
            raise UsageError(f"-p {args.pid}: {problem}")
    return Options(
        command=command,
        attach_pid=args.pid,
        follow=args.follow,
        credentials=credentials_of(args),
        kernel_stacks=args.kernel_stacks,
        stack_frequency_hz=args.frequency,
    )


def choose_collector(name: str) -> type[Collector]:
    from collectors import choose

    cls, passed_over = choose(name)
    for reason in passed_over:
        print(f"stprof: {reason}; using {cls.name}", file=sys.stderr)
    return cls


# ------------------------------------------------------------------- run
def _add_run(sub: argparse._SubParsersAction[Any]) -> None:
    run = sub.add_parser("run", help="run a command (or attach to -p PID) and profile it",
                         description="Run COMMAND, trace its syscalls and traps, report.")
    add_collector_options(run)
    add_view_options(run)
    run.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    view = view_of(args)
    check_writable(args.output, args.json, args.stacks)
    check_syscall_names(view.only)
    options = collector_options(args)
    cls = choose_collector(args.collector)
    with cls(options) as collector:
        profile: Profile = collector.run()
    try:
        emit(profile, args, view)
    except StprofError as exc:  # the command ran: its status still wins
        print(f"stprof: {exc.one_line()}", file=sys.stderr)
    return profile.exit_status or 0


def check_syscall_names(names: set[str]) -> None:
    """Refuse a -e name this machine's syscall table lacks, as strace does.

    Only where stprof knows the table (Linux on x86-64 and aarch64); a
    ``syscall_N`` name (a number without a name) always passes.
    """
    import platform

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
    """Refuse an output path that cannot be written, before the command runs."""
    for path in paths:
        if path is None:
            continue
        target = Path(path)
        if target.is_dir():
            raise UsageError(f"{path}: cannot write (Is a directory)")
        where = target if target.exists() else target.parent
        if not where.exists():
            raise UsageError(f"{path}: cannot write (No such file or directory)")
        if not os.access(where, os.W_OK):
            raise UsageError(f"{path}: cannot write (Permission denied)")


# ---------------------------------------------------------------- report
def _add_report(sub: argparse._SubParsersAction[Any]) -> None:
    report = sub.add_parser("report", help="show a saved profile (from run --json)",
                            description="Render a profile saved with `stprof run --json`.")
    report.add_argument("file", metavar="FILE")
    report.add_argument("--format", choices=("text", "json", "folded"), default="text",
                        help="text (default), the profile's JSON, or folded stacks")
    add_view_options(report)
    report.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    view = view_of(args)
    profile = Profile.load(args.file)
    if args.format != "text":
        from reports import RENDERERS

        if args.format == "folded" and profile.stacks is None:
            print(f"stprof: {args.file} holds no kernel stacks "
                  f"(the {profile.collector} collector sampled none)", file=sys.stderr)
        sys.stdout.write(RENDERERS[args.format](view).render(profile))
        return 0
    emit(profile, args, view, default_stream=sys.stdout)
    return 0


# ---------------------------------------------------------------- output
def view_of(args: argparse.Namespace) -> ViewOptions:
    from reports import ViewOptions

    return ViewOptions(sort=args.sort, top=args.top, only=set(args.syscalls))


def emit(profile: Profile, args: argparse.Namespace, view: ViewOptions,
         default_stream: TextIO | None = None) -> None:
    """Write the JSON, the folded stacks and the report where the user asked.

    Each output is tried; the report reaches the terminal even when its file
    cannot be written.  The first failure is raised once all were tried.
    """
    from reports import FoldedRenderer, JsonRenderer, TextRenderer

    failures: list[StprofError] = []
    if args.json:
        json_text = JsonRenderer().render(profile)
        _try_write(failures, lambda: write_text_atomically(Path(args.json), json_text))
    if args.stacks:
        if profile.stacks is None:
            print("stprof: no kernel stacks were sampled by this collector; "
                  f"{args.stacks} not written", file=sys.stderr)
        else:
            folded = FoldedRenderer().render(profile)
            _try_write(failures, lambda: write_text_atomically(Path(args.stacks), folded))
    text = TextRenderer(view).render(profile)
    if not (args.output and _try_write(
            failures, lambda: write_text_atomically(Path(args.output), text))):
        stream = default_stream or sys.stderr
        stream.write(text)
        stream.flush()
    if failures:
        raise failures[0]


def _try_write(failures: list[StprofError], write: Callable[[], None]) -> bool:
    try:
        write()
    except StprofError as exc:
        failures.append(exc)
        return False
    return True


# ---------------------------------------------------------------- doctor
def _add_doctor(sub: argparse._SubParsersAction[Any]) -> None:
    doctor = sub.add_parser("doctor", help="say which collectors and probe methods work here")
    doctor.set_defaults(func=cmd_doctor)


def cmd_doctor(args: argparse.Namespace) -> int:
    from profiler.doctor import diagnose, render_diagnosis

    diagnosis = diagnose()
    sys.stdout.write(render_diagnosis(diagnosis))
    return 0 if diagnosis.usable else EXIT_UNAVAILABLE


# -------------------------------------------------------------------- CI
def _add_ci(sub: argparse._SubParsersAction[Any]) -> None:
    from profiler import cli_ci

    cli_ci.add_subcommands(sub)


# ------------------------------------------------------------------ main
def main(argv: Sequence[str] | None = None) -> int:
    try:
        # building the parser imports the collectors and renderers: a Ctrl-C
        # then is as much an interruption as one during the run
        args = build_parser().parse_args(argv)
        status: int = args.func(args)
        return status
    except StprofError as exc:
        print(f"stprof: {exc.one_line()}", file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:
        print("stprof: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # a bug: one line, the traceback only on request
        if os.environ.get("STPROF_DEBUG"):
            raise
        print(f"stprof: internal error: {type(exc).__name__}: {exc} "
              "(set STPROF_DEBUG=1 for the traceback)", file=sys.stderr)
        return EXIT_UNAVAILABLE

