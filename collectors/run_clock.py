"""The clock of a long run: interval ticks, the --duration deadline, SIGUSR1.

One real-time timer (SIGALRM) is armed for whichever comes first, the next
tick or the deadline.  The handlers run in stprof's main thread, between
two steps of whatever it is doing (waiting for the command, or the ptrace
loop between two stops), so the collector's counters are read there without
locks.  Python retries the interrupted wait (PEP 475).
"""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable
from typing import Any

from profiler.intervals import IntervalBook
from profiler.target import Interrupted


class DeadlineReached(Interrupted):
    """--duration's time is up: stop tracing (raised in the main thread)."""

    def __init__(self) -> None:
        Exception.__init__(self, "the --duration deadline")
        self.signum = signal.SIGALRM


def raise_deadline() -> None:
    raise DeadlineReached()


class RunClock:
    """Ticks ``book`` every ``interval_s`` and calls ``on_deadline`` after
    ``duration_s``; SIGUSR1 shows the run so far.  A context manager: the
    timer and the handlers are in place only inside it."""

    def __init__(self, book: IntervalBook | None, interval_s: float | None,
                 duration_s: float | None,
                 on_deadline: Callable[[], None] = raise_deadline) -> None:
        self.book = book
        self.interval_s = interval_s if book is not None else None
        self.duration_s = duration_s
        self.on_deadline = on_deadline
        self.next_tick: float | None = None
        self.deadline: float | None = None
        self.deadline_passed = False
        self.failed = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> RunClock:
        now = time.monotonic()
        if self.interval_s:
            self.next_tick = now + self.interval_s
        if self.duration_s:
            self.deadline = now + self.duration_s
        if self.next_tick is not None or self.deadline is not None:
            # only then: SIGALRM stays whatever it was in a run without a timer
            self._previous[signal.SIGALRM] = signal.signal(signal.SIGALRM, self._alarm)
        if self.book is not None:
            self._previous[signal.SIGUSR1] = signal.signal(signal.SIGUSR1, self._usr1)
        self._arm(now)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if signal.SIGALRM in self._previous:
            signal.setitimer(signal.ITIMER_REAL, 0)
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _arm(self, now: float) -> None:
        due = [t for t in (self.next_tick, self.deadline) if t is not None]
        if due:
            signal.setitimer(signal.ITIMER_REAL, max(min(due) - now, 1e-4))

    def _alarm(self, _signum: int, _frame: Any) -> None:
        now = time.monotonic()
        if self.deadline is not None and now >= self.deadline - 1e-4:
            self.deadline = self.next_tick = None
            self.deadline_passed = True
            signal.setitimer(signal.ITIMER_REAL, 0)
            self.on_deadline()
            return
        if self.next_tick is not None and self.interval_s and now >= self.next_tick - 1e-4:
            if self.book is not None:
                self._safely(self.book.tick)
            while self.next_tick <= now:
                self.next_tick += self.interval_s
        self._arm(time.monotonic())

    def _usr1(self, _signum: int, _frame: Any) -> None:
        if self.book is not None:
            self._safely(self.book.so_far)

    def _safely(self, reading: Callable[[], None]) -> None:
        """A reading must never break the tracing it interrupts: a failure is
        said once on stderr and that reading skipped (the next interval then
        covers it; the sums stay exact)."""
        try:
            reading()
        except Exception as exc:  # whatever it is, tracing goes on
            if not self.failed:
                self.failed = True
                print(f"stprof: an interval reading failed ({exc}); tracing goes on",
                      file=sys.stderr)
