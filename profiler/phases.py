"""Where a run's wall time goes: named phases, timed for ``stprof run -v`` and
``stprof doctor --timing``.

A phase is timed with ``with phase("compile"):``; that costs two clock reads
and an append, and is used only around the few start-up and teardown steps
of a run (never per event).  With ``echo(True)`` each phase is also said on
stderr as it ends.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

_recorded: list[tuple[str, float]] = []
_echo = False


@contextmanager
def phase(name: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        record(name, time.perf_counter() - started)


def record(name: str, seconds: float) -> None:
    _recorded.append((name, seconds))
    if _echo:
        print(f"stprof: timing: {name}: {seconds * 1000:.0f} ms", file=sys.stderr)


def echo(on: bool) -> None:
    """Say each phase on stderr as it ends (``stprof run -v``)."""
    global _echo
    _echo = on


def recorded() -> list[tuple[str, float]]:
    """The phases timed so far, in the order they ended."""
    return list(_recorded)


def forget() -> None:
    _recorded.clear()


def since_exec() -> float | None:
    """Seconds since this process was exec'd (the Python interpreter's start-up and
    imports included), to 1/CLK_TCK (10 ms); None where /proc cannot say."""
    try:
        with open("/proc/self/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22: starttime
        return max(0.0, time.clock_gettime(time.CLOCK_BOOTTIME) - started)
    except (OSError, ValueError, IndexError, AttributeError):
        return None
