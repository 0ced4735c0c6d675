"""The timeline file: every syscall, fault and interrupt of a run as Chrome Trace Events.

The file is the JSON object form of Google's Trace Event Format, which
Perfetto UI, chrome://tracing and speedscope open (docs/timeline.md):

    {"traceEvents": [...], "displayTimeUnit": "ns", "metadata": {"stprof": {...}}}

One ``X`` (complete) event per syscall, page fault and interrupt; ``M``
events naming processes and threads; ``C`` counter events of each process's
cumulative page faults.  ``ts`` and ``dur`` are microseconds (with three
decimals: nanoseconds) since ``origin_ns`` on CLOCK_MONOTONIC.

The writer knows nothing of collectors: a collector feeds it events as they
come, and it writes each at once to a temporary file beside the destination,
so a long run never holds its events in memory; :meth:`TimelineWriter.finish`
appends the names, counters and metadata and renames the file into place.

``limit`` bounds the file: recording stops (a prefix of the run is kept) once
``limit`` syscall slices, or as many fault or interrupt slices, are written;
what came after is counted per kind in ``not_recorded``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from profiler.errors import InputError
from profiler.syscall_classes import classes_of

DEFAULT_LIMIT = 2_000_000
KINDS = ("syscall", "fault", "interrupt")
# a process's fault counter is written at most this often (trace time), and at its end
COUNTER_EVERY_NS = 100_000


def micros(ns: int) -> str:
    """``ns`` as microseconds with three decimals, exactly (no float rounding)."""
    sign = "-" if ns < 0 else ""
    whole, frac = divmod(abs(ns), 1000)
    return f"{sign}{whole}.{frac:03d}"


@dataclass
class ThreadLife:
    pid: int
    start_ns: int
    end_ns: int | None = None


@dataclass
class Summary:
    """What the file holds and what it lacks, for the profile's notes."""

    path: str
    recorded: dict[str, int] = field(default_factory=dict)
    not_recorded: dict[str, int] = field(default_factory=dict)
    lost: dict[str, int] = field(default_factory=dict)
    limit: int = DEFAULT_LIMIT
    limit_reached: bool = False

    def notes(self) -> list[str]:
        """One line per shortfall (none when every event is in the file)."""
        lines = []
        missing = {kind: n for kind, n in self.not_recorded.items() if n}
        if missing:
            what = ", ".join(f"{n} {kind}" for kind, n in missing.items())
            why = (f"--timeline-limit {self.limit} reached" if self.limit_reached else "")
            lost = sum(self.lost.values())
            if lost:
                why = (why + "; " if why else "") + (f"{lost} lost in the kernel's ring buffer "
                                                     "(the reader fell behind)")
            lines.append(f"timeline {self.path}: events not recorded: {what} ({why})")
        return lines


class TimelineWriter:
    """Streams events to ``path``'s temporary file; :meth:`finish` puts it in place."""

    def __init__(self, path: str | os.PathLike[str], limit: int = DEFAULT_LIMIT,
                 origin_ns: int = 0) -> None:
        self.path = Path(path)
        self.limit = limit
        self.origin_ns = origin_ns
        self.recorded = dict.fromkeys(KINDS, 0)
        self.not_recorded = dict.fromkeys(KINDS, 0)
        self.lost = dict.fromkeys(KINDS, 0)
        self.stopped = False
        self.threads: dict[int, ThreadLife] = {}
        self._pids_of: dict[int, int] = {}
        self._faults: dict[int, list[int]] = {}  # pid -> [minor, major, last counter ns]
        self._first = True
        self._heads: dict[str, str] = {}  # syscall name -> its event's text up to "ts"
        # a device, FIFO or link (/dev/stdout) is written through at the end, never
        # replaced: its temporary file is elsewhere
        self._in_place = self.path.is_symlink() or (self.path.exists()
                                                    and not self.path.is_file())
        where = Path(tempfile.gettempdir()) if self._in_place else self.path.parent
        self._tmp = where / f".{self.path.name}.{os.getpid()}.tmp"
        try:
            self._out: IO[str] = self._tmp.open("w", encoding="utf-8")
            self._out.write('{"traceEvents": [\n')
        except OSError as exc:
            raise InputError(f"{self.path}: cannot write ({exc.strerror})") from None

    # ------------------------------------------------------------ events
    def _room(self, kind: str) -> bool:
        """Whether one more event of ``kind`` goes in; counts it either way."""
        if self.stopped:
            self.not_recorded[kind] += 1
            return False
        self.recorded[kind] += 1
        if self.recorded[kind] >= self.limit:
            self.stopped = True
        return True

    def _write(self, text: str) -> None:
        if self._first:
            self._first = False
            self._out.write(text)
        else:
            self._out.write(",\n")
            self._out.write(text)

    def _seen(self, pid: int, tid: int) -> None:
        if tid not in self._pids_of:
            self._pids_of[tid] = pid

    def syscall(self, pid: int, tid: int, name: str, start_ns: int, dur_ns: int,
                ret: int | None = None, errno: str | None = None) -> None:
        """A syscall from entry to exit; ``ret`` None: it never returned (exit, death)."""
        if not self._room("syscall"):
            return
        if tid not in self._pids_of:
            self._pids_of[tid] = pid
        if errno is not None:
            args = f'{{"errno": "{errno}", "ret": {ret}}}'
        elif ret is None:
            args = '{"returned": false}'
        else:
            args = f'{{"ret": {ret}}}'
        head = self._heads.get(name)
        if head is None:
            head = self._heads[name] = (f'{{"ph": "X", "name": {json.dumps(name)}, '
                                        f'"cat": "{",".join(classes_of(name))}", "ts": ')
        start = start_ns - self.origin_ns
        self._write(f'{head}{start // 1000}.{start % 1000:03d}, "dur": {dur_ns // 1000}.'
                    f'{dur_ns % 1000:03d}, "pid": {pid}, "tid": {tid}, "args": {args}}}'
                    if start >= 0 and dur_ns >= 0 else
                    f'{head}{micros(start)}, "dur": {micros(dur_ns)}, "pid": {pid}, '
                    f'"tid": {tid}, "args": {args}}}')

    def fault(self, pid: int, tid: int, start_ns: int, dur_ns: int, major: bool,
              in_syscall: bool) -> None:
        """A timed page fault (nested in the syscall it hit when ``in_syscall``)."""
        if not self._room("fault"):
            return
        self._seen(pid, tid)
        kind = "major" if major else "minor"
        self._write(f'{{"ph": "X", "name": "page fault", "cat": "fault", '
                    f'"ts": {micros(start_ns - self.origin_ns)}, "dur": {micros(dur_ns)}, '
                    f'"pid": {pid}, "tid": {tid}, "args": {{"{kind}": 1, '
                    f'"in_syscall": {"true" if in_syscall else "false"}}}}}')
        counts = self._faults.setdefault(pid, [0, 0, -COUNTER_EVERY_NS])
        counts[1 if major else 0] += 1
        end = start_ns + dur_ns
        if end - counts[2] >= COUNTER_EVERY_NS:
            counts[2] = end
            self._counter(pid, end, counts[0], counts[1])

    def interrupt(self, pid: int, tid: int, kind: str, start_ns: int, dur_ns: int,
                  irq: int | None = None) -> None:
        """An interrupt (``kind`` e.g. local_timer, softirq:TIMER, irq:virtio0) on a
        traced thread's CPU."""
        if not self._room("interrupt"):
            return
        self._seen(pid, tid)
        cat = "softirq" if kind.startswith("softirq") else "irq"
        args = f'{{"kind": {json.dumps(kind)}' + (f', "irq": {irq}}}' if irq is not None
                                                  else "}")
        self._write(f'{{"ph": "X", "name": {json.dumps(kind)}, "cat": "{cat}", '
                    f'"ts": {micros(start_ns - self.origin_ns)}, "dur": {micros(dur_ns)}, '
                    f'"pid": {pid}, "tid": {tid}, "args": {args}}}')

    def _counter(self, pid: int, at_ns: int, minor: int, major: int) -> None:
        self._write(f'{{"ph": "C", "name": "page faults", "ts": '
                    f'{micros(at_ns - self.origin_ns)}, "pid": {pid}, "tid": {pid}, '
                    f'"args": {{"minor": {minor}, "major": {major}}}}}')

    def thread(self, tid: int, pid: int, start_ns: int, end_ns: int | None = None) -> None:
        """A traced thread's life (its end may come later through :meth:`thread_end`)."""
        life = self.threads.get(tid)
        if life is None or life.end_ns is not None:  # new, or a tid reused
            self.threads[tid] = ThreadLife(pid, start_ns, end_ns)
        elif end_ns is not None:
            life.end_ns = end_ns

    def thread_end(self, tid: int, end_ns: int) -> None:
        life = self.threads.get(tid)
        if life is not None and life.end_ns is None:
            life.end_ns = end_ns

    def lose(self, kind: str, count: int) -> None:
        """Events the collector could not deliver (e.g. a full ring buffer)."""
        self.lost[kind] += count
        self.not_recorded[kind] += count

    def skip(self, kind: str, count: int) -> None:
        """Events left out after the limit without reaching the writer."""
        self.not_recorded[kind] += count

    # ------------------------------------------------------------ ending
    def finish(self, end_ns: int, names: dict[int, str], about: dict[str, Any],
               fault_totals: dict[int, tuple[int, int]] | None = None) -> Summary:
        """Name processes and threads, close open lives at ``end_ns``, write the
        metadata and move the file into place.

        ``fault_totals`` (pid -> (minor, major)) gives each process's final fault
        counter where the collector saw no fault slices (ptrace).
        """
        for tid, life in self.threads.items():
            if life.end_ns is None:
                life.end_ns = end_ns
            self._pids_of.setdefault(tid, life.pid)
        pids = sorted(set(self._pids_of.values()) | {life.pid for life in self.threads.values()})
        for pid in pids:
            name = names.get(pid, str(pid))
            self._write(f'{{"ph": "M", "name": "process_name", "ts": 0, "pid": {pid}, '
                        f'"tid": {pid}, "args": {{"name": {json.dumps(name)}}}}}')
        for tid, pid in sorted(self._pids_of.items()):
            name = names.get(pid, str(pid))
            label = name if tid == pid else f"{name} (thread {tid})"
            self._write(f'{{"ph": "M", "name": "thread_name", "ts": 0, "pid": {pid}, '
                        f'"tid": {tid}, "args": {{"name": {json.dumps(label)}}}}}')
        self._final_counters(end_ns, fault_totals)
        meta = self._metadata(about)
        trailer = ('\n],\n"displayTimeUnit": "ns",\n"metadata": {"stprof": '
                   + json.dumps(meta) + "}\n}\n")
        try:
            self._out.write(trailer)
            self._out.close()
            if self._in_place:
                with self._tmp.open("rb") as source, self.path.open("wb") as target:
                    shutil.copyfileobj(source, target)
                self._tmp.unlink()
            else:
                os.replace(self._tmp, self.path)
        except OSError as exc:
            self.abort()
            raise InputError(f"{self.path}: cannot write ({exc.strerror})") from None
        return Summary(str(self.path), dict(self.recorded), dict(self.not_recorded),
                       dict(self.lost), self.limit, self.stopped)

    def _final_counters(self, end_ns: int, totals: dict[int, tuple[int, int]] | None) -> None:
        lives: dict[int, tuple[int, int]] = {}
        for life in self.threads.values():
            first, last = lives.get(life.pid, (life.start_ns, life.end_ns or end_ns))
            lives[life.pid] = (min(first, life.start_ns), max(last, life.end_ns or end_ns))
        for pid, (first, last) in sorted(lives.items()):
            if totals is not None:
                minor, major = totals.get(pid, (0, 0))
                self._counter(pid, first, 0, 0)
                self._counter(pid, last, minor, major)
            elif pid in self._faults:
                minor, major, _ = self._faults[pid]
                self._counter(pid, last, minor, major)

    def _metadata(self, about: dict[str, Any]) -> dict[str, Any]:
        return {
            **about,
            "clock": "CLOCK_MONOTONIC",
            "origin_ns": self.origin_ns,
            "time_unit": "ts and dur: microseconds since origin_ns (3 decimals: ns)",
            "events": dict(self.recorded),
            "not_recorded": dict(self.not_recorded),
            "lost": dict(self.lost),
            "limit": self.limit,
            "limit_reached": self.stopped,
            "threads": [{"tid": tid, "pid": life.pid,
                         "start": float(micros(life.start_ns - self.origin_ns)),
                         "end": float(micros((life.end_ns or life.start_ns) - self.origin_ns))}
                        for tid, life in sorted(self.threads.items())],
        }

    def abort(self) -> None:
        """Drop the temporary file (the run failed)."""
        if not self._out.closed:
            self._out.close()
        self._tmp.unlink(missing_ok=True)
