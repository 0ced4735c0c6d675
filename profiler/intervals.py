"""Intervals of a run (stprof run -i SECONDS): differences of cumulative readings.

A collector reads its cumulative counters (``Counters``) at each tick; an
interval is the difference of two readings.  The last interval ends at the
run's final totals, read from the Profile itself, so the intervals of a run
add up to its totals exactly, whatever happened between the readings.
Per-process and per-thread tables (--per-process, --per-thread) are built
here too, from (pid, tid) -> per-syscall counts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from profiler.model import Interval, Profile, TaskSyscalls

# name -> (calls, errors, total_ns)
CallCounts = dict[str, tuple[int, int, int]]


@dataclass
class Counters:
    """Cumulative counts of a run at one moment (``at_ns``: monotonic clock)."""

    at_ns: int
    syscalls: CallCounts = field(default_factory=dict)
    fault_count: int = 0
    fault_ns: int | None = None
    budget: dict[str, int] | None = None


def counters_of(profile: Profile, at_ns: int) -> Counters:
    """The final totals of a run, as a reading."""
    budget = None
    if profile.budget is not None:
        budget = {"lifetime_ns": profile.budget.lifetime_ns, **profile.budget.parts()}
    return Counters(
        at_ns=at_ns,
        syscalls={name: (s.calls, s.errors, s.total_ns) for name, s in profile.syscalls.items()},
        fault_count=profile.faults.count,
        fault_ns=profile.faults.total_ns,
        budget=budget,
    )


def difference(later: Counters, earlier: Counters, origin_ns: int) -> Interval:
    """What happened between two readings (times from ``origin_ns``)."""
    syscalls: dict[str, dict[str, int]] = {}
    for name in sorted(set(later.syscalls) | set(earlier.syscalls)):
        now = later.syscalls.get(name, (0, 0, 0))
        before = earlier.syscalls.get(name, (0, 0, 0))
        if now == before:
            continue
        syscalls[name] = {"calls": now[0] - before[0], "errors": now[1] - before[1],
                          "total_ns": now[2] - before[2]}
    fault_ns = None
    if later.fault_ns is not None:
        fault_ns = later.fault_ns - (earlier.fault_ns or 0)
    budget = None
    if later.budget is not None:
        base = earlier.budget or {}
        budget = {name: value - base.get(name, 0) for name, value in later.budget.items()}
    return Interval(
        start_ns=max(0, earlier.at_ns - origin_ns),
        end_ns=max(0, later.at_ns - origin_ns),
        syscalls=syscalls,
        faults={"count": later.fault_count - earlier.fault_count, "total_ns": fault_ns},
        budget=budget,
    )


class IntervalBook:
    """The readings of one run, and the intervals between them.

    ``read`` returns the collector's cumulative counters now; ``shown`` is
    called with each finished interval and with each summary of the run so
    far (SIGUSR1), with a word saying which.
    """

    def __init__(self, origin_ns: int, read: Callable[[], Counters],
                 shown: Callable[[Interval, str], None] | None) -> None:
        self.origin_ns = origin_ns
        self.read = read
        self.shown = shown
        self.start = Counters(at_ns=origin_ns)
        self.last = self.start
        self.intervals: list[Interval] = []

    def tick(self) -> None:
        reading = self.read()
        interval = difference(reading, self.last, self.origin_ns)
        self.last = reading
        self.intervals.append(interval)
        if self.shown is not None:
            self.shown(interval, "interval")

    def so_far(self) -> None:
        if self.shown is not None:
            self.shown(difference(self.read(), self.start, self.origin_ns), "so far")

    def finish(self, profile: Profile, end_ns: int) -> list[Interval]:
        """Every interval, the last one ending at the profile's totals."""
        final = counters_of(profile, max(end_ns, self.last.at_ns))
        return [*self.intervals, difference(final, self.last, self.origin_ns)]


def task_tables(counts: dict[tuple[int, int], CallCounts], comms: dict[int, str],
                per_thread: bool) -> list[TaskSyscalls]:
    """Per-process (``per_thread`` False: threads summed by pid) or per-thread tables.

    ``counts`` maps (pid, tid) to that thread's own counts; ``comms`` a pid
    or tid to its name.  Ordered by pid, then tid.
    """
    merged: dict[tuple[int, int], dict[str, list[int]]] = {}
    for (pid, tid), calls in counts.items():
        key = (pid, tid if per_thread else pid)
        table = merged.setdefault(key, {})
        for name, (count, errors, total) in calls.items():
            row = table.setdefault(name, [0, 0, 0])
            row[0] += count
            row[1] += errors
            row[2] += total
    return [
        TaskSyscalls(pid=pid, tid=tid, comm=comms.get(tid) or comms.get(pid, ""),
                     syscalls={name: {"calls": row[0], "errors": row[1], "total_ns": row[2]}
                               for name, row in sorted(table.items()) if row[0]})
        for (pid, tid), table in sorted(merged.items())
    ]
