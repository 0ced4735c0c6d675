"""Turning the eBPF collector's maps into Profile sections.

The kernel side (collectors/bpf/stprof.c) keeps per-CPU sums and per-thread
state; this module adds them up, closes the books of threads still alive at
the end of a run the same way the kernel does at a thread's exit, and
symbolises sampled kernel stacks.  ``bpf`` is a loaded ``bcc.BPF``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from collectors.ebpf_plan import (
    DEVICE_IRQS,
    FAULT_SAMPLING,
    HIST_SLOTS,
    IRQ_KINDS,
    MAX_SYSCALLS,
    PER_TASK_ENTRIES,
    Plan,
)
from collectors.syscall_names import errno_name, syscall_name
from profiler.model import Budget, Faults, Irqs, ProcessStats, Stacks, SyscallStats, trim_hist

# stprof.c's enum charge, in order
C_USER, C_SYS_CPU, C_SYS_BLOCKED = 0, 1, 2
C_FAULT_USER_CPU, C_FAULT_USER_OFF, C_FAULT_SYS_CPU, C_FAULT_SYS_OFF = 3, 4, 5, 6
C_IRQ, C_RUNQ, C_UNKNOWN = 7, 8, 9
NCHARGE = 10

# stprof.c's enums phase, mode and run, and enum slot_state
PH_ACTIVE = 3
S_TRACED = 2
M_USER, M_SYSCALL, M_FAULT = 1, 2, 3
R_ONCPU, R_BLOCKED, R_QUEUED = 1, 2, 3

# stprof.c's enum drop, with what each loss means for the profile
DROPS = (
    "threads not traced: the thread map ({max_threads} entries) was full",
    "processes without per-process figures: the process map ({max_procs} entries) was full",
    "errno counts lost: the errno map was full",
    "kernel stack samples lost (stack map full or unreadable)",
    "kernel stack samples lost: the stack count map was full",
    "interrupt nesting reset at a context switch (an exit event was missed)",
    "syscalls with numbers beyond the table: counted per process only",
    "durations beyond the last histogram bucket, counted in it",
    "events contradicting a thread's state (an earlier event was missed): "
    "the spans before them are unexplained",
    "calls missing from the per-process/per-thread tables: their map "
    "({max_tasks} entries) was full",
)

# Frames that mark a sampled kernel stack as a page fault (sampling method).
FAULT_FRAMES = frozenset({"asm_exc_page_fault", "exc_page_fault", "do_user_addr_fault",
                          "handle_mm_fault", "do_page_fault"})


def bpf_map(bpf: Any, name: str) -> Any:
    """A map of the loaded program (bcc wants the name as bytes)."""
    return bpf[name.encode()]


def per_cpu_sum(values: Iterable[Any], name: str) -> int:
    return sum(int(getattr(value, name)) for value in values)


def per_cpu_hist(values: Iterable[Any]) -> list[int]:
    hist = [0] * HIST_SLOTS
    for value in values:
        for index in range(HIST_SLOTS):
            hist[index] += int(value.hist[index])
    return trim_hist(hist)


def first_value(bpf: Any, name: str) -> list[Any]:
    """The per-CPU values of entry 0 of a one-entry per-CPU array."""
    values = bpf_map(bpf, name)
    return list(values[values.Key(0)])


# ------------------------------------------------------------- generations
def _update_gens(bpf: Any, untraced: int = 0, traced: int = 0,
                 stopped: int | None = None) -> int:
    """Bump stprof.c's `gens` (never lowered: a stale slot stays stale), set
    `stopped` if given; returns the traced generation before."""
    gens = bpf_map(bpf, "gens")
    key = gens.Key(0)
    value = gens[key]
    before = int(value.traced)
    value.untraced += untraced
    value.traced += traced
    if stopped is not None:
        value.stopped = stopped
    gens[key] = value
    return before


def start_run(bpf: Any) -> None:
    """Every CPU's slot is stale; the probes count again."""
    _update_gens(bpf, untraced=1, traced=1, stopped=0)


def threads_added(bpf: Any) -> None:
    """After threads were put in `traced` from here: a CPU's slot may say one
    of them, running, is untraced."""
    _update_gens(bpf, untraced=1)


def stop_run(bpf: Any) -> int:
    """The probes stop counting and leave every map as it is (the slots of
    running threads too); returns the generation of those slots."""
    return _update_gens(bpf, traced=1, stopped=1)


def checked_out(bpf: Any, generation: int) -> dict[int, Any]:
    """tid -> state of each traced thread that was running at the stop (in its
    CPU's slot, newer than its entry in `traced`)."""
    return {int(slot.tid): slot.t for slot in first_value(bpf, "oncpu")
            if slot.state == S_TRACED and int(slot.gen) == generation}


# ------------------------------------------------------------- live threads
@dataclass
class ClosedThread:
    """A thread's books closed at ``end`` (it was still alive then)."""

    tid: int
    tgid: int
    lifetime: int
    charges: list[int]
    leaf: Any


def _charge_index(leaf: Any) -> int | None:
    """Where the span since the thread's last event goes (None: its open fault)."""
    if leaf.run == R_ONCPU:
        if leaf.irq_depth:
            return C_IRQ
        if leaf.mode == M_FAULT:
            return None
        return {M_USER: C_USER, M_SYSCALL: C_SYS_CPU}.get(leaf.mode, C_UNKNOWN)
    if leaf.run == R_BLOCKED:
        if leaf.mode == M_FAULT:
            return None
        return C_SYS_BLOCKED if leaf.mode == M_SYSCALL else C_UNKNOWN
    if leaf.run == R_QUEUED:
        return C_RUNQ
    return C_UNKNOWN


def close_thread(tid: int, leaf: Any, end: int) -> ClosedThread:
    """Charge a live thread up to ``end`` as the kernel does at its exit.

    A fault still open at the end is fault time (the thread has been in it
    since its entry and nothing ended it), charged as such.
    """
    end = max(end, int(leaf.last))
    charges = [int(c) for c in leaf.charge]
    span = end - int(leaf.last)
    index = _charge_index(leaf)
    pend_cpu, pend_off = int(leaf.pend_cpu), int(leaf.pend_off)
    if index is None:
        if leaf.run == R_ONCPU:
            pend_cpu += span
        else:
            pend_off += span
    else:
        charges[index] += span
    if leaf.mode == M_FAULT:
        cpu, off = ((C_FAULT_SYS_CPU, C_FAULT_SYS_OFF) if leaf.fault_in_sys
                    else (C_FAULT_USER_CPU, C_FAULT_USER_OFF))
        charges[cpu] += pend_cpu
        charges[off] += pend_off
    return ClosedThread(tid, int(leaf.tgid), end - int(leaf.start), charges, leaf)


def live_threads(bpf: Any, end: int) -> list[ClosedThread]:
    """Every thread still traced, closed at ``end``; the run's counting stops
    (all of it at once, so that these threads agree with the other maps)."""
    running = checked_out(bpf, stop_run(bpf))
    traced = bpf_map(bpf, "traced")
    entries = [(int(key.value), running.get(int(key.value), leaf))
               for key, leaf in traced.items()]
    for tid, _ in entries:
        with contextlib.suppress(KeyError):
            del traced[traced.Key(tid)]
    return [close_thread(tid, leaf, end) for tid, leaf in entries if leaf.phase == PH_ACTIVE]


# ----------------------------------------------------------------- syscalls
def read_syscalls(bpf: Any, table: dict[int, str], timed_faults: bool) -> dict[str, SyscallStats]:
    stats_table = bpf_map(bpf, "sysstats")
    result: dict[str, SyscallStats] = {}
    for nr in range(MAX_SYSCALLS):
        values = list(stats_table[stats_table.Key(nr)])
        calls = per_cpu_sum(values, "calls")
        faults = per_cpu_sum(values, "faults")
        restarts = per_cpu_sum(values, "restarts")
        if not calls and not faults and not restarts:
            continue
        mins = [int(v.min_ns) for v in values if v.calls]
        fault_ns = per_cpu_sum(values, "fault_ns") if timed_faults and faults else None
        result[syscall_name(nr, table)] = SyscallStats(
            calls=calls,
            errors=per_cpu_sum(values, "errors"),
            total_ns=per_cpu_sum(values, "total_ns"),
            min_ns=min(mins) if mins else None,
            max_ns=max(int(v.max_ns) for v in values),
            hist=per_cpu_hist(values),
            faults=faults,
            fault_ns=fault_ns,
            restarts=restarts,
        )
    for key, count in bpf_map(bpf, "errnos").items():
        stats = result.get(syscall_name(int(key.nr), table))
        if stats is not None:
            name = errno_name(int(key.err))
            stats.errnos[name] = stats.errnos.get(name, 0) + int(count.value)
    return result


def syscall_counts(bpf: Any, table: dict[int, str]) -> dict[str, tuple[int, int, int]]:
    """name -> (calls, errors, total_ns) so far, as read_syscalls sums them."""
    stats_table = bpf_map(bpf, "sysstats")
    counts: dict[str, tuple[int, int, int]] = {}
    for nr in range(MAX_SYSCALLS):
        values = list(stats_table[stats_table.Key(nr)])
        calls = per_cpu_sum(values, "calls")
        if calls:
            counts[syscall_name(nr, table)] = (calls, per_cpu_sum(values, "errors"),
                                               per_cpu_sum(values, "total_ns"))
    return counts


def read_task_calls(bpf: Any, table: dict[int, str]) -> tuple[
        dict[tuple[int, int], dict[str, tuple[int, int, int]]], dict[int, str]]:
    """--per-process/--per-thread: (pid, tid) -> name -> (calls, errors, total_ns),
    and each task's name; keyed by tgid (tid = pid) unless counted per thread."""
    counts: dict[tuple[int, int], dict[str, tuple[int, int, int]]] = {}
    comms: dict[int, str] = {}
    for key, value in bpf_map(bpf, "taskcalls").items():
        pid, task = int(value.tgid), int(key.id)
        name = syscall_name(int(key.nr), table)
        counts.setdefault((pid, task), {})[name] = (int(value.calls), int(value.errors),
                                                    int(value.total_ns))
        comms[task] = bytes(value.comm).split(b"\0", 1)[0].decode(errors="replace")
    return counts, comms


def clear_task_calls(bpf: Any) -> None:
    with contextlib.suppress(KeyError):
        bpf_map(bpf, "taskcalls").clear()


# ------------------------------------------------------------------ faults
def read_faults(bpf: Any, plan: Plan) -> Faults:
    values = first_value(bpf, "faultstats")
    user, in_sys = per_cpu_sum(values, "user"), per_cpu_sum(values, "in_sys")
    faults = Faults(count=user + in_sys, user=user, in_syscall=in_sys,
                    minor=per_cpu_sum(values, "minor"), major=per_cpu_sum(values, "major"))
    if plan.fault_timed:
        faults.user_ns = per_cpu_sum(values, "user_ns")
        faults.in_syscall_ns = per_cpu_sum(values, "sys_ns")
        faults.total_ns = faults.user_ns + faults.in_syscall_ns
        faults.hist = per_cpu_hist(values)
        faults.method = "perf sw-event pair"
        faults.precision = (
            "exact per fault: from the page-faults software event at fault entry to the "
            "minor-/major-faults event when handle_mm_fault() accounts it; includes "
            "interrupts and waits inside the fault; faults that fail or are fixed up "
            "emit no completion and are counted but not timed")
    return faults


def fault_counts(bpf: Any, timed: bool) -> tuple[int, int | None]:
    """(count, total_ns or None) of the faults so far, as read_faults sums them."""
    values = first_value(bpf, "faultstats")
    count = per_cpu_sum(values, "user") + per_cpu_sum(values, "in_sys")
    if not timed:
        return count, None
    return count, per_cpu_sum(values, "user_ns") + per_cpu_sum(values, "sys_ns")


def incomplete_faults(bpf: Any) -> int:
    return per_cpu_sum(first_value(bpf, "faultstats"), "incomplete")


# ------------------------------------------------------------------ budget
def read_budget(bpf: Any, closed: list[ClosedThread]) -> tuple[Budget, int]:
    """The Budget, and how much of its unexplained time the kernel saw as unknown."""
    values = first_value(bpf, "budgets")
    lifetime = per_cpu_sum(values, "lifetime") + sum(c.lifetime for c in closed)
    charges = [sum(int(v.charge[i]) for v in values) for i in range(NCHARGE)]
    for thread in closed:
        for index, amount in enumerate(thread.charges):
            charges[index] += amount
    budget = Budget(
        lifetime_ns=lifetime,
        user_ns=charges[C_USER],
        syscall_cpu_ns=charges[C_SYS_CPU],
        syscall_blocked_ns=charges[C_SYS_BLOCKED],
        fault_user_ns=charges[C_FAULT_USER_CPU] + charges[C_FAULT_USER_OFF],
        fault_in_syscall_ns=charges[C_FAULT_SYS_CPU] + charges[C_FAULT_SYS_OFF],
        irq_ns=charges[C_IRQ],
        runqueue_ns=charges[C_RUNQ],
    )
    explained = sum(v for name, v in budget.parts().items() if name != "unexplained_ns")
    budget.unexplained_ns = lifetime - explained
    return budget, charges[C_UNKNOWN]


def budget_so_far(bpf: Any, now: int) -> dict[str, int]:
    """The budget's parts (and lifetime_ns) if every live thread were closed now,
    without stopping anything: a running thread's state is read from its CPU's
    slot, which may be a moment old (an interval's parts are then off by that
    moment; the next interval makes up for it, so the sums stay exact)."""
    generation = int(bpf_map(bpf, "gens")[bpf_map(bpf, "gens").Key(0)].traced)
    running = checked_out(bpf, generation)
    closed = [close_thread(int(key.value), running.get(int(key.value), leaf), now)
              for key, leaf in bpf_map(bpf, "traced").items() if leaf.phase == PH_ACTIVE]
    budget, _ = read_budget(bpf, closed)
    return {"lifetime_ns": budget.lifetime_ns, **budget.parts()}


def move_sampled_fault_time(budget: Budget, user_ns: int, in_syscall_ns: int) -> None:
    """Sampling method: the estimated fault time was charged as user/syscall CPU."""
    moved_user = min(user_ns, budget.user_ns)
    moved_sys = min(in_syscall_ns, budget.syscall_cpu_ns)
    budget.user_ns -= moved_user
    budget.fault_user_ns += moved_user
    budget.syscall_cpu_ns -= moved_sys
    budget.fault_in_syscall_ns += moved_sys


# -------------------------------------------------------------- interrupts
def irq_names(path: str = "/proc/interrupts") -> dict[int, str]:
    """Device irq number -> its handler's name, as /proc/interrupts lists them."""
    names: dict[int, str] = {}
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return names
    for line in lines:
        number, _, rest = line.partition(":")
        if number.strip().isdigit() and rest.split():
            names[int(number)] = rest.split()[-1]
    return names


def read_irqs(bpf: Any, irq_ns: int) -> Irqs:
    table = bpf_map(bpf, "irqstats")
    by_kind: dict[str, dict[str, int]] = {}
    for index, kind in enumerate(IRQ_KINDS):
        values = list(table[table.Key(index)])
        count = per_cpu_sum(values, "count")
        if count and kind != DEVICE_IRQS:
            by_kind[kind] = {"count": count, "total_ns": per_cpu_sum(values, "ns")}
    names = irq_names()
    for key, stat in bpf_map(bpf, "irqdevs").items():
        number = int(key.value)
        kind = f"irq:{names.get(number, number)}"
        by_kind[kind] = {"count": int(stat.count), "total_ns": int(stat.ns)}
    return Irqs(
        count=sum(k["count"] for k in by_kind.values()),
        total_ns=irq_ns,
        by_kind=by_kind,
        method="irq_vectors, irq and softirq tracepoints while a traced thread is on CPU",
    )


# --------------------------------------------------------------- processes
@dataclass
class ProcessTable:
    by_pid: dict[int, ProcessStats] = field(default_factory=dict)

    def add_closed(self, thread: ClosedThread, timed_faults: bool) -> None:
        stats = self.by_pid.get(thread.tgid)
        if stats is None:
            return
        leaf = thread.leaf
        stats.syscalls += int(leaf.syscalls)
        stats.syscall_errors += int(leaf.sys_errors)
        stats.syscall_ns += int(leaf.syscall_ns)
        stats.minflt += int(leaf.minflt)
        stats.majflt += int(leaf.majflt)
        stats.user_ns = (stats.user_ns or 0) + thread.charges[C_USER]
        stats.sys_ns = (stats.sys_ns or 0) + thread.charges[C_SYS_CPU] + thread.charges[
            C_FAULT_USER_CPU] + thread.charges[C_FAULT_SYS_CPU]
        if timed_faults:
            stats.fault_ns = (stats.fault_ns or 0) + int(leaf.fault_ns)


def read_processes(bpf: Any, timed_faults: bool) -> ProcessTable:
    table = ProcessTable()
    for key, proc in bpf_map(bpf, "procs").items():
        pid = int(key.value)
        table.by_pid[pid] = ProcessStats(
            pid=pid,
            ppid=int(proc.ppid) or None,
            comm=bytes(proc.comm).split(b"\0", 1)[0].decode(errors="replace"),
            threads=int(proc.threads),
            exit_status=int(proc.exit_code) if proc.exit_how else None,
            syscalls=int(proc.syscalls),
            syscall_errors=int(proc.sys_errors),
            syscall_ns=int(proc.syscall_ns),
            minflt=int(proc.minflt),
            majflt=int(proc.majflt),
            user_ns=int(proc.user_ns),
            sys_ns=int(proc.sys_ns),
            fault_ns=int(proc.fault_ns) if timed_faults else None,
        )
    return table


# ------------------------------------------------------------------ stacks
@dataclass
class SampledStacks:
    """Symbolised kernel stacks, split into fault and other kernel time."""

    folded_faults: dict[str, int] = field(default_factory=dict)
    folded_other: dict[str, int] = field(default_factory=dict)
    fault_samples_user: int = 0
    fault_samples_sys: int = 0


def _symbolise(bpf: Any, stack_id: int, cache: dict[int, str]) -> list[str]:
    frames = []
    for address in bpf_map(bpf, "stack_traces").walk(stack_id):
        name = cache.get(address)
        if name is None:
            symbol = bpf.ksym(address)
            name = cache[address] = (
                symbol.decode(errors="replace") if isinstance(symbol, bytes) else str(symbol))
        frames.append(name)
    frames.reverse()  # root first, as in flame graph folded files
    return frames


def read_stacks(bpf: Any, plan: Plan) -> SampledStacks:
    result = SampledStacks()
    cache: dict[int, str] = {}
    for key, count in bpf_map(bpf, "stack_counts").items():
        try:
            frames = _symbolise(bpf, int(key.kstack), cache)
        except KeyError:
            continue
        line = ";".join(frames) or "[unknown]"
        in_fault = (key.mode == M_FAULT if plan.fault_timed
                    else bool(FAULT_FRAMES.intersection(frames)))
        target = result.folded_faults if in_fault else result.folded_other
        target[line] = target.get(line, 0) + int(count.value)
        if in_fault and plan.fault_method == FAULT_SAMPLING:
            if key.mode == M_SYSCALL:
                result.fault_samples_sys += int(count.value)
            else:
                result.fault_samples_user += int(count.value)
    return result


def stacks_section(sampled: SampledStacks, mode: str, hz: int) -> Stacks:
    folded = dict(sampled.folded_faults)
    if mode == "all":
        for line, count in sampled.folded_other.items():
            folded[line] = folded.get(line, 0) + count
    return Stacks(mode=mode, frequency_hz=hz, samples=sum(folded.values()),
                  folded=dict(sorted(folded.items(), key=lambda item: (-item[1], item[0]))))


def clear_stacks(bpf: Any) -> None:
    """Empty the stack maps (bcc's StackTrace.clear() does nothing)."""
    traces = bpf_map(bpf, "stack_traces")
    counts = bpf_map(bpf, "stack_counts")
    for key in list(counts.keys()):
        with contextlib.suppress(KeyError):
            del traces[traces.Key(int(key.kstack))]
    counts.clear()


# ------------------------------------------------------------------- drops
def read_drops(bpf: Any, plan: Plan) -> list[str]:
    table = bpf_map(bpf, "drops")
    notes = []
    for index, meaning in enumerate(DROPS):
        count = sum(int(v) for v in table[table.Key(index)])
        if count:
            text = meaning.format(max_threads=plan.max_threads, max_procs=plan.max_procs,
                                  max_tasks=PER_TASK_ENTRIES)
            notes.append(f"{count} {text}")
    return notes
