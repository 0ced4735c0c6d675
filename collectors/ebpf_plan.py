"""Which probes the eBPF collector uses on this host, decided before compiling.

The plan turns what the kernel offers (collectors.ebpf_kernel) and what the
user asked for (Options) into the -D flags that specialise
collectors/bpf/stprof.c and the list of probes to attach by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from collectors import ebpf_kernel as kernel
from collectors.base import Options
from collectors.syscall_names import syscall_table

FAULT_SW_PAIR = "perf sw-event pair"
FAULT_SAMPLING = "kernel stack sampling"
FAULT_METHODS = (FAULT_SW_PAIR, FAULT_SAMPLING)

MAX_THREADS = 65536
MAX_PROCS = 65536
MAX_SYSCALLS = 512
STACK_ENTRIES = 8192
HIST_SLOTS = 48  # as in stprof.c
# --per-process / --per-thread: (task, syscall) pairs counted (stprof.c's taskcalls)
PER_TASK_ENTRIES = 65536
PER_TASK_OFF, PER_TASK_PROCESS, PER_TASK_THREAD = 0, 1, 2
# the timeline's ring buffer: 16384 pages (64 MiB on 4 KiB pages) hold ~1.3 M events,
# the backlog of a syscall storm while the reader catches up
TIMELINE_PAGES = 16384
TIMELINE_RING, TIMELINE_PERF = "BPF ring buffer", "perf buffer"

STACKS_OFF, STACKS_FAULTS, STACKS_KERNEL = 0, 1, 2

# x86 interrupt vectors with entry/exit tracepoints, in stprof.c's VECTOR order.
VECTORS = (
    "local_timer",
    "reschedule",
    "call_function",
    "call_function_single",
    "irq_work",  # kept for stprof.c's numbering; the kernel refuses BPF on irq_work_exit
    "x86_platform_ipi",
    "thermal_apic",
    "error_apic",
    "spurious_apic",
    "deferred_error_apic",
)
# their numbers (arch/x86/include/asm/irq_vectors.h, the same since Linux 3.x), which
# each vector's tracepoint passes (spurious_apic: the vector that came in)
VECTOR_NUMBERS = {
    "local_timer": 0xEC,
    "reschedule": 0xFD,
    "call_function": 0xFC,
    "call_function_single": 0xFB,
    "irq_work": 0xF6,
    "x86_platform_ipi": 0xF7,
    "thermal_apic": 0xFA,
    "error_apic": 0xFE,
    "spurious_apic": 0xFF,
    "deferred_error_apic": 0xF4,
}
# stprof.c's shared pair of vector programs, attached to every vector's tracepoints
VECTOR_ENTRY_FUNCTION, VECTOR_EXIT_FUNCTION = "vec_in", "vec_out"
SOFTIRQS = ("HI", "TIMER", "NET_TX", "NET_RX", "BLOCK", "IRQ_POLL", "TASKLET", "SCHED",
            "HRTIMER", "RCU")
DEVICE_IRQS = "irq"  # stprof.c's kind 10; reported per irq as irq:NAME
IRQ_KINDS = (*VECTORS, DEVICE_IRQS, *(f"softirq:{name}" for name in SOFTIRQS))


SYSCALLS_RAW = "raw tracepoints sys_enter/sys_exit"
SYSCALLS_TRACEPOINTS = "raw_syscalls:sys_enter/sys_exit tracepoints"
SYSCALLS_OWN = "the trace set's syscalls:sys_enter_NAME/sys_exit_NAME tracepoints"
SYSCALL_ENTER_FUNCTION, SYSCALL_EXIT_FUNCTION = "on_sc_enter", "on_sc_exit"
SYSCALL_EXIT_CODE_FUNCTION = "on_sc_enter_exit"  # the entry of exit and exit_group
# probed with --no-budget whatever the set: the command goes live at its execve,
# exits give the processes' exit codes, and a restarted call is told by these
TRACE_SET_ALWAYS = ("execve", "execveat", "exit", "exit_group", "rt_sigreturn",
                    "restart_syscall")

FAULT_TRACEPOINTS = ("exceptions:page_fault_user", "exceptions:page_fault_kernel")
FAULT_ENTRY_FUNCTION = "on_fault_entry"
# device irq and softirq probes attached by hand when they are raw tracepoints
# (stprof.c's RAW_EVENTS; otherwise they are TRACEPOINT_PROBEs)
RAW_IRQ_TRACEPOINTS = (
    ("irq:irq_handler_entry", "on_irq_entry"),
    ("irq:irq_handler_exit", "on_irq_exit"),
    ("irq:softirq_entry", "on_softirq_entry"),
    ("irq:softirq_exit", "on_softirq_exit"),
)


@dataclass
class Plan:
    follow: bool = True
    # raw tracepoints (cheaper) where the kernel takes them, else regular ones
    raw_syscalls: bool = True
    raw_syscalls_why_not: str = ""
    # faults and interrupts as raw tracepoints (they detach ~1000x faster than
    # regular ones) where the kernel takes them
    raw_events: bool = True
    raw_events_why_not: str = ""
    fault_entry_tracepoints: bool = True
    fault_method: str = FAULT_SW_PAIR
    stack_filter: int = STACKS_FAULTS
    sample_hz: int = 999
    # "cycles" (NMI: exact even where interrupts are off) or "cpu-clock" (hrtimer)
    sample_event: str = "cpu-clock"
    max_threads: int = MAX_THREADS
    max_procs: int = MAX_PROCS
    # (tracepoint "category:event", BPF function) entry/exit pairs attached by
    # hand, as raw tracepoints when raw_events, else as regular ones
    manual_tracepoints: list[tuple[str, str]] = field(default_factory=list)
    # stream every event to user space (--timeline): stprof.c's TIMELINE, through a
    # BPF ring buffer (TIMELINE_RINGBUF, Linux 5.8+) or else a perf buffer
    timeline: bool = False
    timeline_buffer: str = TIMELINE_RING
    # per-task syscall counts: PER_TASK_PROCESS by tgid, PER_TASK_THREAD by tid
    per_task: int = PER_TASK_OFF
    # -e trace=SET: stprof.c's TRACE_SET (counted by the set's numbers); with
    # --no-budget, own_syscall_tracepoints are the syscalls whose own tracepoints
    # are probed instead of raw sys_enter/sys_exit (stprof.c's SYSCALL_TPS)
    trace_set: bool = False
    no_budget: bool = False
    own_syscall_tracepoints: list[str] = field(default_factory=list)

    @property
    def fault_timed(self) -> bool:
        return self.fault_method == FAULT_SW_PAIR

    @property
    def sampling(self) -> bool:
        return self.stack_filter != STACKS_OFF

    @property
    def syscall_probe(self) -> str:
        if self.no_budget:
            return SYSCALLS_OWN
        return SYSCALLS_RAW if self.raw_syscalls else SYSCALLS_TRACEPOINTS

    def cflags(self) -> list[str]:
        numbers = {name: nr for nr, name in syscall_table().items()}
        defines = {
            "FOLLOW": int(self.follow),
            "RAW_SYSCALLS": int(self.raw_syscalls),
            "RAW_EVENTS": int(self.raw_events),
            "FAULT_ENTRY_TP": int(self.fault_entry_tracepoints),
            "FAULT_TIMED": int(self.fault_timed),
            "STACK_FILTER": self.stack_filter,
            "NR_EXECVE": numbers.get("execve", -1),
            "NR_EXECVEAT": numbers.get("execveat", -1),
            "NR_EXIT": numbers.get("exit", -1),
            "NR_EXIT_GROUP": numbers.get("exit_group", -1),
            "NR_RT_SIGRETURN": numbers.get("rt_sigreturn", -1),
            "NR_RESTART_SYSCALL": numbers.get("restart_syscall", -1),
            "MAX_THREADS": self.max_threads,
            "MAX_PROCS": self.max_procs,
            "MAX_SYSCALLS": MAX_SYSCALLS,
            "STACK_ENTRIES": STACK_ENTRIES,
            "TIMELINE": int(self.timeline),
            "TIMELINE_PAGES": TIMELINE_PAGES,
            "TIMELINE_RINGBUF": int(self.timeline_buffer == TIMELINE_RING),
            "PER_TASK": self.per_task,
            "PER_TASK_ENTRIES": PER_TASK_ENTRIES,
            "TRACE_SET": int(self.trace_set),
            "SYSCALL_TPS": int(self.no_budget),
        }
        defines.update(self.vector_defines())
        return [f"-D{name}={value}" for name, value in defines.items()]

    def vector_defines(self) -> dict[str, int]:
        """stprof.c's VECTORS (1 if the vectors' pair is attached) and VECNR_<name>."""
        attached = {function for _, function in self.manual_tracepoints}
        defines = {"VECTORS": int(VECTOR_ENTRY_FUNCTION in attached)}
        defines.update({f"VECNR_{vector}": VECTOR_NUMBERS[vector] for vector in VECTORS})
        return defines

    def fault_tracepoints(self) -> list[tuple[str, str]]:
        """The fault-entry tracepoints attached by hand, with their function."""
        if not self.fault_entry_tracepoints:
            return []
        return [(tracepoint, FAULT_ENTRY_FUNCTION) for tracepoint in FAULT_TRACEPOINTS]

    def without_raw_tracepoints(self, why: str) -> None:
        """Fall back to regular tracepoints everywhere (the kernel refused raw ones)."""
        if self.raw_syscalls:
            self.raw_syscalls, self.raw_syscalls_why_not = False, why
        if self.raw_events:
            self.raw_events, self.raw_events_why_not = False, why
            self.manual_tracepoints = [pair for pair in self.manual_tracepoints
                                       if pair not in RAW_IRQ_TRACEPOINTS]


def irq_tracepoints(raw: bool = False) -> list[tuple[str, str]]:
    """The x86 vector entry/exit tracepoints this kernel has, with their handlers;
    with ``raw``, the device irq and softirq ones too (else they are
    TRACEPOINT_PROBEs in stprof.c)."""
    pairs: list[tuple[str, str]] = []
    if raw:
        pairs.extend(pair for pair in RAW_IRQ_TRACEPOINTS
                     if kernel.tracepoint_exists(*pair[0].split(":")))
    for vector in VECTORS:
        if vector == "irq_work":
            continue
        if kernel.tracepoint_exists("irq_vectors", f"{vector}_entry"):
            pairs.append((f"irq_vectors:{vector}_entry", VECTOR_ENTRY_FUNCTION))
            pairs.append((f"irq_vectors:{vector}_exit", VECTOR_EXIT_FUNCTION))
    return pairs


def fault_timing_method(forced: str | None = None) -> str:
    """The first fault-timing method that works here (fentry and kprobes are
    detected by ``methods()`` but not implemented)."""
    if forced is not None:
        return forced
    ok, _ = kernel.perf_event_opens(kernel.PERF_COUNT_SW_PAGE_FAULTS_MIN)
    return FAULT_SW_PAIR if ok else FAULT_SAMPLING


def sampling_event() -> str:
    """Hardware cycles where the CPU (or hypervisor) offers them, else cpu-clock."""
    ok, _ = kernel.perf_event_opens(kernel.PERF_COUNT_HW_CPU_CYCLES, 1000,
                                    kernel.PERF_TYPE_HARDWARE)
    return "cycles" if ok else "cpu-clock"


def timeline_buffer(forced: str | None = None) -> str:
    """The BPF ring buffer where the kernel has it (5.8+), else a perf buffer."""
    if forced is not None:
        return forced
    version = kernel.kernel_version()
    return TIMELINE_RING if version >= (5, 8) or version == (0, 0) else TIMELINE_PERF


def make_plan(options: Options, forced_fault_method: str | None = None,
              raw_syscalls: bool | None = None, raw_events: bool | None = None,
              forced_timeline_buffer: str | None = None) -> Plan:
    """``raw_syscalls`` / ``raw_events`` False force the regular tracepoints for
    syscalls / faults and interrupts, ``forced_timeline_buffer`` TIMELINE_PERF the
    perf buffer (tests, benchmarks)."""
    method = fault_timing_method(forced_fault_method)
    usable = (kernel.raw_tracepoint_usable() if raw_syscalls is not False
              or raw_events is not False else (False, ""))
    raw_ok, raw_why = (False, "not asked for") if raw_syscalls is False else usable
    events_ok, events_why = (False, "not asked for") if raw_events is False else usable
    wants_stacks = options.kernel_stacks != "off"
    if method == FAULT_SAMPLING or (wants_stacks and options.kernel_stacks == "all"):
        stack_filter = STACKS_KERNEL
    elif wants_stacks:
        stack_filter = STACKS_FAULTS
    else:
        stack_filter = STACKS_OFF
    return Plan(
        follow=options.follow,
        raw_syscalls=raw_ok,
        raw_syscalls_why_not=raw_why,
        raw_events=events_ok,
        raw_events_why_not=events_why,
        fault_entry_tracepoints=bool(kernel.tracepoint_exists("exceptions", "page_fault_user")),
        fault_method=method,
        stack_filter=stack_filter,
        sample_hz=max(1, int(options.stack_frequency_hz)),
        sample_event=sampling_event(),
        max_threads=MAX_THREADS,
        max_procs=MAX_PROCS,
        manual_tracepoints=irq_tracepoints(raw=events_ok),
        timeline=options.timeline is not None,
        timeline_buffer=timeline_buffer(forced_timeline_buffer),
        per_task=(PER_TASK_THREAD if options.per_thread
                  else PER_TASK_PROCESS if options.per_process else PER_TASK_OFF),
        trace_set=options.trace_set is not None,
        no_budget=options.trace_set is not None and not options.budget,
        own_syscall_tracepoints=own_syscall_tracepoints(options),
    )


# syscalls whose tracepoints carry the kernel's SYSCALL_DEFINE name, not the ABI's
TRACEPOINT_NAMES = {"stat": "newstat", "lstat": "newlstat", "fstat": "newfstat",
                    "uname": "newuname", "sendfile": "sendfile64", "umount2": "umount"}


def own_syscall_tracepoints(options: Options) -> list[str]:
    """--no-budget with a trace set: the syscalls whose sys_enter_NAME and
    sys_exit_NAME tracepoints are probed (those this kernel has)."""
    if options.trace_set is None or options.budget:
        return []
    names = {TRACEPOINT_NAMES.get(name, name)
             for name in set(options.trace_set) | set(TRACE_SET_ALWAYS)}
    return sorted(name for name in names
                  if kernel.tracepoint_exists("syscalls", f"sys_enter_{name}")
                  and kernel.tracepoint_exists("syscalls", f"sys_exit_{name}"))
