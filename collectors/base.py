"""What every collector is: it says whether it can run here, then fills a Profile.

Collectors import ``profiler.model``, ``profiler.target`` and
``profiler.errors`` only; never the CLI or a renderer.  Platform-only
imports (bcc, python-ptrace) happen inside the collector's methods, so that
``import collectors`` works on every system.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar, Self

from profiler.model import Interval, Profile
from profiler.target import Credentials


@dataclass(frozen=True)
class Availability:
    """Whether something can run here; if not, why and how to fix it."""

    ok: bool
    reason: str = ""
    fix: str = ""

    @classmethod
    def yes(cls, detail: str = "") -> Availability:
        return cls(True, detail)

    @classmethod
    def no(cls, reason: str, fix: str = "") -> Availability:
        return cls(False, reason, fix)


@dataclass(frozen=True)
class ProbeMethod:
    """One way of measuring something (for ``stprof doctor``)."""

    what: str  # e.g. "syscalls", "fault time", "interrupts", "stacks"
    method: str  # e.g. "raw_syscalls tracepoints"
    availability: Availability


# Kernel stack samples a second.  Each sample is a timer interrupt: on the
# project's VMs, where those are expensive, 999 Hz costs about 1% and 4999 Hz
# about 9% on a syscall-bound command (make bench); raise it with -F for
# commands too short to collect many samples.
DEFAULT_STACK_HZ = 999


@dataclass
class Options:
    """What the user asked for, as every collector reads it."""

    command: list[str] = field(default_factory=list)
    attach_pid: int | None = None
    follow: bool = True
    credentials: Credentials | None = None
    kernel_stacks: str = "faults"  # "faults", "all" or "off"
    stack_frequency_hz: int = DEFAULT_STACK_HZ
    # --timeline FILE: every event of the run as Chrome Trace Events (profiler.timeline),
    # at most timeline_limit syscall slices (and as many fault and interrupt slices)
    timeline: str | None = None
    timeline_limit: int = 2_000_000
    # -i SECONDS: a reading of the counters every interval (profile.intervals);
    # show_interval is called with each interval, and with the run so far on
    # SIGUSR1 ("interval" or "so far"), from the main thread
    interval_s: float | None = None
    show_interval: Callable[[Interval, str], None] | None = None
    # --duration SECONDS: stop tracing then (detach from -p PID; a command
    # finishes untraced, or is killed with duration_kill)
    duration_s: float | None = None
    duration_kill: bool = False
    # --per-process / --per-thread: each task's own syscall counts
    per_process: bool = False
    per_thread: bool = False
    # -e trace=SET (collectors.trace_set): the only syscalls counted and timed,
    # by name (None: all of them); trace_spec is the user's SET as given
    trace_set: frozenset[str] | None = None
    trace_spec: str = ""
    # --no-budget: with a trace set, the eBPF collector probes only the set's own
    # syscalls (no time budget, which needs every syscall's entry and exit)
    budget: bool = True
    # --pin [CPU]: stprof and the command on that one CPU (-1: the one stprof is on)
    pin_cpu: int | None = None


class Collector(ABC):
    """One way of measuring syscalls and traps."""

    name: ClassVar[str]
    description: ClassVar[str]
    # sys.platform prefixes this collector is meant for; auto only tries these.
    platforms: ClassVar[tuple[str, ...]]
    # whether it honours Options.timeline (stprof run --timeline)
    writes_timeline: ClassVar[bool] = False
    # whether it honours Options.interval_s, duration_s, per_process and per_thread
    long_runs: ClassVar[bool] = False
    # whether it honours Options.trace_set (stprof run -e trace=SET)
    filters_syscalls: ClassVar[bool] = False
    # whether it honours Options.pin_cpu (stprof run --pin)
    pins: ClassVar[bool] = False

    @classmethod
    @abstractmethod
    def availability(cls) -> Availability:
        """Can this collector run here, as this user, now?"""

    @classmethod
    def methods(cls) -> list[ProbeMethod]:
        """Each probe method this collector may use, for ``stprof doctor``."""
        return []

    def __init__(self, options: Options) -> None:
        self.options = options

    def prepare(self) -> None:
        """Compile and load probes once; ``run`` may then be called many times."""

    @abstractmethod
    def run(self) -> Profile:
        """Start (or attach to) the target, trace it to its end, return the Profile.

        The Profile's ``exit_status`` is the command's (None in attach mode).
        Each call is one independent run: counters start from zero.  Must leave
        no process stopped, whatever happens.
        """

    def close(self) -> None:
        """Detach every probe.  Safe to call twice."""

    def __enter__(self) -> Self:
        try:
            self.prepare()
        except BaseException:  # Ctrl-C mid-attach: detach what was attached
            self.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
