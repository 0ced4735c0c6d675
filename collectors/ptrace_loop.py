"""The ptrace collector's tracer: one lean wait loop over a whole process tree.

Per syscall the tracer sees two stops (entry and exit).  Each stop costs a
wake-up of stprof and of the tracee, and every syscall stprof itself makes
costs more than a microsecond on a virtual machine, so the loop does the
least per stop:

- entry stop: ``waitpid``, a timestamp, ``PTRACE_SYSCALL``.  On x86-64 the
  entry is taken on trust from the thread's state (it was outside a syscall);
  elsewhere ``PTRACE_GET_SYSCALL_INFO`` reads it.
- exit stop: ``waitpid``, a timestamp, one read of the syscall's number and
  result (x86-64: ``PTRACE_GETREGS``, orig_rax and rax; elsewhere
  ``PTRACE_GET_SYSCALL_INFO``), ``PTRACE_SYSCALL``, then the counting, after
  the resume so that the tracee already runs.

The trust is checked: every x86-64 entry stop shows ``rax == -ENOSYS``, so
an exit stop showing anything else is an exit; for the rare real ENOSYS
result ``PTRACE_GET_SYSCALL_INFO`` decides, and an entry taken for an exit
puts the thread back in step.  Anything that is not a syscall-stop (events,
signals, exits) goes to the slower, readable :meth:`Tracer.handle_stop`.

Two loops do this.  The compiled one (collectors/ptrace_fast.c, through
collectors/ptrace_fast.py) takes the syscall-stops and the common other
stops (signal deliveries, a new child's first stop, fork and vfork events,
deaths) of known threads, resumes them at once and hands Python batches of
records to count (:meth:`Tracer._count_batch`); it gives Python every other
stop (:meth:`Tracer._python_stop`).  The Python loop (:meth:`Tracer._one_stop`
for each stop) runs where the compiled one is not built, or not on x86-64.
Both poll for the next stop a little before they sleep (see ptrace_fast.c).

State is kept in plain lists for speed:

- per thread ``[pending, entry_ns, process_counters, tgid]``; ``pending``
  is -1 outside a syscall, else the syscall number or ``UNKNOWN_NR`` when
  the number is read only at the exit;
- per process ``[calls, errors, corrected_ns]``;
- per syscall number, see ``S_*`` below.

Syscalls that never reach their exit stop (``exit``, ``exit_group``, or a
call cut short by its thread's exit) are counted as calls with no time:
they add to ``calls`` but not to the time, min, max or histogram.  A thread
killed outright (SIGKILL, another thread's exit_group) gives no exit stop;
its unfinished call is counted only if its number is known (``lost_calls``
counts the others).  A successful ``execve`` is timed up to its exit stop
in the new program.

Restarts.  A call interrupted by a signal reaches its exit stop with one of
the kernel's restart codes (ERESTARTSYS, ERESTARTNOINTR, ERESTARTNOHAND,
ERESTART_RESTARTBLOCK); what the program sees is decided after that stop,
when the signal is handled: the kernel re-enters the call (the same number,
or ``restart_syscall`` for ERESTART_RESTARTBLOCK), or, where a handler runs
and the code allows it, the call fails with EINTR.  Such an exit is not a
call: it is kept as the thread's interrupted attempt (``interrupted``) until
the kernel's choice shows (off the hot path; the loop pays one test of an
empty dict per exit stop, and one comparison per error):

- the thread's next exit of the same syscall or of ``restart_syscall``: the
  call was restarted.  It counts once, under its own name (a
  ``restart_syscall`` resuming ``clock_nanosleep`` is a ``clock_nanosleep``
  call), with the time of all its attempts (not the signal handler's in
  between), and the syscall's ``restarts`` counts each re-entry;
- ``rt_sigreturn`` returning -EINTR (the handler's frame held the EINTR the
  kernel put there): one call of the interrupted syscall, failed with EINTR,
  timed as its attempt;
- the thread's death first: one call, timed as its attempt.

Other calls in between (the signal handler's) leave it pending.  One attempt
is kept per thread: a second interruption inside the handler of the first
replaces it (the first one's re-entry still counts as its call, but neither
its restart nor, if it ends in EINTR, the call).  Within the stats (``S_*``),
``S_RESTARTS`` counts re-entries.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import gc
import os
import signal
import time
from dataclasses import dataclass, field
from typing import Any

from collectors import ptrace_abi as abi
from collectors.ptrace_fast import (
    EVENT_BASE,
    EVENT_CHILD,
    FULL,
    IDLE,
    OTHER,
    RECORD_FIELDS,
    SPIN_NS,
    FastPath,
)
from collectors.ptrace_fast import unavailable_reason as fast_path_unavailable
from profiler.errors import TracingError
from profiler.target import decode_wait_status

# per-syscall counters
S_CALLS, S_ERRORS, S_TOTAL, S_RAW, S_MIN, S_MAX, S_HIST, S_ERRNOS, S_UNTIMED, S_RESTARTS = range(10)
NO_MIN = 1 << 62
HIST_SLOTS = 65  # int.bit_length() of a non-negative int64, plus one
OUTSIDE = -1
UNKNOWN_NR = 1 << 40  # in a syscall whose number is read at its exit
# the kernel's restart codes (include/linux/errno.h), as positive errnos:
# ERESTARTSYS 512, ERESTARTNOINTR 513, ERESTARTNOHAND 514, (ENOIOCTLCMD 515,
# never returned by a syscall), ERESTART_RESTARTBLOCK 516
RESTART_LOW, RESTART_HIGH = 512, 516
EINTR = 4
# the Python loop's polls for the next stop before it sleeps (about 0.5 us
# each; the compiled loop polls by the clock: see ptrace_fast.c)
SPIN_POLLS = 100

STOP_SIGNALS = frozenset({signal.SIGSTOP, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU})


def new_stat() -> list[Any]:
    return [0, 0, 0, 0, NO_MIN, 0, [0] * HIST_SLOTS, {}, 0, 0]


@dataclass
class ProcRecord:
    """One traced process: its threads, counters and /proc snapshots."""

    pid: int
    ppid: int | None
    comm: str
    counters: list[int] = field(default_factory=lambda: [0, 0, 0])
    tids: set[int] = field(default_factory=set)
    exit_status: int | None = None
    last: abi.ProcStat | None = None
    baseline: abi.ProcStat | None = None

    def snapshot(self) -> None:
        """Read the process-wide /proc counters (they only grow: keep the latest)."""
        current = abi.proc_stat(self.pid)
        if current is None:
            return
        self.last = current
        if current.comm:
            self.comm = current.comm


class TracerGone(TracingError):
    """waitpid found no tracee left although some were expected."""


class Tracer:
    """Traces one process tree; one instance per run (counters start at zero).

    ``overhead_ns`` is subtracted from each timed call (clamped at 0);
    ``sample_nr`` keeps every raw duration of that syscall number in
    ``samples`` (the overhead calibration uses it).  ``entry_info`` forces
    ``PTRACE_GET_SYSCALL_INFO`` at every stop, the method used where the
    registers cannot tell an entry from an exit.
    """

    def __init__(
        self,
        *,
        overhead_ns: int = 0,
        follow: bool = True,
        exit_kill: bool = True,
        sample_nr: int = -2,
        rt_sigreturn_nr: int = -2,
        restart_syscall_nr: int = -2,
        entry_info: bool = False,
        timeline: Any = None,
        per_task: bool = False,
        wanted: frozenset[int] | None = None,
        seccomp: bool = False,
        poll: bool = True,
        held_signals: frozenset[int] = frozenset(),
    ) -> None:
        self.binding = abi.load()
        self.overhead_ns = overhead_ns
        self.options = abi.BASE_OPTIONS
        # -e trace=SET: the syscall numbers counted (None: all).  With ``seccomp``
        # the tracees run a filter (collectors.ptrace_seccomp) that stops them only
        # at those: resumed with PTRACE_CONT outside a traced call (see resume())
        self.wanted = wanted
        self.seccomp = seccomp
        # how a thread outside a traced call is resumed: PTRACE_SYSCALL until the
        # command's execve (until_exec steps through stprof's gate), then with
        # the seccomp filter PTRACE_CONT
        self._resume_outside = abi.PTRACE_SYSCALL
        if seccomp:
            self.options |= abi.PTRACE_O_TRACESECCOMP
        if follow:
            self.options |= abi.FOLLOW_OPTIONS
        if exit_kill:
            self.options |= abi.PTRACE_O_EXITKILL
        self.sample_nr = sample_nr
        self.rt_sigreturn_nr = rt_sigreturn_nr
        self.restart_syscall_nr = restart_syscall_nr
        # tid -> [nr, corrected_ns, raw_ns] of its interrupted attempt (see the top)
        self.interrupted: dict[int, list[int]] = {}
        self.samples: list[int] = []
        self.threads: dict[int, list[Any]] = {}
        self.stats: dict[int, list[Any]] = {}
        self.procs: dict[int, ProcRecord] = {}
        self.root: int | None = None
        self.root_status: int | None = None
        self.root_exit_ns: int | None = None
        self.lost_calls = 0
        self.resyncs = 0
        # --timeline: ptracer.TimelineFeed, called once per call (None: no cost but a test)
        self.timeline = timeline
        # --per-process/--per-thread: tid -> nr -> [calls, errors, total_ns], and
        # tid -> tgid (None: not asked for; the loop then pays one test per call)
        self.per_task: dict[int, dict[int, list[int]]] | None = {} if per_task else None
        self.task_pid: dict[int, int] = {}
        self.task_comm: dict[int, str] = {}  # a thread's name when first seen
        self._info = abi.SyscallInfo()
        self._info_addr = abi.pointer_to(self._info)
        regs_type = None if entry_info else self.binding.regs
        self._regs: Any = regs_type() if regs_type is not None else None
        self._regs_addr = abi.pointer_to(self._regs) if self._regs is not None else None
        # after an exit: with the seccomp filter, run on to the next traced call
        self._cont_exit = abi.PTRACE_CONT if seccomp else abi.PTRACE_SYSCALL
        self._seccomp_stop = abi.SECCOMP_STOP_STATUS if seccomp else -1
        # the compiled loop (collectors/ptrace_fast.c), where it can run
        self.fast_unavailable = fast_path_unavailable()
        if self.fast_unavailable is None and self._regs is None:
            self.fast_unavailable = "the registers cannot tell an entry from an exit here"
        # signals whose handlers may raise (--duration's deadline, attach mode's
        # Ctrl-C): held off while the compiled loop's batch is counted, so that
        # the tracing never stops in the middle of one
        self.held_signals = held_signals
        # poll: wait for the next stop polling a while before sleeping (see ptrace_fast.c)
        self.poll = poll
        self.fast = (FastPath(self._cont_exit, SPIN_NS if poll else 0)
                     if self.fast_unavailable is None else None)

    @property
    def method(self) -> str:
        if self._regs is not None:
            return "entry from thread state, exit from PTRACE_GETREGS"
        return "PTRACE_GET_SYSCALL_INFO at entry and exit"

    @property
    def loop_kind(self) -> str:
        """Which loop takes the syscall-stops, and if Python's, why."""
        if self.fast is not None:
            return "compiled (collectors/ptrace_fast.c)"
        return f"Python ({self.fast_unavailable})"

    def close(self) -> None:
        """Free the compiled loop's memory (the tracer is done)."""
        if self.fast is not None:
            self.fast.close()
            self.fast = None

    # ------------------------------------------------------------ attaching
    def seize(self, tid: int) -> None:
        """PTRACE_SEIZE with our options, then PTRACE_INTERRUPT so it stops."""
        call = self.binding.call
        call(abi.PTRACE_SEIZE, tid, 0, self.options)
        call(abi.PTRACE_INTERRUPT, tid, 0, 0)

    def adopt(self, tid: int) -> list[Any] | None:
        """Register a tracee seen for the first time; None if it vanished."""
        ids = abi.task_ids(tid)
        if ids is None:
            return None
        return self._register(tid, ids.tgid, ids.ppid, ids.name)

    def adopt_child(self, pid: int, parent: list[Any], at_ns: int | None = None) -> list[Any]:
        """Register the new process of a fork or vfork event of thread state
        ``parent`` (at ``at_ns``, default now): its own process, its parent the
        forking one, its name that one's (until it execs).  No /proc read."""
        return self._register(pid, pid, parent[3], self.procs[parent[3]].comm, at_ns)

    def _register(self, tid: int, tgid: int, ppid: int, name: str,
                  at_ns: int | None = None) -> list[Any]:
        proc = self.procs.get(tgid)
        if proc is None:
            proc = self.procs[tgid] = ProcRecord(tgid, ppid, name)
        proc.tids.add(tid)
        state = self.threads[tid] = [OUTSIDE, 0, proc.counters, tgid]
        if self.per_task is not None:
            self.task_comm[tid] = name
        if self.timeline is not None:
            self.timeline.thread(tid, state, time.monotonic_ns() if at_ns is None else at_ns)
        return state

    def forget(self, tid: int) -> None:
        """Undo :meth:`adopt` for a task that could not be seized."""
        st = self.threads.pop(tid, None)
        if st is None:
            return
        proc = self.procs[st[3]]
        proc.tids.discard(tid)
        if not proc.tids:
            del self.procs[st[3]]

    def resume(self, tid: int, sig: int = 0) -> None:
        request = abi.PTRACE_SYSCALL
        if self.seccomp:  # only a traced call in progress needs its exit stop
            st = self.threads.get(tid)
            if st is None or st[0] == OUTSIDE:
                request = self._resume_outside
        self.binding.raw(request, tid, 0, sig)

    def _seccomp_entry(self, tid: int, st: list[Any], t: int) -> None:
        """A PTRACE_EVENT_SECCOMP stop: the entry of a call of the trace set.

        Resumed with PTRACE_SYSCALL, the thread stops next at the call's exit.
        A thread already in a call (its entry seen as a syscall-stop before its
        execve, in :meth:`until_exec`) keeps that entry.
        """
        if st[0] == OUTSIDE:
            st[0] = UNKNOWN_NR if self._regs is not None else self._seccomp_nr(tid)
            st[1] = t
        self.binding.raw(abi.PTRACE_SYSCALL, tid, 0, 0)

    def _seccomp_nr(self, tid: int) -> int:
        info = self._info
        if self.binding.raw(abi.PTRACE_GET_SYSCALL_INFO, tid, ctypes.sizeof(info),
                            abi.pointer_to(info)) == abi.FAILED:
            return UNKNOWN_NR
        return int(info.value)  # seccomp.nr, at entry.nr's offset

    # ------------------------------------------------------------ hot loop
    def loop(self) -> None:
        """Trace until the root process has exited and been reaped.

        Without a root, until no tracee is left.  Tracees still alive when
        the root is gone (background descendants) are left in ``threads``,
        still traced: :meth:`detach_all` lets them go.

        The loop makes no reference cycles, so the cyclic garbage collector
        is paused meanwhile: its passes would land inside measured calls.
        """
        collecting = gc.isenabled()
        gc.disable()
        try:
            if self.fast is not None:
                self._fast_loop(self.fast)
            else:
                self._python_loop()
        finally:
            if collecting:
                gc.enable()

    def _python_loop(self) -> None:
        """Every stop in Python (no compiled fast path here)."""
        threads = self.threads
        waitpid = os.waitpid
        mono = time.monotonic_ns
        one_stop = self._one_stop
        wall = abi.WALL
        nohang = wall | os.WNOHANG
        spin = range(SPIN_POLLS if self.poll else 0)
        while threads:
            try:
                for _ in spin:  # poll a while before sleeping: see ptrace_fast.c
                    tid, status = waitpid(-1, nohang)
                    if tid:
                        break
                else:
                    tid, status = waitpid(-1, wall)
            except ChildProcessError:
                raise TracerGone(f"{len(threads)} tracee(s) vanished") from None
            if one_stop(tid, status, mono()):
                break

    def _fast_loop(self, fast: FastPath) -> None:
        """Syscall-stops and the common other stops in C (collectors/ptrace_fast.c),
        the rest in Python.

        Python takes the thread states from the fast path before it handles a
        stop and gives them back after.  Finished calls, and the bookkeeping
        of the stops the fast path handled (a new child, a death), come in
        batches, counted with the signals whose handlers raise held off
        (``held_signals``: the deadline must not cut a batch in two).
        """
        threads = self.threads
        waitpid = os.waitpid
        mono = time.monotonic_ns
        python_stop = self._python_stop
        wall = abi.WALL
        held = self.held_signals
        block, unblock = signal.SIG_BLOCK, signal.SIG_SETMASK
        mask = signal.pthread_sigmask
        count_batch = self._count_batch

        def count() -> bool:  # True once the root's death is counted
            if not held:
                return count_batch(fast.take_batch())
            before = mask(block, held)
            try:
                return count_batch(fast.take_batch())
            finally:
                mask(unblock, before)

        fast.loop.resume_outside = self._resume_outside
        fast.put_states(threads)
        try:
            while threads:
                code = fast.step()
                ended = bool(fast.loop.count) and count()
                if code == OTHER:
                    tid, status, t = (fast.loop.other_tid, fast.loop.other_status,
                                      fast.loop.other_ns)
                    if python_stop(fast, tid, status, t) or ended:
                        break
                    continue
                if ended:
                    break
                if code == FULL:
                    continue
                if code == IDLE:
                    try:
                        tid, status = waitpid(-1, wall)
                    except ChildProcessError:
                        raise TracerGone(f"{len(threads)} tracee(s) vanished") from None
                    t = mono()
                    if not fast.woken(tid, status, t):
                        if python_stop(fast, tid, status, t):
                            break
                    elif fast.loop.count and count():
                        break
                    continue
                if fast.loop.error == errno.ECHILD:
                    raise TracerGone(f"{len(threads)} tracee(s) vanished")
                raise TracingError(f"waitpid failed: {os.strerror(fast.loop.error)}")
        finally:
            fast.get_states(threads)

    def _python_stop(self, fast: FastPath, tid: int, status: int, t: int) -> bool:
        """A stop the fast path left to Python, with the thread states handed over:
        the stopped thread's, those of threads the stop adds or ends (all of
        them for an exec, which takes over another thread's state)."""
        threads = self.threads
        if status >> 16 == abi.PTRACE_EVENT_EXEC:
            fast.get_states(threads)
            done = self._one_stop(tid, status, t)
            fast.put_states(threads)
            return done
        known = set(threads)
        st = threads.get(tid)
        if st is not None:
            fast.get_state(tid, st)
        done = self._one_stop(tid, status, t)
        now = threads.keys()
        for gone in known - now:
            fast.remove(gone)
        for changed in (now - known) | ({tid} & now):
            fast.set(changed, threads[changed])
        return done

    def _count_batch(self, values: list[int]) -> bool:
        """Count what the fast path did (6 values a record, see ptrace_fast.c):
        finished calls, and the bookkeeping of the stops it handled.  True if
        the root's death was among them."""
        threads = self.threads
        overhead = self.overhead_ns
        add_call = self._add_call
        count_call = self._count_exit
        sigreturn = self.rt_sigreturn_nr
        no_syscall = abi.ULONG - 1
        error_rax, ulong = abi.ERROR_RAX, abi.ULONG
        event_base = EVENT_BASE
        plain = (self.wanted is None and self.per_task is None and self.timeline is None
                 and self.sample_nr < 0)
        interrupted = self.interrupted
        root_gone = False
        for i in range(0, len(values), RECORD_FIELDS):
            tid, nr, rax, entry_ns, t, extra = values[i : i + RECORD_FIELDS]
            if nr >= event_base and nr != no_syscall:
                root_gone |= self._fast_event(tid, nr - event_base, rax, entry_ns, t, extra)
                continue
            if nr == no_syscall:  # rt_sigreturn restored a frame with orig_rax = -1
                nr = sigreturn
            err = ulong - rax if rax >= error_rax else 0
            if plain and not interrupted and (err == 0 or err < RESTART_LOW):
                raw_ns = t - entry_ns
                d = raw_ns - overhead
                add_call(nr, threads[tid][2], d if d > 0 else 0, raw_ns,
                         err if nr != sigreturn else 0)
            else:
                count_call(tid, threads[tid], nr, err, rax, entry_ns, t)
        return root_gone

    def _fast_event(self, tid: int, kind: int, a: int, b: int, c: int, d: int) -> bool:
        """The bookkeeping of a stop the fast path handled; True if the root died."""
        if kind == EVENT_CHILD:  # a: the new pid (already known to the fast path)
            if a not in self.threads:
                self.adopt_child(a, self.threads[tid], at_ns=c)
            return False
        # EVENT_DEATH: a the wait status, b the call then pending, c its entry, d when
        st = self.threads.get(tid)
        if st is None:
            return False
        st[0] = b - abi.ULONG if b >= abi.ULONG // 2 else b  # OUTSIDE is -1
        st[1] = c
        self._gone(tid, st, a, d)
        return tid == self.root

    def _one_stop(self, tid: int, status: int, t: int) -> bool:
        """One stop, in Python; True when the loop ends (the root is reaped)."""
        threads = self.threads
        if status != abi.SYSCALL_STOP_STATUS:
            if status == self._seccomp_stop and tid in threads:
                self._seccomp_entry(tid, threads[tid], t)
                return False
            self.handle_stop(tid, status, t)
            return tid == self.root and self.root not in threads
        st = threads.get(tid)
        if st is None:
            st = self.adopt(tid)
            if st is None:
                return False
        ptrace = self.binding.raw
        regs = self._regs
        if regs is not None:
            if st[0] == OUTSIDE:  # an entry: its number is read at the exit
                ptrace(abi.PTRACE_SYSCALL, tid, 0, 0)
                st[0], st[1] = UNKNOWN_NR, t
                return False
            if ptrace(abi.PTRACE_GETREGS, tid, 0, self._regs_addr) == abi.FAILED:
                return False  # killed meanwhile: its exit is reported next
            ret = regs.rax
            nr = regs.orig_rax
            if ret == abi.ENOSYS_RAX and self._is_entry(tid):  # out of step: an entry
                ptrace(abi.PTRACE_SYSCALL, tid, 0, 0)
                st[0], st[1] = UNKNOWN_NR, t
                return False
            ptrace(self._cont_exit, tid, 0, 0)
            if nr == abi.ULONG - 1:  # rt_sigreturn restored a frame with orig_rax = -1
                nr = self.rt_sigreturn_nr
            err = abi.ULONG - ret if ret >= abi.ERROR_RAX else 0
        else:
            info = self._info
            if ptrace(abi.PTRACE_GET_SYSCALL_INFO, tid, ctypes.sizeof(info),
                      self._info_addr) == abi.FAILED:
                return False
            op = info.op
            if op == abi.OP_ENTRY:
                ptrace(abi.PTRACE_SYSCALL, tid, 0, 0)
                st[0], st[1] = info.value, t
                return False
            ret = info.value
            err = -ret if info.is_error else 0
            ptrace(self._cont_exit, tid, 0, 0)
            nr = st[0]
            if op != abi.OP_EXIT or nr == OUTSIDE:
                return False  # not a syscall stop we know, or an exit whose entry we missed
        st[0] = OUTSIDE
        self._count_exit(tid, st, nr, err, ret, st[1], t)
        return False

    def _count_exit(self, tid: int, st: list[Any], nr: int, err: int, ret: int,
                    entry_ns: int, t: int) -> None:
        """Count the exit of ``nr`` (``err`` its errno, 0 on success; ``ret`` the
        raw result for the timeline), entered at ``entry_ns``."""
        raw_ns = t - entry_ns
        d = raw_ns - self.overhead_ns
        if d < 0:
            d = 0
        sigreturn = self.rt_sigreturn_nr
        if err and RESTART_LOW <= err <= RESTART_HIGH and nr != sigreturn:
            self._interrupt(tid, nr, d, raw_ns, entry_ns)  # not a call (yet): see the top
            return
        if self.interrupted and tid in self.interrupted:
            nr, d, raw_ns = self._resume_interrupted(tid, st, nr, err, d, raw_ns)
        if self.wanted is not None and nr not in self.wanted:
            return  # -e trace=SET: not one of the set's (stopped all the same)
        failed = err if nr != sigreturn else 0
        self._add_call(nr, st[2], d, raw_ns, failed)
        if self.per_task is not None:
            self.count_task(tid, st[3], nr, d, failed != 0)
        if nr == self.sample_nr:
            self.samples.append(raw_ns)
        if self.timeline is not None:  # a restarted call's slice is its last attempt
            self.timeline(tid, st[3], nr, entry_ns, min(d, t - entry_ns), err, ret)

    def _add_call(self, nr: int, process: list[int], d: int, raw_ns: int, err: int) -> None:
        """One timed call of ``nr`` (``err``: its errno, 0 if it succeeded) in the
        syscall's and the process's counters."""
        s = self.stats.get(nr)
        if s is None:
            s = self.stats[nr] = new_stat()
        s[0] += 1
        s[2] += d
        s[3] += raw_ns
        if d < s[4]:
            s[4] = d
        if d > s[5]:
            s[5] = d
        s[6][d.bit_length()] += 1
        process[0] += 1
        process[2] += d
        if err:
            s[1] += 1
            process[1] += 1
            errnos = s[7]
            errnos[err] = errnos.get(err, 0) + 1

    # ------------------------------------------------------------ restarts
    def _interrupt(self, tid: int, nr: int, d: int, raw_ns: int, entry_ns: int) -> None:
        """An exit with a restart code: keep the attempt until its fate shows."""
        attempt = self.interrupted.get(tid)
        if attempt is not None and nr in (attempt[0], self.restart_syscall_nr):
            self._stat(attempt[0])[S_RESTARTS] += 1  # re-entered, interrupted again
            attempt[1] += d
            attempt[2] += raw_ns
            return
        self.interrupted[tid] = [nr, d, raw_ns, entry_ns]

    def _resume_interrupted(
        self, tid: int, st: list[Any], nr: int, err: int, d: int, raw_ns: int
    ) -> tuple[int, int, int]:
        """The exit of (nr, err) in a thread with an interrupted attempt.

        Returns the call to count for this exit: the attempt's syscall with
        all its time if this is its re-entry, else this exit as it is.
        """
        attempt = self.interrupted[tid]
        if nr == attempt[0] or nr == self.restart_syscall_nr:
            del self.interrupted[tid]
            self._stat(attempt[0])[S_RESTARTS] += 1
            return attempt[0], d + attempt[1], raw_ns + attempt[2]
        if nr == self.rt_sigreturn_nr and err == EINTR:
            del self.interrupted[tid]  # the handler's frame returns EINTR to the call
            self._count_call(tid, st, attempt, EINTR)
        return nr, d, raw_ns

    def _settle_interrupted(self, tid: int, st: list[Any]) -> None:
        """The thread is gone: its interrupted attempt was its call."""
        attempt = self.interrupted.pop(tid, None)
        if attempt is not None:
            self._count_call(tid, st, attempt, 0)

    def _stat(self, nr: int) -> list[Any]:
        s = self.stats.get(nr)
        if s is None:
            s = self.stats[nr] = new_stat()
        return s

    def _count_call(self, tid: int, st: list[Any], attempt: list[int], err: int) -> None:
        """Count an interrupted attempt ``[nr, d, raw_ns, entry_ns]`` as one timed
        call, as the hot loop counts (for the rare paths), and give it its slice."""
        nr, d, raw_ns, entry_ns = attempt
        if self.wanted is not None and nr not in self.wanted:
            return
        if self.timeline is not None:
            self.timeline(tid, st[3], nr, entry_ns, d, err, -err)
        self._add_call(nr, st[2], d, raw_ns, err)
        if self.per_task is not None:
            self.count_task(tid, st[3], nr, d, err != 0)

    def count_task(self, tid: int, tgid: int, nr: int, d: int, failed: bool) -> None:
        """One call of ``nr`` by thread ``tid`` (--per-process, --per-thread)."""
        calls = self.per_task.get(tid) if self.per_task is not None else None
        if calls is None:
            if self.per_task is None:
                return
            calls = self.per_task[tid] = {}
            self.task_pid[tid] = tgid
        row = calls.get(nr)
        if row is None:
            row = calls[nr] = [0, 0, 0]
        row[0] += 1
        row[1] += failed
        row[2] += d

    def _is_entry(self, tid: int) -> bool:
        """Ask the kernel whether this syscall-stop is an entry (rarely needed)."""
        info = self._info
        result = self.binding.raw(
            abi.PTRACE_GET_SYSCALL_INFO, tid, ctypes.sizeof(info), abi.pointer_to(info)
        )
        entry = result != abi.FAILED and info.op == abi.OP_ENTRY
        if entry:
            self.resyncs += 1
        return entry

    def until_exec(self, root: int, exec_nrs: frozenset[int]) -> bool:
        """Run the root alone up to its execve entry (stprof's own code is not counted).

        Before it, the root is stprof's gate (see :func:`profiler.target.spawn_paused`):
        the end of its read of the gate pipe, its close and nothing else.
        Its /proc counters there become the process's baseline, so the gate's
        own faults and CPU time are not counted either.  Returns False if
        the root died first (exec failed, or was killed).
        """
        info = self._info
        addr, size = abi.pointer_to(info), ctypes.sizeof(info)
        ptrace = self.binding.raw
        while True:
            _, status = os.waitpid(root, abi.WALL)
            t = time.monotonic_ns()
            if status == abi.SECCOMP_STOP_STATUS:
                ptrace(abi.PTRACE_SYSCALL, root, 0, 0)  # stprof's own call: to its exit
                continue
            if status != abi.SYSCALL_STOP_STATUS:
                self.handle_stop(root, status, t)
                if root not in self.threads:
                    return False
                continue
            if ptrace(abi.PTRACE_GET_SYSCALL_INFO, root, size, addr) == abi.FAILED:
                continue
            if info.op == abi.OP_ENTRY and info.value in exec_nrs:
                proc = self.procs[root]
                proc.snapshot()
                proc.baseline = proc.last
                st = self.threads[root]
                if self.seccomp:
                    self._resume_outside = abi.PTRACE_CONT
                    if self.wanted is not None and info.value not in self.wanted:
                        ptrace(abi.PTRACE_CONT, root, 0, 0)  # untraced: run on, unstopped
                        return True
                st[0], st[1] = info.value, time.monotonic_ns()
                ptrace(abi.PTRACE_SYSCALL, root, 0, 0)
                return True
            ptrace(abi.PTRACE_SYSCALL, root, 0, 0)

    # ------------------------------------------------------ the other stops
    def handle_stop(self, tid: int, status: int, t: int) -> None:
        """Everything but a syscall-stop: deaths, events, group-stops, signals."""
        st = self.threads.get(tid)
        if not os.WIFSTOPPED(status):
            if st is not None:
                self._gone(tid, st, status, t)
            return  # else: a child of stprof that is not ours
        if st is None:
            st = self.adopt(tid)
            if st is None:
                return
        sig = (status >> 8) & 0xFF
        event = status >> 16
        if event:
            self._event(tid, st, event, sig)
        elif sig == (0x80 | signal.SIGTRAP):
            self.resume(tid)  # a syscall-stop outside the hot loop
        else:
            self.resume(tid, sig)  # signal-delivery-stop: deliver it

    def _event(self, tid: int, st: list[Any], event: int, sig: int) -> None:
        """A ptrace event stop.  What needs the thread stopped (its event
        message, its registers) comes first; the /proc reads come after it is
        resumed, so that they do not hold up the command."""
        if event in (abi.PTRACE_EVENT_FORK, abi.PTRACE_EVENT_VFORK, abi.PTRACE_EVENT_CLONE):
            new = abi.geteventmsg(tid)
            self.resume(tid)
            if new and new not in self.threads:  # unless it reported its first stop
                if event == abi.PTRACE_EVENT_CLONE:  # a thread, or a process
                    self.adopt(new)
                else:
                    self.adopt_child(new, st)
        elif event == abi.PTRACE_EVENT_SECCOMP:
            self._seccomp_entry(tid, st, time.monotonic_ns())
        elif event == abi.PTRACE_EVENT_EXEC:
            self._exec(tid, st)
            self.resume(tid)
            ids = abi.task_ids(tid)  # the name the exec gave it
            if ids is not None:
                self.procs[st[3]].comm = ids.name
        elif event == abi.PTRACE_EVENT_EXIT:
            self._untimed(st, tid, tid)
            self._settle_interrupted(tid, st)
            self.resume(tid)
            # the process's counters, read before the thread is reaped (by
            # this loop: until then it stays, a zombie at worst, with them)
            self.procs[st[3]].snapshot()
        elif event == abi.PTRACE_EVENT_STOP and sig in STOP_SIGNALS:
            # A group-stop of a SEIZEd tracee: stay stopped as an untraced
            # process would, yet hear of the SIGCONT or SIGKILL that ends it.
            self.binding.raw(abi.PTRACE_LISTEN, tid, 0, 0)
        else:
            self.resume(tid)

    def _exec(self, tid: int, st: list[Any]) -> None:
        """After execve.  A non-leader thread that exec'd now has the leader's tid.

        The other threads died in the exec; their deaths are reported as
        exits, except the old leader's, whose unfinished call is settled here.
        """
        former = abi.geteventmsg(tid)
        if former is not None and former != tid and former in self.threads:
            moved = self.threads.pop(former)
            self.interrupted.pop(former, None)
            self._untimed(st, None)
            st[0], st[1] = moved[0], moved[1]

    def _untimed(self, st: list[Any], tid: int | None, owner: int | None = None) -> None:
        """Count a pending call that will never reach its exit stop.

        ``tid`` is given when the thread is stopped, so that an unknown
        number can still be read from its registers; ``owner`` is the
        thread's id, whose interrupted attempt (if any) this call re-entered.
        """
        nr = st[0]
        if nr == OUTSIDE:
            return
        st[0] = OUTSIDE
        if nr == UNKNOWN_NR:
            nr = self._orig_nr(tid) if tid is not None else None
            if nr is None:
                self.lost_calls += 1
                return
        attempt = self.interrupted.get(owner) if owner is not None else None
        if attempt is not None and owner is not None and nr in (
                attempt[0], self.restart_syscall_nr):
            del self.interrupted[owner]
            self._stat(attempt[0])[S_RESTARTS] += 1
            nr = attempt[0]
        if self.wanted is not None and nr not in self.wanted:
            return
        s = self._stat(nr)
        s[S_CALLS] += 1
        s[S_UNTIMED] += 1
        st[2][0] += 1
        if self.per_task is not None:
            task = owner if owner is not None else tid if tid is not None else st[3]
            self.count_task(task, st[3], nr, 0, False)
        if self.timeline is not None:
            self.timeline.unfinished(st, nr, time.monotonic_ns())

    def _orig_nr(self, tid: int) -> int | None:
        regs = self._regs
        if regs is None:
            return None
        if self.binding.raw(abi.PTRACE_GETREGS, tid, 0, abi.pointer_to(regs)) == abi.FAILED:
            return None
        nr: int = regs.orig_rax
        return nr

    def _gone(self, tid: int, st: list[Any], status: int, t: int) -> None:
        if self.timeline is not None:
            self.timeline.thread_end(tid, st, t)
        self._untimed(st, None, tid)
        self._settle_interrupted(tid, st)
        del self.threads[tid]
        if tid == st[3]:
            self.procs[tid].exit_status = decode_wait_status(status)
        if tid == self.root:
            self.root_status = status
            self.root_exit_ns = t

    # ------------------------------------------------------------ endings
    def kill_all(self, timeout_s: float = 5.0) -> None:
        """SIGKILL every traced process and reap them (never leave one stopped)."""
        for tgid in {st[3] for st in self.threads.values()}:
            with contextlib.suppress(ProcessLookupError):
                os.kill(tgid, signal.SIGKILL)
        deadline = time.monotonic() + timeout_s
        while self.threads and time.monotonic() < deadline:
            try:
                tid, status = os.waitpid(-1, abi.WALL | os.WNOHANG)
            except ChildProcessError:
                return
            if tid == 0:
                time.sleep(0.002)
                continue
            st = self.threads.get(tid)
            if st is None:
                continue
            if os.WIFSTOPPED(status):
                self.resume(tid)  # let it meet its SIGKILL
            else:
                self._gone(tid, st, status, time.monotonic_ns())

    def detach_all(self, timeout_s: float = 3.0) -> set[int]:
        """Detach every tracee, leaving it running (as strace -p does on Ctrl-C).

        Running tracees are interrupted first, since PTRACE_DETACH needs a
        stopped tracee; a signal one was about to receive is passed on.
        Tasks the kernel attached meanwhile (the child of a fork in
        progress, a new thread) are adopted and detached too: found from
        their fork or clone event, from a stop of a task we did not know,
        or in /proc as a new thread or child of a traced process.  A tracee
        that cannot be stopped in time is detached by the kernel when
        stprof exits (attach mode never sets EXITKILL).  Calls in progress
        are dropped, not counted.

        Returns the process ids (tgids) of the tracees detached, which were
        left running.
        """
        for proc in self.procs.values():
            if proc.exit_status is None:
                proc.snapshot()
        raw = self.binding.raw
        pending = set(self.threads)
        known = set(pending)  # every task met during the detach, ours or not
        for tid in pending:
            raw(abi.PTRACE_INTERRUPT, tid, 0, 0)
        detached: set[int] = set()
        grace = time.monotonic() + 0.05
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not pending:
                pending = self._unseen_tracees(known)
                if not pending:
                    break
            try:
                tid, status = os.waitpid(-1, abi.WALL | os.WNOHANG)
            except ChildProcessError:
                break
            if tid == 0:
                if time.monotonic() > grace:
                    # No news: a tracee already stopped (one whose stop we
                    # had taken but not resumed) can be detached as it is.
                    for quiet in list(pending):
                        if raw(abi.PTRACE_DETACH, quiet, 0, 0) != abi.FAILED:
                            pending.discard(quiet)
                            detached.add(quiet)
                time.sleep(0.002)
                continue
            pending.discard(tid)
            st = self.threads.get(tid)
            if not os.WIFSTOPPED(status):
                if st is not None:
                    st[0] = OUTSIDE
                    self._gone(tid, st, status, time.monotonic_ns())
                continue
            if st is None:
                # A stop of a task we did not know, auto-attached during the
                # detach (or its stop was taken before the loop could adopt
                # it): ours all the same, and stopped until we let it go.
                known.add(tid)
                self.adopt(tid)
            event = status >> 16
            if event in (abi.PTRACE_EVENT_FORK, abi.PTRACE_EVENT_VFORK, abi.PTRACE_EVENT_CLONE):
                new = abi.geteventmsg(tid)
                if new and new not in known:
                    known.add(new)
                    pending.add(new)  # it reports its first stop to us
                    self.adopt(new)
            sig = (status >> 8) & 0xFF
            deliver = sig if event == 0 and sig != (0x80 | signal.SIGTRAP) else 0
            if raw(abi.PTRACE_DETACH, tid, 0, deliver) != abi.FAILED:
                detached.add(tid)
        left = {self.threads[tid][3] for tid in detached if tid in self.threads}
        self.threads.clear()
        return left

    def _unseen_tracees(self, known: set[int]) -> set[int]:
        """Our tracees that the detach has not met yet, interrupted.

        New threads and children of the processes still traced: a task the
        kernel attached (its fork or clone event unseen) is interrupted by
        PTRACE_INTERRUPT, which fails for any task that is not our tracee.
        Each is adopted, so that it is counted as a process left running.
        """
        raw = self.binding.raw
        found: set[int] = set()
        live = [proc.pid for proc in self.procs.values() if proc.exit_status is None]
        for pid in live:
            for tid in abi.task_ids_of(pid) + abi.children_of(pid):
                if tid in known:
                    continue
                known.add(tid)
                if raw(abi.PTRACE_INTERRUPT, tid, 0, 0) != abi.FAILED:
                    found.add(tid)
                    self.adopt(tid)
        return found
