"""The eBPF collector's timeline: stprof.c's event buffer, read while the command runs.

With ``--timeline``, stprof.c (compiled with TIMELINE=1) sends each syscall,
timed fault, interrupt and thread end as a ``struct tl_event`` through
``tl_events``: a BPF ring buffer, or a perf buffer on kernels before 5.8.  A
thread of stprof polls it and hands each event to the profiler.timeline
writer, which streams it to a temporary file, so a long run's events never
pile up in memory.  Once the writer's limit is reached, ``tl_off`` tells the
kernel to stop sending (it counts what it skips); events the kernel could not
find room for are counted in ``tl_lost``.  Both counts end up in the file and
the profile's notes.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import struct
import threading
from typing import Any

from collectors import ebpf_read as read
from collectors.ebpf_plan import DEVICE_IRQS, IRQ_KINDS, TIMELINE_PAGES, TIMELINE_RING
from collectors.syscall_names import errno_name, syscall_name
from profiler.timeline import TimelineWriter

# struct tl_event: start, dur, value, tid, tgid, type, code
EVENT = struct.Struct("<QQqIIIi")
TL_SYSCALL, TL_FAULT, TL_IRQ, TL_THREAD, TL_UNFINISHED = range(5)
KIND_OF = {TL_SYSCALL: "syscall", TL_UNFINISHED: "syscall", TL_FAULT: "fault",
           TL_IRQ: "interrupt"}
MAX_ERRNO = 4095
POLL_MS = 50


def _ignore_lost(_count: int) -> None:
    """perf's own loss records: the kernel counts the same losses by kind (tl_lost)."""


class RingReader:
    """Drains ``tl_events`` into a writer from a thread of its own during a run."""

    def __init__(self, bpf: Any, syscalls: dict[int, str], buffer: str = TIMELINE_RING
                 ) -> None:
        self._bpf = bpf
        self._syscalls = syscalls
        self._names: dict[int, str] = {}
        self._writer: TimelineWriter | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._told_off = False
        self.error: BaseException | None = None
        self._ring = buffer == TIMELINE_RING
        if self._ring:
            bpf[b"tl_events"].open_ring_buffer(self._on_event)
        else:  # one per CPU; losses are counted in the kernel (tl_lost), by kind
            per_cpu = max(64, TIMELINE_PAGES // max(1, os.cpu_count() or 1))
            pages = 1 << (per_cpu.bit_length() - 1)  # a power of 2
            bpf[b"tl_events"].open_perf_buffer(self._on_event, page_cnt=pages,
                                              lost_cb=_ignore_lost)

    def _consume(self) -> None:
        if self._ring:
            self._bpf.ring_buffer_consume()
        else:
            self._bpf.perf_buffer_consume()

    def start(self, writer: TimelineWriter) -> None:
        """Empty what an earlier run left, then read into ``writer`` until :meth:`stop`."""
        self._writer = None
        self._consume()  # leftovers of an earlier run: dropped
        for name in ("tl_lost", "tl_skipped"):
            read.bpf_map(self._bpf, name).clear()
        self._set_off(False)
        self._irq_names = read.irq_names()
        self._writer = writer
        self.error = None
        self._stop.clear()
        self._thread = threading.Thread(target=self._poll, name="stprof-timeline", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Read what is left, then count what the kernel lost or skipped."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._consume()
        writer = self._writer
        if writer is not None:
            for name, count_in in (("tl_lost", writer.lose), ("tl_skipped", writer.skip)):
                table = read.bpf_map(self._bpf, name)
                for type_, kind in KIND_OF.items():
                    count = sum(int(v) for v in table[table.Key(type_)])
                    if count:
                        count_in(kind, count)
        self._writer = None

    def _poll(self) -> None:
        poll = self._bpf.ring_buffer_poll if self._ring else self._bpf.perf_buffer_poll
        while not self._stop.is_set():
            poll(POLL_MS)

    def _set_off(self, off: bool) -> None:
        table = read.bpf_map(self._bpf, "tl_off")
        table[table.Key(0)] = ctypes.c_uint32(1 if off else 0)
        self._told_off = off

    def _on_event(self, _ctx: Any, data: Any, _size: int) -> int:
        writer = self._writer
        if writer is None:
            return 0
        try:
            self._deliver(writer, EVENT.unpack(ctypes.string_at(data, EVENT.size)))
            if writer.stopped and not self._told_off:
                self._set_off(True)
        except Exception as exc:  # a callback from C must not raise: kept for stop()
            if self.error is None:
                self.error = exc
        return 0

    def _deliver(self, writer: TimelineWriter, event: tuple[int, ...]) -> None:
        start, dur, value, tid, tgid, type_, code = event
        if type_ == TL_SYSCALL:
            name = syscall_name(code, self._syscalls)
            if -MAX_ERRNO <= value < 0:
                writer.syscall(tgid, tid, name, start, dur, value, errno_name(-value))
            else:
                writer.syscall(tgid, tid, name, start, dur, value)
        elif type_ == TL_UNFINISHED:
            writer.syscall(tgid, tid, syscall_name(code, self._syscalls), start, dur)
        elif type_ == TL_FAULT:
            writer.fault(tgid, tid, start, dur, major=bool(value), in_syscall=bool(code))
        elif type_ == TL_IRQ:
            kind = IRQ_KINDS[code] if 0 <= code < len(IRQ_KINDS) else f"irq kind {code}"
            if kind == DEVICE_IRQS:
                writer.interrupt(tgid, tid, f"irq:{self._irq_names.get(value, value)}", start,
                                 dur, irq=value)
            else:
                writer.interrupt(tgid, tid, kind, start, dur)
        elif type_ == TL_THREAD:
            writer.thread(tid, tgid, start, start + dur)

    def abandon(self) -> None:
        """Stop reading after a failed run (the writer is the caller's to abort)."""
        with contextlib.suppress(Exception):
            self.stop()
