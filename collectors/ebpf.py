"""The eBPF collector: in-kernel counting with bcc (Linux, root).

One BPF program (collectors/bpf/stprof.c, specialised by collectors.ebpf_plan)
counts syscalls, page faults and interrupts of the target's process tree and
keeps a time budget per thread, all inside the kernel; nothing is sent to
user space per event.  ``prepare()`` compiles and attaches once; each
``run()`` empties the maps, starts (or attaches to) the target, waits for its
end and reads the maps into a Profile (collectors.ebpf_read).

Counting starts at the command's execve: the paused child's tid is put in
the traced set as "armed" and becomes active at its own sys_enter of execve,
so stprof's pre-exec syscalls are never counted.  Children and threads join
the set at fork (task_newtask) when their parent is traced.

Syscalls, faults and interrupts are probed with raw tracepoints where the
kernel takes them (else regular tracepoints: each of those costs ~75 ms to
detach, so the few that stay, sched/task events whose programs read
task_struct fields through tracefs' formats, are released at close by a
keeper process that stprof does not wait for: _release_in_background), and a
running thread's state sits in its CPU's slot (stprof.c's `oncpu`, filled at
context switches), so a syscall costs no hash lookup; whenever threads are added from here, or a run
ends, the slots are made stale (ebpf_read's start_run, threads_added,
stop_run).

bcc is imported only inside methods, so this module imports anywhere.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import platform
import select
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from collectors import ebpf_cache, ebpf_filter
from collectors import ebpf_kernel as kernel
from collectors import ebpf_read as read
from collectors.base import Availability, Collector, Options, ProbeMethod
from collectors.ebpf_plan import (
    FAULT_SAMPLING,
    FAULT_SW_PAIR,
    SYSCALLS_RAW,
    SYSCALLS_TRACEPOINTS,
    Plan,
    make_plan,
    sampling_event,
)
from collectors.run_clock import RunClock, raise_deadline
from collectors.syscall_names import syscall_table
from profiler.errors import CollectorUnavailable, StprofError, TracingError, UsageError
from profiler.intervals import Counters, IntervalBook, task_tables
from profiler.model import Profile, Rusage
from profiler.phases import phase, record
from profiler.target import (
    Interrupted,
    command_needs_own_group,
    decode_wait_status,
    raise_exec_error,
    relay_signals,
    spawn_paused,
)
from profiler.timeline import TimelineWriter

BPF_SOURCE = Path(__file__).with_name("bpf") / "stprof.c"
SETUP_FIX = "run `make setup` (or: apt-get install python3-bpfcc bpfcc-tools)"
HEADERS_FIX = ("run `make setup` (installs linux-headers and links them as "
               "/lib/modules/$(uname -r)/build)")

# clang flags beside the plan's -D flags.  -g0: no debug info.  bcc compiles with
# -g for BTF (source lines in verifier logs, typed map dumps in bpftool);
# stprof needs neither, and the debug info costs a third of the compile here.
# -O0 with -disable-O0-optnone: bcc optimises the module twice, in clang's own
# -O2 pipeline and then in its O3 pipeline before code generation; the second
# alone gives the same code (the probes came out 1-4% shorter, and the same
# size on the hot path, bcc 0.26 / LLVM 14), and skipping the first saves a
# third of the compile.  Without -disable-O0-optnone, -O0 marks every function
# optnone and the O3 pipeline would leave them unoptimised.
CLANG_FLAGS = ("-g0", "-O0", "-Xclang", "-disable-O0-optnone")

# stprof.c's phase and mode values for threads put in the map from here
PH_ARMED, PH_ACTIVE = 1, 3
M_UNKNOWN, M_SYSCALL = 0, 2
R_UNKNOWN, R_BLOCKED = 0, 2

SW_EVENTS = (
    (kernel.PERF_COUNT_SW_PAGE_FAULTS, "on_fault_start"),
    (kernel.PERF_COUNT_SW_PAGE_FAULTS_MIN, "on_fault_minor"),
    (kernel.PERF_COUNT_SW_PAGE_FAULTS_MAJ, "on_fault_major"),
)


@dataclass
class Outcome:
    """How the target's run ended, as seen from user space."""

    root_pid: int
    started_ns: int
    ended_ns: int
    exit_status: int | None = None
    rusage: Rusage = field(default_factory=Rusage)
    notes: list[str] = field(default_factory=list)


class EbpfCollector(Collector):
    name: ClassVar[str] = "ebpf"
    description: ClassVar[str] = "in-kernel counting with eBPF (bcc): syscalls, faults, budget"
    platforms: ClassVar[tuple[str, ...]] = ("linux",)
    long_runs: ClassVar[bool] = True
    writes_timeline: ClassVar[bool] = True
    filters_syscalls: ClassVar[bool] = True

    def __init__(self, options: Options, fault_method: str | None = None,
                 raw_syscalls: bool | None = None, raw_events: bool | None = None,
                 timeline_buffer: str | None = None) -> None:
        """``fault_method`` forces FAULT_SW_PAIR or FAULT_SAMPLING, ``raw_syscalls=False``
        the regular syscall tracepoints, ``raw_events=False`` the regular fault and
        interrupt tracepoints, ``timeline_buffer`` ebpf_plan.TIMELINE_PERF the perf
        buffer for --timeline (tests, benchmarks)."""
        super().__init__(options)
        self._forced_timeline_buffer = timeline_buffer
        self._forced_fault_method = fault_method
        self._raw_syscalls = raw_syscalls
        self._raw_events = raw_events
        self._bpf: Any = None
        self.plan: Plan | None = None
        self._syscalls = syscall_table()
        self._refused_irq_tracepoints: list[str] = []
        self._ring: Any = None  # ebpf_timeline.RingReader, with --timeline
        self._closed: list[read.ClosedThread] = []
        self._book: IntervalBook | None = None
        # threads closed at --duration's deadline (the command ran on untraced)
        self._early_closed: list[read.ClosedThread] | None = None
        self._deadline = ""  # at the deadline: "killed", "untraced" or "" (not reached)

    def bpf_functions(self) -> dict[bytes, Any]:
        """The loaded BPF programs by name (bcc's BPF.Function: .fd), for benchmarks."""
        return dict(self._bpf.funcs) if self._bpf is not None else {}

    @property
    def from_cache(self) -> bool:
        """Whether the loaded probes came from collectors.ebpf_cache, not a compile."""
        return bool(getattr(self._bpf, "stprof_from_cache", False))

    # ------------------------------------------------------------ questions
    @classmethod
    def availability(cls) -> Availability:
        if not sys.platform.startswith("linux"):
            return Availability.no("eBPF needs Linux", "use the dtrace collector on FreeBSD")
        if not kernel.privileged_enough():
            return Availability.no(
                "needs root (or the CAP_BPF and CAP_PERFMON capabilities)",
                "run stprof with sudo, or use --collector ptrace")
        if not syscall_table():
            return Availability.no(
                f"stprof has no syscall table for {platform.machine()}: the traced command "
                "would never start counting (at its execve)", "use --collector ptrace")
        if importlib.util.find_spec("bcc") is None:
            return Availability.no("the bcc Python module is not installed", SETUP_FIX)
        headers = kernel.kernel_headers_dir()
        if headers is None:
            return Availability.no(
                f"no kernel headers for {kernel.kernel_release()} at "
                "/lib/modules/$(uname -r)/build", HEADERS_FIX)
        if kernel.tracefs_dir() is None and not kernel.tracefs_mountable():
            return Availability.no("this kernel offers neither tracefs nor debugfs",
                                   "use a kernel built with CONFIG_TRACING")
        return Availability.yes(f"bcc, tracepoints, {kernel.headers_description(headers)}")

    @classmethod
    def methods(cls) -> list[ProbeMethod]:
        fault_methods = _fault_timing_methods()
        return [
            *_syscall_methods(),
            ProbeMethod("faults", "exceptions page_fault_user/page_fault_kernel tracepoints",
                        _tracepoint_availability("exceptions", "page_fault_user")),
            *fault_methods,
            ProbeMethod("off-CPU time", "sched_switch/sched_wakeup tracepoints",
                        _tracepoint_availability("sched", "sched_switch")),
            ProbeMethod("interrupts", "irq_vectors, irq and softirq tracepoints",
                        _tracepoint_availability("irq", "softirq_entry")),
            ProbeMethod("stacks", "perf_event sampling (cycles, else cpu-clock), BPF stack maps",
                        _sampling_availability()),
            ProbeMethod("start-up", "compiled probes kept between runs (ebpf_cache)",
                        _cache_availability()),
        ]

    # ------------------------------------------------------------ lifecycle
    def prepare(self) -> None:
        if self._bpf is not None:
            return
        with phase("checks (ebpf: availability, tracefs)"):
            available = self.availability()
            if not available.ok:
                raise CollectorUnavailable(f"ebpf collector: {available.reason}", available.fix)
            problem = kernel.ensure_tracefs()
            if problem is not None:
                raise CollectorUnavailable(f"ebpf collector: {problem}",
                                           "mount -t debugfs none /sys/kernel/debug")
        with phase("plan"):
            self.plan = make_plan(self.options, self._forced_fault_method, self._raw_syscalls,
                                  self._raw_events, self._forced_timeline_buffer)
        self._bpf = _compile(self.plan)  # times "compile"
        try:
            ebpf_filter.fill_trace_set(self._bpf, self.options, self._syscalls)
            attaching = time.perf_counter()
            self._attach(self.plan)
        except BaseException:
            self.close()
            raise
        _record_load_and_attach(self._bpf, time.perf_counter() - attaching)

    def close(self) -> None:
        bpf, self._bpf = self._bpf, None
        if bpf is not None:
            with phase("teardown"):
                _release_in_background(bpf)

    def run(self) -> Profile:
        self.prepare()
        plan = self._require_plan()
        self._reset_maps()
        misses_before = self._recursion_misses()
        timeline = self._start_timeline(plan)
        self._early_closed = None
        self._deadline = ""
        self._book = IntervalBook(time.monotonic_ns(), self._read_counters,
                                  self.options.show_interval)
        try:
            if self.options.attach_pid is not None:
                outcome = self._trace_attached(self.options.attach_pid)
            else:
                outcome = self._trace_command()
            profile = self._read_profile(plan, outcome)
        except BaseException:
            if timeline is not None:
                self._abandon_timeline(timeline)
            raise
        if timeline is not None:
            self._finish_timeline(timeline, profile, outcome)
        missed = self._recursion_misses() - misses_before
        if missed > 0:
            profile.note(f"the kernel skipped {missed} probe runs (BPF recursion protection, "
                         "system-wide): up to that many events may be missing")
        return profile

    # ------------------------------------------------------------ loading
    def _require_plan(self) -> Plan:
        if self.plan is None or self._bpf is None:
            raise TracingError("ebpf collector: probes are not loaded")
        return self.plan

    def _attach(self, plan: Plan) -> None:
        from bcc import PerfType

        bpf = self._bpf
        ebpf_filter.attach_own_syscall_tracepoints(bpf, plan)
        for tracepoint, function in plan.fault_tracepoints():
            _attach_or_fail(lambda tp=tracepoint, fn=function: _attach_tracepoint(
                bpf, tp, fn, plan.raw_events), f"tracepoint {tracepoint}")
        self._refused_irq_tracepoints = _attach_pairs(bpf, plan.manual_tracepoints,
                                                      plan.raw_events)
        if plan.fault_timed or not plan.fault_entry_tracepoints:
            events = SW_EVENTS if plan.fault_timed else SW_EVENTS[:1]
            for config, function in events:
                _attach_or_fail(lambda c=config, fn=function: bpf.attach_perf_event(
                    ev_type=PerfType.SOFTWARE, ev_config=c, fn_name=fn.encode(), sample_period=1),
                    f"software event {config}")
        if plan.sampling:
            self._attach_sampling(plan)

    def _attach_sampling(self, plan: Plan) -> None:
        from bcc import PerfHWConfig, PerfSWConfig, PerfType

        bpf = self._bpf
        if plan.sample_event == "cycles":
            try:
                bpf.attach_perf_event(ev_type=PerfType.HARDWARE, ev_config=PerfHWConfig.CPU_CYCLES,
                                      fn_name=b"on_sample", sample_freq=plan.sample_hz)
                return
            except Exception:
                plan.sample_event = "cpu-clock"
        _attach_or_fail(lambda: bpf.attach_perf_event(
            ev_type=PerfType.SOFTWARE, ev_config=PerfSWConfig.CPU_CLOCK,
            fn_name=b"on_sample", sample_freq=plan.sample_hz), "cpu-clock sampling")

    def _reset_maps(self) -> None:
        bpf = self._bpf
        read.clear_stacks(bpf)
        for name in ("traced", "procs", "errnos", "sysstats", "faultstats", "budgets",
                     "irqstats", "irqstart", "irqdevs", "drops", "samples"):
            read.bpf_map(bpf, name).clear()
        if self._require_plan().per_task:
            read.clear_task_calls(bpf)
        read.start_run(bpf)

    # ------------------------------------------------------------ timeline
    def _start_timeline(self, plan: Plan) -> TimelineWriter | None:
        """With --timeline: a writer, and the ring buffer read into it from now on."""
        if not plan.timeline or self.options.timeline is None:
            return None
        from collectors.ebpf_timeline import RingReader

        if self._ring is None:
            self._ring = RingReader(self._bpf, self._syscalls, plan.timeline_buffer)
        writer = TimelineWriter(self.options.timeline, self.options.timeline_limit,
                                origin_ns=time.monotonic_ns())
        self._ring.start(writer)
        return writer

    def _abandon_timeline(self, writer: TimelineWriter) -> None:
        self._ring.abandon()
        writer.abort()

    def _finish_timeline(self, writer: TimelineWriter, profile: Profile,
                         outcome: Outcome) -> None:
        self._ring.stop()
        for thread in self._closed:
            writer.thread(thread.tid, thread.tgid, int(thread.leaf.start), outcome.ended_ns)
        names = {p.pid: p.comm for p in profile.processes}
        about = {"collector": self.name, "command": list(self.options.command),
                 "buffer": self._require_plan().timeline_buffer,
                 "fault_slices": "timed page faults (perf software events page-faults -> "
                                 "minor/major-faults)" if self._require_plan().fault_timed
                                 else "none: fault time is sampled here, not timed per fault"}
        if self._ring.error is not None:
            profile.note(f"timeline: an event could not be decoded ({self._ring.error})")
        try:
            summary = writer.finish(outcome.ended_ns, names, about)
        except StprofError as exc:
            profile.note(f"timeline not written: {exc.one_line()}")
            return
        for text in summary.notes():
            profile.note(text)

    def _recursion_misses(self) -> int:
        total = 0
        for function in self._bpf.funcs.values():
            misses = kernel.recursion_misses(function.fd)
            total += misses or 0
        return total

    # ------------------------------------------------------------ tracing
    def _trace_command(self) -> Outcome:
        argv = self.options.command
        child = spawn_paused(argv, self.options.credentials,
                             own_group=command_needs_own_group())
        try:
            self._arm(child.pid, argv[0])
            with relay_signals(child.pid, child.group):
                child.release()
                error = child.exec_error()
                if error is not None:
                    _reap(child.pid)
                    raise_exec_error(argv[0], error)
                with self._clock(None):
                    ended = self._wait_command(child.pid)
                _, status, usage = os.wait4(child.pid, 0)
            ended = ended or time.monotonic_ns()
        except BaseException:
            child.kill()
            _reap(child.pid)
            raise
        finally:
            child.close()
        return Outcome(
            root_pid=child.pid,
            started_ns=child.released_ns or child.started_ns,
            ended_ns=ended,
            exit_status=decode_wait_status(status),
            rusage=Rusage.from_struct(usage),
            notes=self._deadline_notes(),
        )

    def _wait_command(self, pid: int) -> int | None:
        """Wait until the command has exited (not reaped), or --duration's deadline.

        At the deadline the command is killed (--duration-kill) and awaited
        traced, or the counting stops there and the command finishes
        untraced; returns the time counting stopped then, else None.
        """
        pidfd = os.pidfd_open(pid)
        try:
            duration = self.options.duration_s
            if duration is None:
                _wait_readable(pidfd)
                return None
            if _wait_readable(pidfd, time.monotonic() + duration):
                return None
            if self.options.duration_kill:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                self._deadline = "killed"
                _wait_readable(pidfd)
                return None
            ended = time.monotonic_ns()
            self._early_closed = read.live_threads(self._bpf, ended)
            self._deadline = "untraced"
            return ended
        finally:
            os.close(pidfd)

    def _deadline_notes(self) -> list[str]:
        duration = self.options.duration_s
        if self._deadline == "killed":
            return [f"--duration {duration:g}: the command was killed at the deadline "
                    "(--duration-kill)"]
        if self._deadline == "untraced":
            return [f"--duration {duration:g}: tracing stopped at the deadline; the command "
                    "then ran on untraced (its exit status and rusage include that part)"]
        return []

    def _clock(self, on_deadline: Any) -> RunClock:
        """Interval ticks and SIGUSR1 summaries (and, given ``on_deadline``, the deadline)."""
        return RunClock(self._book, self.options.interval_s,
                        self.options.duration_s if on_deadline is not None else None,
                        on_deadline)

    def _arm(self, pid: int, argv0: str) -> None:
        """Put the paused child in the traced set; it goes live at its execve."""
        traced, procs = read.bpf_map(self._bpf, "traced"), read.bpf_map(self._bpf, "procs")
        thread = traced.Leaf()
        thread.phase = PH_ARMED
        thread.sys_nr = -1
        thread.tgid = pid
        traced[traced.Key(pid)] = thread
        proc = procs.Leaf()
        proc.ppid = os.getpid()
        proc.threads = 1
        proc.comm = os.path.basename(argv0).encode()[:15]
        procs[procs.Key(pid)] = proc
        read.threads_added(self._bpf)

    def _trace_attached(self, pid: int) -> Outcome:
        if pid == os.getpid() or not Path(f"/proc/{pid}").is_dir():
            raise UsageError(f"no process {pid} to attach to")
        try:
            pidfd = os.pidfd_open(pid)
        except OSError as exc:
            raise UsageError(f"cannot attach to process {pid}: {exc.strerror}") from None
        notes: list[str] = []
        started = time.monotonic_ns()
        try:
            self._adopt(pid)
            try:
                with relay_signals(None), self._clock(raise_deadline):
                    _wait_readable(pidfd)
                notes.append(f"process {pid} exited while traced")
            except Interrupted as stop:
                notes.append(f"stopped tracing at {stop}; process {pid} keeps running")
        finally:
            os.close(pidfd)
        return Outcome(root_pid=pid, started_ns=started, ended_ns=time.monotonic_ns(),
                       notes=notes)

    def _adopt(self, pid: int) -> None:
        """Trace a running process: its entry, and every thread until none is new."""
        procs = read.bpf_map(self._bpf, "procs")
        proc = procs.Leaf()
        proc.ppid = _proc_ppid(pid)
        proc.comm = _proc_text(f"/proc/{pid}/comm").encode()[:15]
        procs[procs.Key(pid)] = proc
        adopted: set[int] = set()
        while True:
            fresh = _thread_ids(pid) - adopted
            if not fresh:
                break
            for tid in fresh:
                self._adopt_thread(pid, tid)
            read.threads_added(self._bpf)
            adopted |= fresh
        proc.threads = len(adopted)
        procs[procs.Key(pid)] = proc

    def _adopt_thread(self, pid: int, tid: int) -> None:
        """A thread joins mid-life: its state from /proc, unknown where /proc can't say."""
        traced = read.bpf_map(self._bpf, "traced")
        thread = traced.Leaf()
        thread.phase = PH_ACTIVE
        thread.tgid = pid
        thread.sys_nr = -1  # a call in progress has no known start: not counted
        thread.mode, thread.run = _thread_state(pid, tid)
        now = time.monotonic_ns()  # the clock of bpf_ktime_get_ns()
        thread.start = thread.last = now
        traced[traced.Key(tid)] = thread

    # ------------------------------------------------------------ reading
    def _read_profile(self, plan: Plan, outcome: Outcome) -> Profile:
        bpf = self._bpf
        options = self.options
        closed = self._early_closed
        if closed is None:
            closed = read.live_threads(bpf, outcome.ended_ns)
        self._closed = closed
        profile = Profile(
            command=list(options.command),
            exit_status=outcome.exit_status,
            collector=self.name,
            wall_ns=max(0, outcome.ended_ns - outcome.started_ns),
            rusage=outcome.rusage,
            attached_pid=options.attach_pid,
            notes=list(outcome.notes),
        )
        profile.syscalls = read.read_syscalls(bpf, self._syscalls, plan.fault_timed)
        profile.faults = read.read_faults(bpf, plan)
        budget, unknown_ns = read.read_budget(bpf, closed)
        profile.budget = budget
        profile.irqs = read.read_irqs(bpf, budget.irq_ns)
        sampled = read.read_stacks(bpf, plan) if plan.sampling else read.SampledStacks()
        if plan.fault_method == FAULT_SAMPLING:
            self._estimate_fault_time(profile, sampled, plan)
        if plan.sampling and options.kernel_stacks != "off":
            profile.stacks = read.stacks_section(sampled, options.kernel_stacks, plan.sample_hz)
        profile.processes = self._processes(plan, outcome, closed)
        profile.timing = self._timing(plan)
        self._add_notes(profile, closed, unknown_ns, outcome)
        ebpf_filter.apply_trace_set(profile, self.options, plan)
        if options.interval_s is not None and self._book is not None:
            profile.intervals = self._book.finish(profile, outcome.ended_ns)
        if plan.per_task:
            counts, comms = read.read_task_calls(self._bpf, self._syscalls)
            comms.update({p.pid: p.comm for p in profile.processes})
            if options.per_process:
                profile.per_process = task_tables(counts, comms, per_thread=False)
            if options.per_thread:
                profile.per_thread = task_tables(counts, comms, per_thread=True)
        return profile

    def _read_counters(self) -> Counters:
        """The run's cumulative counts now (an interval tick, a SIGUSR1 summary)."""
        now = time.monotonic_ns()
        plan = self._require_plan()
        fault_count, fault_ns = read.fault_counts(self._bpf, plan.fault_timed)
        return Counters(at_ns=now,
                        syscalls=read.syscall_counts(self._bpf, self._syscalls),
                        fault_count=fault_count, fault_ns=fault_ns,
                        budget=read.budget_so_far(self._bpf, now))

    def _processes(self, plan: Plan, outcome: Outcome, closed: list[read.ClosedThread]) -> list[
            Any]:
        table = read.read_processes(self._bpf, plan.fault_timed)
        for thread in closed:
            table.add_closed(thread, plan.fault_timed)
        root = table.by_pid.get(outcome.root_pid)
        if root is not None and outcome.exit_status is not None:
            root.exit_status = outcome.exit_status
        others = sorted((p for pid, p in table.by_pid.items() if pid != outcome.root_pid),
                        key=lambda p: p.pid)
        return ([root] if root is not None else []) + others

    def _estimate_fault_time(self, profile: Profile, sampled: read.SampledStacks,
                             plan: Plan) -> None:
        period_ns = 1_000_000_000 // plan.sample_hz
        faults = profile.faults
        faults.user_ns = sampled.fault_samples_user * period_ns
        faults.in_syscall_ns = sampled.fault_samples_sys * period_ns
        faults.total_ns = faults.user_ns + faults.in_syscall_ns
        samples = sampled.fault_samples_user + sampled.fault_samples_sys
        faults.method = "kernel stack sampling"
        faults.precision = (
            f"estimate: {samples} cpu-clock samples at {plan.sample_hz} Hz whose kernel stack "
            f"is in the fault handler, {period_ns} ns each (statistical; small counts are rough)")
        faults.minor, faults.major = profile.rusage.minflt, profile.rusage.majflt
        profile.note("fault time estimated by sampling (no perf software events); "
                     "minor/major split taken from the command's rusage")
        if profile.budget is not None:
            read.move_sampled_fault_time(profile.budget, faults.user_ns, faults.in_syscall_ns)

    def _timing(self, plan: Plan) -> dict[str, Any]:
        samples = sum(int(v) for v in read.bpf_map(self._bpf, "samples")[0]) if plan.sampling else 0
        return {
            "method": "in-kernel tracepoints",
            "syscall_probe": plan.syscall_probe,
            "fault_irq_probes": "raw tracepoints" if plan.raw_events else "tracepoints",
            "thread_lookup": "per-CPU slot of the running thread, filled at sched_switch",
            "clock": "bpf_ktime_get_ns (CLOCK_MONOTONIC)",
            "fault_method": plan.fault_method,
            "stack_sampling_hz": plan.sample_hz if plan.sampling else 0,
            "stack_sampling_event": plan.sample_event if plan.sampling else "",
            "samples_of_traced_threads": samples,
        }

    def _add_notes(self, profile: Profile, closed: list[read.ClosedThread], unknown_ns: int,
                   outcome: Outcome) -> None:
        plan = self._require_plan()
        if not plan.raw_syscalls:
            profile.note(f"syscalls probed with {SYSCALLS_TRACEPOINTS} (raw tracepoints: "
                         f"{plan.raw_syscalls_why_not}): more overhead per syscall")
        for text in read.read_drops(self._bpf, plan):
            profile.note(text)
        faults = profile.faults
        incomplete = read.incomplete_faults(self._bpf)
        if incomplete:
            profile.note(f"{incomplete} page faults ended without a completion event "
                         "(failed, fixed up or retried elsewhere): counted, not timed; "
                         "their time is unexplained")
        if faults.method == FAULT_SW_PAIR and faults.count > faults.minor + faults.major:
            profile.note(f"{faults.count - faults.minor - faults.major} faults were not "
                         "completed by the fault handler (no minor/major event)")
        if self._refused_irq_tracepoints:
            profile.note("interrupt tracepoints refused by the kernel: "
                         f"{', '.join(self._refused_irq_tracepoints)}; those interrupts' time "
                         "counts as the state they interrupted")
        if profile.stacks is not None and self._require_plan().sample_event == "cpu-clock":
            profile.note("stacks sampled by cpu-clock (no hardware counters here): samples due "
                         "while interrupts are off land where they are re-enabled, e.g. in "
                         "exc_page_fault at a fault's entry")
        budget = profile.budget
        if budget is not None and budget.unexplained_ns != unknown_ns and not closed:
            # with live threads, their state was read while they ran: in unexplained
            profile.note(f"budget bookkeeping differs by {budget.unexplained_ns - unknown_ns} ns "
                         "from the spans of unknown state (a stprof bug)")
        survivors = {t.tgid for t in closed} - {outcome.root_pid}
        if survivors and self.options.attach_pid is None:
            profile.note(f"processes still running when the command exited: {len(survivors)}; "
                         "they are counted up to then")
        if self.options.attach_pid is not None:
            profile.note("attached to a running process: the time before attaching is not "
                         "seen and rusage is not available")


# ------------------------------------------------------------------ helpers
def _compile(plan: Plan) -> Any:
    try:
        with phase("import bcc"):
            from bcc import BPF
    except (ImportError, OSError) as exc:
        raise CollectorUnavailable(f"ebpf collector: cannot import bcc ({exc})",
                                   SETUP_FIX) from None
    source = BPF_SOURCE.read_text()
    cflags = [*plan.cflags(), *CLANG_FLAGS]
    key = ebpf_cache.cache_key(source, cflags)
    cached = ebpf_cache.load(key)
    if cached is not None:
        return cached
    try:
        bpf = _timed_bpf_class(BPF)(text=source.encode(), cflags=cflags)
    except Exception as exc:
        if plan.raw_syscalls or plan.raw_events:  # old kernels: plain tracepoints
            last_line = (str(exc).strip().splitlines() or ["?"])[-1]
            plan.without_raw_tracepoints(f"refused by the kernel or bcc ({last_line})")
            return _compile(plan)
        raise TracingError(f"ebpf collector: cannot load the BPF program ({exc})") from None
    with phase("cache (store the compile)"):
        ebpf_cache.store(bpf, key)
    return bpf


def _timed_bpf_class(bpf_class: Any) -> Any:
    """bcc's BPF class, its compile (clang, LLVM) timed apart from the loads of
    its programs (the verifier) and from the attaches of those it attaches itself."""

    class TimedBPF(bpf_class):  # type: ignore[misc]
        def __init__(self, **kwargs: Any) -> None:
            self.stprof_load_seconds = 0.0  # in load_func: the verifier
            self.stprof_autoload_seconds = 0.0  # bcc's own loads and attaches
            self._stprof_started = time.perf_counter()
            super().__init__(**kwargs)

        def _trace_autoload(self) -> None:
            compiled = time.perf_counter()
            record("compile", compiled - self._stprof_started)
            super()._trace_autoload()
            self.stprof_autoload_seconds = time.perf_counter() - compiled

        def load_func(self, *args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return super().load_func(*args, **kwargs)
            finally:
                self.stprof_load_seconds += time.perf_counter() - started

    return TimedBPF


def _record_load_and_attach(bpf: Any, attach_seconds: float) -> None:
    """The phases "load (verifier)" and "attach", over bcc's attaches and stprof's."""
    loading = getattr(bpf, "stprof_load_seconds", 0.0)
    both = getattr(bpf, "stprof_autoload_seconds", 0.0) + attach_seconds
    record("load (verifier)", loading)
    record("attach", max(0.0, both - loading))


def _attach_or_fail(attach: Any, what: str) -> None:
    try:
        attach()
    except Exception as exc:
        raise TracingError(f"ebpf collector: cannot attach to {what} ({exc})") from None


def _attach_tracepoint(bpf: Any, tracepoint: str, function: str, raw: bool) -> None:
    """Attach ``function`` to "category:event", as a raw tracepoint (by its event
    name: TP_PROTO's arguments) or as a regular one (tracefs' record)."""
    if raw:
        bpf.attach_raw_tracepoint(tp=tracepoint.split(":", 1)[1].encode(),
                                  fn_name=function.encode())
    else:
        bpf.attach_tracepoint(tp=tracepoint.encode(), fn_name=function.encode())


def _detach_tracepoint(bpf: Any, tracepoint: str, raw: bool) -> None:
    if raw:
        bpf.detach_raw_tracepoint(tp=tracepoint.split(":", 1)[1].encode())
    else:
        bpf.detach_tracepoint(tp=tracepoint.encode())


def _attach_pairs(bpf: Any, pairs: list[tuple[str, str]], raw: bool) -> list[str]:
    """Attach entry/exit tracepoint pairs; a pair the kernel refuses is left out whole.

    Returns the refused tracepoints (some kernels refuse BPF on irq_work's).
    """
    refused = []
    for (entry, entry_fn), (exit_, exit_fn) in zip(pairs[::2], pairs[1::2]):
        try:
            _attach_tracepoint(bpf, entry, entry_fn, raw)
        except Exception:
            refused.append(entry)
            continue
        try:
            _attach_tracepoint(bpf, exit_, exit_fn, raw)
        except Exception:
            _detach_tracepoint(bpf, entry, raw)
            refused.append(exit_)
    return refused


def _release_in_background(bpf: Any) -> None:
    """Detach everything; the tracepoints' last release happens in a keeper.

    The last close of a regular tracepoint's perf event waits for RCU grace
    periods (~75 ms each here, see _detach_tracepoints_in_parallel), and so,
    now and then, does a raw tracepoint's link (100-330 ms in one run of ten:
    the kernel syncs when a tracepoint's probe count changes in some ways,
    e.g. while other BPF users share sys_enter).  A keeper process (`cat`,
    reading a pipe) is given those fds first, so stprof's own closes in bcc's
    cleanup() are not the last ones and return at once (bcc disables each perf
    event before closing it; the raw tracepoints' programs still run until the
    keeper's exit, and do nothing: the run has ended, see stprof.c's `stopped`).
    When the pipe closes, the keeper exits and the kernel releases the
    tracepoints in its exit, which nobody waits for; if the keeper or stprof is
    killed, the kernel releases them just the same.  The keeper is not stprof's
    child (a shell starts it in the background and exits), so no zombie of it
    is left to stprof, whose process tree stays its command's.  Without a
    keeper (no `sh` or `cat`), they are detached here, the regular ones in
    parallel.
    """
    held = [*getattr(bpf, "tracepoint_fds", {}).values(),
            *getattr(bpf, "raw_tracepoint_fds", {}).values()]
    fds = sorted(fd for fd in held if isinstance(fd, int) and fd >= 0)
    hold = _start_keeper(fds) if fds else None
    if hold is None:
        _detach_tracepoints_in_parallel(bpf)
        bpf.cleanup()
        return
    try:
        bpf.cleanup()
    finally:
        os.close(hold)  # the keeper reads EOF: it exits and the kernel lets go


def _start_keeper(fds: list[int]) -> int | None:
    """`cat` holding ``fds`` until the returned pipe end is closed; None if it cannot start.

    A shell puts it in the background and exits at once; the pipe is the
    shell's stdin, copied to fd 3 for the job (a background job's own stdin
    is /dev/null).
    """
    wait_r, wait_w = os.pipe()
    try:
        shell = subprocess.run(
            ["sh", "-c", "exec 3<&0; cat <&3 >/dev/null 2>&1 &"], stdin=wait_r,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, pass_fds=fds,
            close_fds=True, start_new_session=True, check=False, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        os.close(wait_w)
        return None
    finally:
        os.close(wait_r)
    if shell.returncode != 0:
        os.close(wait_w)
        return None
    return wait_w


def _detach_tracepoints_in_parallel(bpf: Any) -> None:
    """Detach bcc's regular tracepoints from one thread each.

    Closing a tracepoint's perf event waits for the kernel's RCU grace periods
    (~75 ms here); one after the other, as bcc's cleanup() does, that adds up,
    while waits from parallel threads overlap (bcc's calls into libbcc release
    the GIL).  Whatever fails here is left to cleanup().
    """
    def detach(tracepoint: bytes) -> None:
        with contextlib.suppress(Exception):
            bpf.detach_tracepoint(tracepoint)

    workers = [threading.Thread(target=detach, args=(tp,), name="stprof-detach", daemon=True)
               for tp in list(getattr(bpf, "tracepoint_fds", {}))]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def _wait_readable(fd: int, deadline: float | None = None) -> bool:
    """Wait for ``fd`` to be readable, until ``deadline`` (time.monotonic) if given."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    while True:
        wait_ms = 1000
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            wait_ms = min(wait_ms, max(1, int(left * 1000)))
        if poller.poll(wait_ms):
            return True


def _proc_text(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def _proc_ppid(pid: int) -> int:
    stat = _proc_text(f"/proc/{pid}/stat")
    fields = stat.rsplit(")", 1)[-1].split()
    return int(fields[1]) if len(fields) > 1 else 0


def _thread_ids(pid: int) -> set[int]:
    try:
        return {int(name) for name in os.listdir(f"/proc/{pid}/task")}
    except OSError:
        return set()


def _thread_state(pid: int, tid: int) -> tuple[int, int]:
    """(mode, run) of a thread we start tracing mid-life, as far as /proc knows.

    /proc/TID/syscall names the syscall a blocked thread is in; a running
    thread's mode and a runnable thread's place (CPU or runqueue) are unknown.
    """
    base = f"/proc/{pid}/task/{tid}"
    syscall = _proc_text(f"{base}/syscall").split()
    stat = _proc_text(f"{base}/stat").rsplit(")", 1)[-1].split()
    state = stat[0] if stat else "?"
    in_syscall = bool(syscall) and syscall[0].isdigit()
    if in_syscall and state in ("S", "D", "I"):
        return M_SYSCALL, R_BLOCKED
    return M_UNKNOWN, R_UNKNOWN


def _tracepoint_availability(category: str, event: str) -> Availability:
    exists = kernel.tracepoint_exists(category, event)
    if exists is None:
        return Availability.no("cannot tell: tracefs not readable (needs root; stprof mounts it)")
    if not exists:
        return Availability.no(f"no {category}:{event} tracepoint in this kernel")
    return Availability.yes()


def _perf_availability(config: int, period: int = 1) -> Availability:
    ok, why = kernel.perf_event_opens(config, period)
    return Availability.yes() if ok else Availability.no(f"perf_event_open failed: {why}")


def _sampling_availability() -> Availability:
    clock = _perf_availability(kernel.PERF_COUNT_SW_CPU_CLOCK, 1000)
    if sampling_event() == "cycles":
        return Availability.yes("hardware cycles (NMI)")
    if clock.ok:
        return Availability.yes("cpu-clock (hrtimer): no hardware counters here")
    return clock


def _cache_availability() -> Availability:
    usable, what = ebpf_cache.describe()
    return (Availability.yes(what) if usable
            else Availability.no(what, f"set {ebpf_cache.ENV_DIR} to a directory of your own"))


def _syscall_methods() -> list[ProbeMethod]:
    """Raw tracepoints where they work, else the regular syscall tracepoints."""
    tracepoints = _tracepoint_availability("raw_syscalls", "sys_enter")
    raw_ok, raw_why = kernel.raw_tracepoint_usable()
    if raw_ok:
        raw = Availability.yes("used: cheapest syscall probe")
        if tracepoints.ok:
            tracepoints = Availability.yes("fallback")
    else:
        raw = Availability.no(f"not available here: {raw_why}")
        if tracepoints.ok:
            tracepoints = Availability.yes("used")
    return [
        ProbeMethod("syscalls", SYSCALLS_RAW, raw),
        ProbeMethod("syscalls", SYSCALLS_TRACEPOINTS, tracepoints),
    ]


def _fault_timing_methods() -> list[ProbeMethod]:
    """The fault-timing methods in order of preference, each detected here."""
    fentry_ok, fentry_why = kernel.fentry_usable()
    fentry = (Availability.no("works on this kernel, but not implemented in stprof yet")
              if fentry_ok else Availability.no(f"not available here: {fentry_why}"))
    kprobes = (Availability.no("works on this kernel, but not implemented in stprof yet")
               if kernel.kprobes_available()
               else Availability.no("not available here: kernel built without kprobes"))
    pair = _perf_availability(kernel.PERF_COUNT_SW_PAGE_FAULTS_MIN)
    sampling = _perf_availability(kernel.PERF_COUNT_SW_CPU_CLOCK, 1000)
    if pair.ok:
        pair = Availability.yes("used: exact per-fault time")
        sampling = Availability.yes("fallback (an estimate)")
    elif sampling.ok:
        sampling = Availability.yes("used: an estimate from kernel stacks")
    return [
        ProbeMethod("fault time", "fentry/fexit on handle_mm_fault", fentry),
        ProbeMethod("fault time", "kprobe/kretprobe on handle_mm_fault", kprobes),
        ProbeMethod("fault time", "perf sw events page-faults -> minor/major-faults", pair),
        ProbeMethod("fault time", "sampled kernel stacks in the fault handler", sampling),
    ]
