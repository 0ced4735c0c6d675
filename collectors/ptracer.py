"""The ptrace collector: every syscall of a process tree, from syscall-stops.

Works wherever ptrace does (Linux 5.3+ for PTRACE_GET_SYSCALL_INFO), with
no kernel headers, bcc or root for a launched command.  Its costs and limits:

- each syscall stops the tracee twice and wakes stprof each time, so a
  syscall-heavy command runs many times slower (as under strace);
- the measured entry-to-exit time of a call includes the cost of those
  stops.  ``prepare()`` measures that cost with a null syscall (getppid)
  traced by the very same loop, and every call's time is corrected by it
  (clamped at zero); ``raw_total_ns`` keeps the uncorrected sum;
- page faults are counted per process from /proc at each exit, with no
  time and no user/in-syscall split; interrupts are not seen at all.

See :mod:`collectors.ptrace_loop` for the loop and how each stop is handled.
"""

from __future__ import annotations

import contextlib
import errno
import os
import platform
import resource
import signal
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

from collectors import ptrace_abi as abi
from collectors import ptrace_seccomp
from collectors.base import Availability, Collector, Options, ProbeMethod
from collectors.ptrace_denial import why_denied
from collectors.ptrace_fast import unavailable_reason as fast_path_unavailable
from collectors.ptrace_loop import NO_MIN, S_RESTARTS, ProcRecord, Tracer
from collectors.ptrace_seccomp import AUDIT_ARCH
from collectors.run_clock import DeadlineReached, RunClock, raise_deadline
from collectors.syscall_names import errno_name, syscall_name, syscall_table
from collectors.trace_set import trace_set_section
from profiler.errors import CollectorUnavailable, StprofError, TracingError, UsageError
from profiler.intervals import Counters, IntervalBook, task_tables
from profiler.model import Faults, ProcessStats, Profile, Rusage, SyscallStats, trim_hist
from profiler.phases import phase
from profiler.target import (
    RELAYED_SIGNALS,
    Interrupted,
    command_needs_own_group,
    decode_wait_status,
    proc_state_and_flags,
    raise_exec_error,
    relay_signals,
    spawn_paused,
)
from profiler.timeline import TimelineWriter

CALIBRATION_CALLS = 600
CALIBRATION_WARMUP = 100
CALIBRATION_RUNS = 4
MIN_KERNEL = (5, 3)  # PTRACE_GET_SYSCALL_INFO

TRACE_SECCOMP = "seccomp-bpf filter: PTRACE_EVENT_SECCOMP stops at the set's calls only"

FAULT_PRECISION = (
    "counts only: per-process minor/major fault totals read from /proc at each "
    "exit; no fault time, no user/in-syscall split"
)


class PtraceCollector(Collector):
    """Syscall counts, errors and times of a process tree through ptrace."""

    name: ClassVar[str] = "ptrace"
    description: ClassVar[str] = "ptrace syscall-stops (slow, works without root or bcc)"
    platforms: ClassVar[tuple[str, ...]] = ("linux",)
    long_runs: ClassVar[bool] = True
    writes_timeline: ClassVar[bool] = True
    filters_syscalls: ClassVar[bool] = True
    pins: ClassVar[bool] = True

    def __init__(self, options: Options) -> None:
        super().__init__(options)
        self._unpinned: set[int] | None = None  # stprof's CPUs before --pin
        self._overhead_ns: int | None = None
        self._overhead_median_ns: int | None = None
        # PTRACE_GET_SYSCALL_INFO at every stop even where the registers
        # could do (x86-64): the portable method, kept testable everywhere.
        self.entry_info = False
        self._table = syscall_table()
        self._numbers = {name: nr for nr, name in self._table.items()}
        self._killed_at_deadline = False  # --duration-kill killed the command

    # -------------------------------------------------------- availability
    @classmethod
    def availability(cls) -> Availability:
        if not sys.platform.startswith("linux"):
            return Availability.no("ptrace collector needs Linux")
        try:
            abi.load()
        except ImportError:
            return Availability.no("python-ptrace is not installed", "pip install python-ptrace")
        release = _kernel_version()
        if release is not None and release < MIN_KERNEL:
            return Availability.no(
                f"kernel {platform.release()} has no PTRACE_GET_SYSCALL_INFO (needs 5.3+)"
            )
        if _yama_scope() == 3:
            return Availability.no(
                "ptrace is disabled (kernel.yama.ptrace_scope=3)",
                "only a reboot re-enables it",
            )
        return Availability.yes("ptrace syscall-stops")

    @classmethod
    def methods(cls) -> list[ProbeMethod]:
        ok = cls.availability()
        no = Availability.no("not measurable with ptrace", "use the ebpf collector")
        faults = Availability.yes("counts from /proc at exit") if ok.ok else ok
        return [
            ProbeMethod("syscalls", "ptrace syscall-stops (GETREGS / GET_SYSCALL_INFO)", ok),
            ProbeMethod("stop loop", "compiled (collectors/ptrace_fast.c)", _compiled_loop()),
            ProbeMethod("faults", "/proc/<pid>/stat counters", faults),
            ProbeMethod("fault time", "none", no),
            ProbeMethod("interrupts", "none", no),
            ProbeMethod("stacks", "none", no),
        ]

    # ------------------------------------------------------------ lifecycle
    def prepare(self) -> None:
        if self.options.pin_cpu is not None and self._unpinned is None:
            self._unpinned = os.sched_getaffinity(0)
            os.sched_setaffinity(0, {self.options.pin_cpu})  # the command inherits it
        if self._overhead_ns is None:
            with phase("calibration (ptrace: the stops' cost per call)"):
                self._overhead_ns = self._calibrate()

    def close(self) -> None:
        """Give stprof its CPUs back (--pin); the command, if it runs on, keeps its one."""
        if self._unpinned is not None:
            os.sched_setaffinity(0, self._unpinned)
            self._unpinned = None

    def run(self) -> Profile:
        self.prepare()
        try:
            if self.options.attach_pid is not None:
                return self._attach(self.options.attach_pid)
            return self._launch()
        except abi.load().error as exc:
            raise TracingError(f"ptrace failed: {exc}") from None

    # ------------------------------------------------------------ launching
    def _new_tracer(self, *, attach: bool = False) -> Tracer:
        timeline = None
        if self.options.timeline is not None:
            writer = TimelineWriter(self.options.timeline, self.options.timeline_limit,
                                    origin_ns=time.monotonic_ns())
            timeline = TimelineFeed(writer, self._table)
        return Tracer(
            timeline=timeline,
            overhead_ns=self._overhead_ns or 0,
            follow=self.options.follow,
            exit_kill=not attach,
            rt_sigreturn_nr=self._numbers.get("rt_sigreturn", -2),
            restart_syscall_nr=self._numbers.get("restart_syscall", -2),
            entry_info=self.entry_info,
            per_task=self.options.per_process or self.options.per_thread,
            wanted=self._wanted_numbers(),
            seccomp=not attach and self._uses_seccomp(),
            # sharing one CPU, the tracer's polling would only delay the command
            poll=self.options.pin_cpu is None,
            held_signals=self._raising_signals(attach),
        )

    def _raising_signals(self, attach: bool) -> frozenset[int]:
        """The signals whose handlers raise during this run's loop: the deadline's
        timer (--duration), and in attach mode the ones that end the run."""
        raising: set[int] = set(RELAYED_SIGNALS) if attach else set()
        if self.options.duration_s is not None:
            raising.add(signal.SIGALRM)
        return frozenset(raising)

    def _book(self, tracer: Tracer) -> IntervalBook:
        """The run's readings (-i, SIGUSR1), taken between two stops."""
        return IntervalBook(time.monotonic_ns(), lambda: self._read_counters(tracer),
                            self.options.show_interval)

    def _read_counters(self, tracer: Tracer) -> Counters:
        counts: dict[str, tuple[int, int, int]] = {}
        for nr, s in tracer.stats.items():
            if s[0]:
                name = self._name(nr)
                before = counts.get(name, (0, 0, 0))
                counts[name] = (before[0] + s[0], before[1] + s[1], before[2] + s[2])
        faults = 0
        for proc in list(tracer.procs.values()):
            now = abi.proc_stat(proc.pid) if proc.exit_status is None else None
            last, base = now or proc.last, proc.baseline
            if last is not None:
                faults += last.minflt + last.majflt - (
                    base.minflt + base.majflt if base else 0)
        return Counters(at_ns=time.monotonic_ns(), syscalls=counts, fault_count=faults)

    def _name(self, nr: int) -> str:
        signed = nr - abi.ULONG if nr >= abi.ULONG // 2 else nr  # syscall(-1)
        return syscall_name(signed, self._table)

    def _task_tables(self, tracer: Tracer, profile: Profile) -> None:
        """--per-process / --per-thread tables from the tracer's per-thread counts."""
        if tracer.per_task is None:
            return
        counts: dict[tuple[int, int], dict[str, tuple[int, int, int]]] = {}
        for tid, by_nr in tracer.per_task.items():
            named: dict[str, tuple[int, int, int]] = {}
            for nr, row in by_nr.items():
                before = named.get(self._name(nr), (0, 0, 0))
                named[self._name(nr)] = (before[0] + row[0], before[1] + row[1],
                                         before[2] + row[2])
            counts[(tracer.task_pid[tid], tid)] = named
        comms = {**tracer.task_comm, **{p.pid: p.comm for p in tracer.procs.values()}}
        if self.options.per_process:
            profile.per_process = task_tables(counts, comms, per_thread=False)
        if self.options.per_thread:
            profile.per_thread = task_tables(counts, comms, per_thread=True)

    def _wanted_numbers(self) -> frozenset[int] | None:
        """-e trace=SET as syscall numbers (None: every syscall is counted)."""
        names = self.options.trace_set
        if names is None:
            return None
        return frozenset(nr for nr, name in self._table.items() if name in names)

    def _uses_seccomp(self) -> bool:
        """A launched command with a trace set stops only at it, through seccomp.

        Not with --no-follow: the children, not traced, would inherit the
        filter and get ENOSYS from the set's calls (strace --seccomp-bpf
        needs -f for the same reason); then every call stops, as without a set.
        """
        return (self.options.trace_set is not None and self.options.follow
                and platform.machine() in AUDIT_ARCH)

    def _trace_set(self, profile: Profile, tracer: Tracer) -> None:
        """The profile's trace_set key and what a filtered run leaves out."""
        names = self.options.trace_set
        if names is None:
            return
        method = (TRACE_SECCOMP if tracer.seccomp
                  else "every syscall stopped, only the set's counted")
        profile.trace_set = trace_set_section(self.options.trace_spec, names, method)
        profile.note(f"ptrace: only -e trace={self.options.trace_spec} is traced "
                     f"({len(names)} syscalls); the other syscalls are not counted or timed"
                     + ("" if tracer.seccomp else
                        " (but still stopped: no seccomp filter with -p or --no-follow)"))

    def _launch(self) -> Profile:
        options = self.options
        tracer = self._new_tracer()
        exec_nrs = frozenset(
            self._numbers[name] for name in ("execve", "execveat") if name in self._numbers
        )
        setup = None
        if tracer.seccomp:
            setup = ptrace_seccomp.installer(tracer.wanted or frozenset(), platform.machine())
        child = spawn_paused(options.command, options.credentials, child_setup=setup,
                             own_group=command_needs_own_group())
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        survivors: set[int] = set()
        book: IntervalBook | None = None
        untraced: int | None = None  # when --duration stopped the tracing
        root_status = 0
        self._killed_at_deadline = False
        try:
            _start_tracee(tracer, child.pid)
            with relay_signals(child.pid, child.group):
                started = _wait_first_stop(tracer, child.pid)
                child.release()
                if started and tracer.until_exec(child.pid, exec_nrs):
                    book = self._book(tracer)
                    deadline = self._deadline_action(child.pid)
                    untraced = self._loop_until(tracer, book, deadline)
            if untraced is not None:  # --duration: the command goes on untraced
                with _signals_held():
                    survivors = tracer.detach_all()
                with relay_signals(child.pid, child.group):
                    root_status = self._await_untraced(tracer, child.pid)
            elif tracer.threads:  # the command is gone, its background descendants not
                with _signals_held():
                    survivors = tracer.detach_all()
        except BaseException:
            tracer.kill_all()
            if tracer.timeline is not None:
                tracer.timeline.writer.abort()
            child.kill()
            with contextlib.suppress(ChildProcessError):
                os.waitpid(child.pid, abi.WALL)
            child.close()
            raise
        err = child.exec_error()
        after = resource.getrusage(resource.RUSAGE_CHILDREN)  # before close() reaps the guard
        child.close()
        if err is not None:
            if tracer.timeline is not None:
                tracer.timeline.writer.abort()
            raise_exec_error(options.command[0], err)
        profile = self._profile(tracer)
        ended = untraced or tracer.root_exit_ns or time.monotonic_ns()
        _finish_timeline(tracer, profile, time.monotonic_ns())
        root = tracer.procs.get(child.pid)
        if untraced is not None:
            tracer.root_status = root_status
            survivors.discard(child.pid)
            profile.note(f"--duration {options.duration_s:g}: tracing stopped at the deadline; "
                         "the command then ran on untraced (its exit status and rusage "
                         "include that part)")
        profile.exit_status = (
            decode_wait_status(tracer.root_status) if tracer.root_status is not None else None
        )
        released = child.released_ns or child.started_ns
        profile.wall_ns = max(0, ended - released)
        if book is not None and options.interval_s is not None:
            profile.intervals = book.finish(profile, ended)
        self._task_tables(tracer, profile)
        if self._killed_at_deadline:
            profile.note(f"--duration {options.duration_s:g}: the command was killed at the "
                         "deadline (--duration-kill)")
        profile.rusage = _rusage_delta(before, after, root.baseline if root else None)
        _note_survivors(profile, survivors)
        if survivors and tracer.seccomp:
            profile.note("ptrace: the processes left running keep the seccomp filter of "
                         "-e trace=: untraced now, their calls of the set fail with ENOSYS")
        return profile

    def _deadline_action(self, pid: int) -> Callable[[], None]:
        """What --duration's deadline does to a command: kill it, or stop tracing."""
        if not self.options.duration_kill:
            return raise_deadline

        def kill() -> None:
            self._killed_at_deadline = True
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

        return kill

    def _loop_until(self, tracer: Tracer, book: IntervalBook,
                    on_deadline: Callable[[], None]) -> int | None:
        """The tracer's loop under the run's clock; the time tracing stopped if
        --duration's deadline stopped it while the command still ran, else None."""
        try:
            with RunClock(book, self.options.interval_s, self.options.duration_s,
                          on_deadline):
                tracer.loop()
        except DeadlineReached:
            if tracer.root_status is None:
                return time.monotonic_ns()
        return None

    @staticmethod
    def _await_untraced(tracer: Tracer, pid: int) -> int:
        """The wait status of the command, once it ends after the detach."""
        if tracer.root_status is not None:
            return tracer.root_status
        while True:
            try:
                done, status = os.waitpid(pid, abi.WALL)
            except ChildProcessError:
                return 0
            if done == pid and not os.WIFSTOPPED(status):
                return status

    # ------------------------------------------------------------ attaching
    def _attach(self, pid: int) -> Profile:
        tracer = self._new_tracer(attach=True)
        command = _cmdline(pid)
        started = time.monotonic_ns()
        interrupted = False
        profile_note = ""
        survivors: set[int] = set()
        tracer.root = pid
        book = self._book(tracer)
        try:
            with relay_signals(None):
                try:
                    _seize_process(tracer, pid)
                    with RunClock(book, self.options.interval_s, self.options.duration_s):
                        tracer.loop()
                except Interrupted as stop:
                    interrupted = True
                    if isinstance(stop, DeadlineReached):
                        profile_note = f"--duration {self.options.duration_s:g}: detached " \
                                       "at the deadline"
        except BaseException:
            if tracer.timeline is not None:
                tracer.timeline.writer.abort()
            raise
        finally:
            with _signals_held():
                survivors = tracer.detach_all()
        profile = self._profile(tracer)
        profile.command = command
        ended = time.monotonic_ns()
        _finish_timeline(tracer, profile, ended)
        profile.attached_pid = pid
        profile.exit_status = None
        profile.wall_ns = ended - started
        if self.options.interval_s is not None:
            profile.intervals = book.finish(profile, ended)
        self._task_tables(tracer, profile)
        if profile_note:
            profile.note(profile_note)
        proc = tracer.procs.get(pid)
        if proc is not None and proc.last is not None and proc.baseline is not None:
            profile.rusage = Rusage(
                user_ns=max(0, proc.last.user_ns - proc.baseline.user_ns),
                sys_ns=max(0, proc.last.sys_ns - proc.baseline.sys_ns),
                minflt=max(0, proc.last.minflt - proc.baseline.minflt),
                majflt=max(0, proc.last.majflt - proc.baseline.majflt),
            )
        profile.note(
            f"ptrace: attached to pid {pid} and its threads"
            + (", detached on request" if interrupted else " until it exited")
            + "; rusage is the attached process's /proc delta (no context switches); "
            "calls in progress at the detach are not counted"
        )
        if not interrupted:
            _note_survivors(profile, survivors - {pid})
        return profile

    # ------------------------------------------------------------ calibration
    def _calibrate(self) -> int:
        """The tracer's cost per traced call, from a traced null syscall.

        A forked child makes CALIBRATION_CALLS getppid calls under the same
        loop that traces the command; their entry-to-exit time is what the
        stops themselves add to every call (see :func:`overhead_floor`).
        """
        if not self.availability().ok:
            raise CollectorUnavailable(f"ptrace collector: {self.availability().reason}")
        getppid = self._numbers.get("getppid")
        if getppid is None:
            return 0
        tracer = Tracer(follow=False, sample_nr=getppid, entry_info=self.entry_info,
                        poll=self.options.pin_cpu is None)
        try:
            trace_null_calls(tracer, CALIBRATION_CALLS)
        except TracingError as exc:
            raise CollectorUnavailable(f"ptrace collector: {exc.one_line()}") from None
        finally:
            tracer.close()
        self._overhead_median_ns = median(tracer.samples or [0])
        return overhead_floor(tracer.samples[CALIBRATION_WARMUP:] or tracer.samples)

    # ------------------------------------------------------------ the profile
    def _profile(self, tracer: Tracer) -> Profile:
        profile = Profile(command=list(self.options.command), collector=self.name)
        for nr, s in sorted(tracer.stats.items()):
            stats = _syscall_stats(s)
            signed = nr - abi.ULONG if nr >= abi.ULONG // 2 else nr  # syscall(-1)
            name = syscall_name(signed, self._table)
            if name in profile.syscalls:
                profile.syscalls[name].merge(stats)
            else:
                profile.syscalls[name] = stats
        profile.processes = [_process_stats(p) for p in tracer.procs.values()]
        minor = sum(p.minflt for p in profile.processes)
        major = sum(p.majflt for p in profile.processes)
        profile.faults = Faults(
            count=minor + major,
            minor=minor,
            major=major,
            total_ns=None,
            method="rusage",
            precision=FAULT_PRECISION,
        )
        overhead = self._overhead_ns or 0
        profile.timing = {
            "method": "ptrace syscall-stops",
            "overhead_ns_per_call": overhead,
            "shown": "corrected",
            "calibration": (
                f"least median of {CALIBRATION_RUNS} runs of traced getppid calls "
                f"({CALIBRATION_CALLS} in all)"
            ),
            "overhead_ns_median": self._overhead_median_ns,
            "stops": tracer.method,
            "loop": tracer.loop_kind,
        }
        if self.options.pin_cpu is not None:
            profile.note(f"--pin: stprof and the command ran on CPU {self.options.pin_cpu} "
                         "alone (the command's children too)")
        profile.note(
            f"ptrace: each call's time is its entry-to-exit stop interval minus the "
            f"tracer's own least cost of {overhead} ns per call (measured on a traced "
            "null syscall), clamped at 0; raw_total_ns keeps the uncorrected sums. "
            "Stops can cost several times more on a busy or virtual machine: short "
            "calls may still include some of it"
        )
        profile.note(
            "ptrace: exit, exit_group and calls cut short by their thread's death are "
            "counted with no time"
        )
        profile.note(
            "ptrace cannot measure page-fault time, faults taken inside syscalls, or "
            "interrupts; fault counts are per-process totals from /proc"
        )
        if tracer.lost_calls:
            profile.note(
                f"ptrace: {tracer.lost_calls} call(s) in progress when their thread was "
                "killed outright are not counted (their number was not read yet)"
            )
        if tracer.resyncs:
            profile.note(
                f"ptrace: {tracer.resyncs} syscall-stop(s) were out of step with their "
                "thread's state and were re-read with PTRACE_GET_SYSCALL_INFO"
            )
        if not self.options.follow:
            profile.note("ptrace: --no-follow: only the first thread of the command is traced")
        self._trace_set(profile, tracer)
        return profile


# ---------------------------------------------------------------- timeline
class TimelineFeed:
    """The tracer's calls as timeline slices (--timeline), written as they come.

    The hot loop calls it once per completed call, after the tracee is resumed:
    ``(tid, tgid, nr, entry_ns, corrected_ns, errno, raw_result)``.  A slice
    starts at the entry stop and lasts the call's corrected time.  ptrace
    sees no fault or interrupt times: the file has syscall slices only.
    """

    def __init__(self, writer: TimelineWriter, table: dict[int, str]) -> None:
        self.writer = writer
        self._table = table
        self._tids: dict[int, int] = {}  # id of a thread's state list -> its tid

    def __call__(self, tid: int, tgid: int, nr: int, entry_ns: int, dur_ns: int, err: int,
                 result: int) -> None:
        name = _signed_name(nr, self._table)
        if err:
            self.writer.syscall(tgid, tid, name, entry_ns, dur_ns, -err, errno_name(err))
        else:
            ret = result - abi.ULONG if result >= abi.ULONG // 2 else result
            self.writer.syscall(tgid, tid, name, entry_ns, dur_ns, ret)

    def thread(self, tid: int, state: list[Any], now_ns: int) -> None:
        self._tids[id(state)] = tid
        self.writer.thread(tid, state[3], now_ns)

    def thread_end(self, tid: int, state: list[Any], now_ns: int) -> None:
        self.writer.thread_end(tid, now_ns)

    def unfinished(self, state: list[Any], nr: int, now_ns: int) -> None:
        """A call that never reached its exit stop (exit, exit_group, death)."""
        tid = self._tids.get(id(state), state[3])
        life = self.writer.threads.get(tid)
        if life is not None and life.end_ns is not None:  # settled at the thread's death
            now_ns = min(now_ns, life.end_ns)
        self.writer.syscall(state[3], tid, _signed_name(nr, self._table), state[1],
                            max(0, now_ns - state[1]))


def _signed_name(nr: int, table: dict[int, str]) -> str:
    signed = nr - abi.ULONG if nr >= abi.ULONG // 2 else nr  # syscall(-1)
    return syscall_name(signed, table)


def _finish_timeline(tracer: Tracer, profile: Profile, end_ns: int) -> None:
    feed = tracer.timeline
    if feed is None:
        return
    names = {p.pid: p.comm for p in profile.processes}
    totals = {p.pid: (p.minflt, p.majflt) for p in profile.processes}
    about = {"collector": "ptrace", "command": list(profile.command),
             "fault_slices": "none: ptrace measures no fault or interrupt times; each "
                             "process's fault counter is its /proc total at its end",
             "syscall_times": "entry stop to exit stop, less the tracer's calibrated cost "
                              f"({profile.timing.get('overhead_ns_per_call', 0)} ns)"}
    try:
        summary = feed.writer.finish(end_ns, names, about, fault_totals=totals)
    except StprofError as exc:
        profile.note(f"timeline not written: {exc.one_line()}")
        return
    for text in summary.notes():
        profile.note(text)


# ---------------------------------------------------------------- helpers
def _compiled_loop() -> Availability:
    """Whether the syscall-stops go through the compiled loop here, else why not."""
    reason = fast_path_unavailable()
    if reason is None:
        return Availability.yes("polls before it sleeps; resumes the command first")
    return Availability.no(f"the Python loop runs: {reason}", "make setup builds it")


def median(values: list[int]) -> int:
    """statistics.median of some integers, in whole ns (that module's import
    would cost every run's start-up)."""
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) // 2


def overhead_floor(samples: list[int]) -> int:
    """The least of the medians of a few consecutive runs of samples.

    A traced call's cost is not one number: on a virtual machine it jumps
    between regimes (about 8 us when tracer and tracee share a CPU, 30-40 us
    when every stop wakes the other, idle CPU), and switches between them
    over tens of milliseconds.  A median of each run is robust to single
    outliers; the least of them is the cost no call escapes.  Subtracting
    it never removes real syscall time, at the price of leaving some stop
    cost in the times when the machine is in its slower regime.
    """
    if not samples:
        return 0
    size = max(1, len(samples) // CALIBRATION_RUNS)
    runs = [samples[i : i + size] for i in range(0, len(samples) - size + 1, size)]
    return min(median(run) for run in runs)


def _start_tracee(tracer: Tracer, pid: int) -> None:
    """Seize a child paused at its gate with our options, and interrupt it."""
    try:
        tracer.seize(pid)
    except abi.load().error as exc:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
        number = abi.error_errno(exc)
        raise TracingError(
            f"cannot ptrace the command: {abi.errno_message(number)}",
            "ptrace may be forbidden here (seccomp, container or yama policy)",
        ) from None
    tracer.root = pid
    if tracer.adopt(pid) is None:
        raise TracingError(f"the command (pid {pid}) vanished before it started")


def _wait_first_stop(tracer: Tracer, pid: int) -> bool:
    """Wait for the stop PTRACE_INTERRUPT asked for and let the child go on.

    False when the child died instead.
    """
    while pid in tracer.threads:
        _, status = os.waitpid(pid, abi.WALL)
        stopped_by_us = os.WIFSTOPPED(status) and status >> 16 == abi.PTRACE_EVENT_STOP
        tracer.handle_stop(pid, status, time.monotonic_ns())
        if stopped_by_us:
            return True
    return False


def trace_null_calls(tracer: Tracer, calls: int) -> None:
    """Trace, with ``tracer``, a forked child that makes ``calls`` getppid calls
    (the calibration; bench/stops.py).  Give the tracer ``sample_nr`` to keep
    each call's raw time."""
    gate_r, gate_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        _null_calls_child(gate_r, gate_w, calls)
    os.close(gate_r)
    try:
        _start_tracee(tracer, pid)
        os.write(gate_w, b"g")
        if _wait_first_stop(tracer, pid):
            tracer.loop()
    except BaseException:
        tracer.kill_all()
        raise
    finally:
        os.close(gate_w)


def _null_calls_child(gate_r: int, gate_w: int, calls: int) -> None:  # pragma: no cover
    try:
        os.close(gate_w)
        os.read(gate_r, 1)
        getppid = os.getppid
        for _ in range(calls):
            getppid()
    finally:
        os._exit(0)


def _seize_process(tracer: Tracer, pid: int) -> None:
    """PTRACE_SEIZE a process and every thread it has, until no new one appears."""
    error = abi.load().error
    seen: set[int] = set()
    while True:
        new = [tid for tid in abi.task_ids_of(pid) if tid not in seen]
        if not new:
            break
        for tid in new:
            seen.add(tid)
            if tid in tracer.threads or tracer.adopt(tid) is None:
                continue  # auto-attached through a clone event already, or gone
            try:  # adopted first: if Ctrl-C comes now, detach_all still knows it
                tracer.seize(tid)
            except error as exc:
                tracer.forget(tid)
                if tid == pid:
                    _attach_failed(pid, abi.error_errno(exc))
    if pid not in tracer.threads:
        _attach_failed(pid, errno.ESRCH)
    proc = tracer.procs.get(pid)
    if proc is not None:
        proc.snapshot()
        proc.baseline = proc.last


def _attach_failed(pid: int, number: int | None) -> None:
    if number == errno.ESRCH:
        raise UsageError(f"-p {pid}: no such process")
    state_and_flags = proc_state_and_flags(pid)
    if number == errno.EPERM and state_and_flags and state_and_flags[0] == "Z":
        # ptrace cannot seize a zombie thread, and this collector follows a
        # process through its main thread
        raise TracingError(
            f"cannot attach to pid {pid}: its main thread has exited while other "
            "threads run", "the ebpf collector can: -c ebpf")
    if number == errno.EPERM:
        reason, fix = why_denied(pid)
        raise TracingError(f"cannot attach to pid {pid}: {reason}", fix)
    raise TracingError(f"cannot attach to pid {pid}: {abi.errno_message(number)}")


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """While detaching: a second Ctrl-C must not cut the detach short."""
    previous = {sig: signal.signal(sig, lambda *_: None) for sig in RELAYED_SIGNALS}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _syscall_stats(s: list[Any]) -> SyscallStats:
    errnos: dict[str, int] = {}
    for number, count in s[7].items():
        name = errno_name(number)
        errnos[name] = errnos.get(name, 0) + count
    return SyscallStats(
        calls=s[0],
        errors=s[1],
        errnos=errnos,
        total_ns=s[2],
        min_ns=None if s[4] == NO_MIN else s[4],
        max_ns=s[5],
        hist=trim_hist(list(s[6])),
        raw_total_ns=s[3],
        restarts=s[S_RESTARTS],
    )


def _process_stats(proc: ProcRecord) -> ProcessStats:
    last, base = proc.last, proc.baseline
    stats = ProcessStats(
        pid=proc.pid,
        ppid=proc.ppid,
        comm=proc.comm,
        threads=max(1, len(proc.tids)),
        exit_status=proc.exit_status,
        syscalls=proc.counters[0],
        syscall_errors=proc.counters[1],
        syscall_ns=proc.counters[2],
    )
    if last is not None:
        stats.minflt = last.minflt - (base.minflt if base else 0)
        stats.majflt = last.majflt - (base.majflt if base else 0)
        stats.user_ns = last.user_ns - (base.user_ns if base else 0)
        stats.sys_ns = last.sys_ns - (base.sys_ns if base else 0)
    return stats


def _rusage_delta(before: Any, after: Any, pre_exec: abi.ProcStat | None) -> Rusage:
    """What wait4() reports for the root, less stprof's own pre-exec code.

    The root is stprof's only child reaped during the run (its children's
    usage is included once it reaps them), so the growth of our
    RUSAGE_CHILDREN is exactly its wait4 rusage; this keeps os.wait4's
    struct out of the trace loop.  ``pre_exec`` (the root's /proc counters at
    its execve: what stprof's gate cost) is taken off: faults exactly, times
    to the clock tick.
    """
    base = pre_exec or abi.ProcStat("", 1, 0, 0, 0, 0)
    return Rusage(
        user_ns=max(0, round((after.ru_utime - before.ru_utime) * 1e9) - base.user_ns),
        sys_ns=max(0, round((after.ru_stime - before.ru_stime) * 1e9) - base.sys_ns),
        minflt=max(0, after.ru_minflt - before.ru_minflt - base.minflt),
        majflt=max(0, after.ru_majflt - before.ru_majflt - base.majflt),
        nvcsw=after.ru_nvcsw - before.ru_nvcsw,
        nivcsw=after.ru_nivcsw - before.ru_nivcsw,
    )


def _note_survivors(profile: Profile, survivors: set[int]) -> None:
    if survivors:
        profile.note(
            f"ptrace: processes still running when the command exited: {len(survivors)}; "
            "detached and left running, counted up to then"
        )


def _cmdline(pid: int) -> list[str]:
    """The command line of a running process ([] if unreadable or empty).

    Empty arguments are kept; the NULs that end it (or pad a rewritten one)
    are not.
    """
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            data = f.read().rstrip(b"\0")
    except OSError:
        return []
    if not data:
        return []
    return [arg.decode(errors="replace") for arg in data.split(b"\0")]


def _kernel_version() -> tuple[int, int] | None:
    parts = platform.release().split(".")
    try:
        return int(parts[0]), int(parts[1].split("-")[0])
    except (IndexError, ValueError):
        return None


def _yama_scope() -> int | None:
    try:
        with open("/proc/sys/kernel/yama/ptrace_scope") as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None
