"""-e trace=SET in the eBPF collector: the set's array, its own tracepoints, the report.

With a trace set, stprof.c (TRACE_SET) counts only the calls whose number is
set in its ``trace_set`` array; the raw sys_enter/sys_exit probes still run
on every syscall, so that the time budget, faults and interrupts cover the
whole command.  With ``--no-budget`` (SYSCALL_TPS) those probes are not
compiled: one entry and one exit function are attached to the set's own
``syscalls:sys_enter_NAME`` / ``sys_exit_NAME`` tracepoints (plus a few the
collector needs, ebpf_plan.TRACE_SET_ALWAYS), so the other syscalls run no
BPF at all.  Then the thread's state is only known inside traced calls: no
budget, and a fault outside them is of unknown context.
"""

from __future__ import annotations

from typing import Any

from collectors.base import Options
from collectors.ebpf_plan import (
    SYSCALL_ENTER_FUNCTION,
    SYSCALL_EXIT_CODE_FUNCTION,
    SYSCALL_EXIT_FUNCTION,
    TRACEPOINT_NAMES,
    Plan,
)
from collectors.trace_set import trace_set_section
from profiler.errors import TracingError
from profiler.model import Profile

METHOD_ARRAY = "every syscall probed (for the budget), only the set's counted"
METHOD_OWN = "only the set's syscalls:sys_enter_NAME/sys_exit_NAME tracepoints probed"


def fill_trace_set(bpf: Any, options: Options, table: dict[int, str]) -> None:
    """Set the trace set's numbers in stprof.c's ``trace_set`` array."""
    if options.trace_set is None:
        return
    array = bpf.get_table("trace_set")
    for nr, name in table.items():
        if name in options.trace_set and 0 <= nr < len(array):
            array[array.Key(nr)] = array.Leaf(1)


def attach_own_syscall_tracepoints(bpf: Any, plan: Plan) -> None:
    """--no-budget: the generic entry/exit functions on each syscall's tracepoints."""
    for name in plan.own_syscall_tracepoints:
        enter = SYSCALL_EXIT_CODE_FUNCTION if name in ("exit", "exit_group") else (
            SYSCALL_ENTER_FUNCTION)
        for kind, function in (("enter", enter), ("exit", SYSCALL_EXIT_FUNCTION)):
            tracepoint = f"syscalls:sys_{kind}_{name}"
            try:
                bpf.attach_tracepoint(tp=tracepoint.encode(), fn_name=function.encode())
            except Exception as exc:
                raise TracingError(f"ebpf collector: cannot attach to tracepoint "
                                   f"{tracepoint} ({exc})") from None


def apply_trace_set(profile: Profile, options: Options, plan: Plan) -> None:
    """The profile of a filtered run: the set's syscalls only, what it says it traced,
    and with --no-budget what was not measured."""
    names = options.trace_set
    if names is None:
        return
    # a fault inside an untraced call is still counted for that syscall in the
    # maps (faults, fault_ns): the table shows the traced syscalls only
    profile.syscalls = {name: stats for name, stats in profile.syscalls.items()
                        if name in names}
    method = METHOD_OWN if plan.no_budget else METHOD_ARRAY
    profile.trace_set = trace_set_section(options.trace_spec, names, method)
    profile.note(f"ebpf: only -e trace={options.trace_spec} is counted ({len(names)} "
                 "syscalls); the other syscalls are not counted or timed")
    if plan.no_budget:
        _without_budget(profile, names, set(plan.own_syscall_tracepoints))


def _without_budget(profile: Profile, names: frozenset[str], probed: set[str]) -> None:
    profile.budget = None
    faults = profile.faults
    faults.unknown_context, faults.user = faults.user, 0
    faults.user_ns = None
    for process in profile.processes:
        process.user_ns = process.sys_ns = None
    profile.note(
        "ebpf --no-budget: only the trace set's own syscall tracepoints were probed, so "
        "the time budget is not measured (it needs every syscall's entry and exit), nor "
        "each process's user/system time; faults and interrupts still cover the whole "
        f"command, but the {faults.unknown_context} page faults outside the traced "
        "syscalls are of unknown context (user mode or an untraced syscall)")
    missing = sorted(name for name in names if TRACEPOINT_NAMES.get(name, name) not in probed)
    if missing:
        profile.note("ebpf --no-budget: no syscalls:sys_enter_NAME tracepoint here for "
                     f"{', '.join(missing)}: not traced")
