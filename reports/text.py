"""The terminal report: syscall time against trap time, then the details."""

from __future__ import annotations

import shlex
from collections.abc import Callable, Iterable

from tabulate import tabulate

from profiler.model import Budget, Interval, Profile, SyscallStats, TaskSyscalls
from reports.base import Renderer
from reports.histogram import log2_hist_lines
from reports.overview import overview_rows
from reports.units import fmt_count, fmt_ns, fmt_pct

SORT_KEYS: dict[str, Callable[[tuple[str, SyscallStats]], object]] = {
    "time": lambda item: (-item[1].total_ns, item[0]),
    "calls": lambda item: (-item[1].calls, item[0]),
    "errors": lambda item: (-item[1].errors, item[0]),
    "avg": lambda item: (-item[1].avg_ns, item[0]),
    "max": lambda item: (-item[1].max_ns, item[0]),
    "min": lambda item: (-(item[1].min_ns or 0), item[0]),
    "name": lambda item: item[0],
}

BUDGET_LABELS = {
    "user_ns": "user code",
    "syscall_cpu_ns": "syscalls, on CPU",
    "syscall_blocked_ns": "syscalls, blocked",
    "fault_user_ns": "page faults from user code",
    "fault_in_syscall_ns": "page faults inside syscalls",
    "irq_ns": "interrupts",
    "runqueue_ns": "waiting for a CPU",
    "unexplained_ns": "unexplained",
}

# Fewer stack samples than this and the report says the shares are rough.
FEW_SAMPLES = 100
RICH_SAMPLE_HZ = 4999  # the rate the hint suggests


def _table(rows: Iterable[Iterable[object]], headers: Iterable[str]) -> str:
    """A plain table: the first column (names) left, the figures right."""
    header_list = list(headers)
    align = ("left",) + ("right",) * (len(header_list) - 1)
    return tabulate(list(rows), headers=header_list, tablefmt="simple", colalign=align,
                    disable_numparse=True)


class TextRenderer(Renderer):
    name = "text"

    def render(self, profile: Profile) -> str:
        sections = [
            self.header(profile),
            self.budget(profile),
            self.overview(profile),
            self.syscall_table(profile),
            self.histograms(profile),
            self.fault_detail(profile),
            self.irq_table(profile),
            self.kernel_functions(profile),
            self.process_table(profile),
            self.task_tables("process", profile.per_process),
            self.task_tables("thread", profile.per_thread),
            self.notes(profile),
        ]
        return "\n\n".join(s for s in sections if s) + "\n"

    # ------------------------------------------------------------ sections
    def header(self, profile: Profile) -> str:
        if profile.attached_pid is not None:
            what = f"attached to pid {profile.attached_pid}"
        else:
            what = shlex.join(profile.command)
        status = "" if profile.exit_status is None else f", exit status {profile.exit_status}"
        header = (
            f"stprof: {what}\n"
            f"collector {profile.collector}, wall time {fmt_ns(profile.wall_ns)}{status}"
        )
        traced = profile.trace_set
        if traced is not None:  # -e trace=SET: the other syscalls were not traced
            header += (f"\ntraced only -e trace={traced.get('spec', '')} "
                       f"({len(traced.get('syscalls', []))} syscalls: {traced.get('method', '')})")
        return header

    def budget(self, profile: Profile) -> str:
        budget = profile.budget
        if budget is None or not budget.lifetime_ns:
            return ""
        rows = [
            (BUDGET_LABELS[name], fmt_ns(value), fmt_pct(value, budget.lifetime_ns))
            for name, value in budget.parts().items()
        ]
        rows.append(("threads' lifetime", fmt_ns(budget.lifetime_ns), "100.0%"))
        table = _table(rows, ["where the time went", "time", "share"])
        return "\n".join([table, "", self._budget_summary(profile, budget)])

    def _budget_summary(self, profile: Profile, budget: Budget) -> str:
        syscall = budget.syscall_cpu_ns
        traps = budget.fault_user_ns + budget.fault_in_syscall_ns + budget.irq_ns
        kernel = syscall + traps
        rusage = profile.rusage
        return (
            f"Kernel time on CPU: {fmt_ns(kernel)}: syscalls {fmt_ns(syscall)} "
            f"({fmt_pct(syscall, kernel)}), traps {fmt_ns(traps)} ({fmt_pct(traps, kernel)}).\n"
            f"time(1) would have said: user {fmt_ns(rusage.user_ns)}, "
            f"sys {fmt_ns(rusage.sys_ns)} (tick-sampled)."
        )

    def overview(self, profile: Profile) -> str:
        table = _table(overview_rows(profile), ["overview", ""])
        return table + "\n\n" + self._unexplained_line(profile)

    @staticmethod
    def _unexplained_line(profile: Profile) -> str:
        sys_ns = profile.rusage.sys_ns
        if profile.budget is not None:
            on_cpu = profile.budget.syscall_cpu_ns
            label = "on-CPU syscall time"
        else:
            on_cpu = profile.total_syscall_ns
            label = "syscall time"
        if not sys_ns:
            return f"System time was below the clock's resolution; {label} {fmt_ns(on_cpu)}."
        rest = sys_ns - on_cpu
        if rest <= 0:
            return (f"The syscalls explain all of the system time ({label} {fmt_ns(on_cpu)}"
                    f" >= system time {fmt_ns(sys_ns)}; syscall time includes time blocked"
                    " unless measured on CPU).")
        return (f"The syscalls explain {fmt_pct(on_cpu, sys_ns)} of the system time; "
                f"{fmt_ns(rest)} ({fmt_pct(rest, sys_ns)}) went elsewhere: traps "
                "(page faults, interrupts) and kernel work outside syscalls.")

    def _selected(self, profile: Profile) -> list[tuple[str, SyscallStats]]:
        """The syscalls the view asks for (-e), in its order (-S)."""
        items = [
            (name, stats) for name, stats in profile.syscalls.items()
            if not self.view.only or name in self.view.only
        ]
        items.sort(key=SORT_KEYS[self.view.sort])  # type: ignore[arg-type]
        return items

    def _shown(self, items: list[tuple[str, SyscallStats]]) -> list[tuple[str, SyscallStats]]:
        return items[: self.view.top] if self.view.top else items

    def syscall_table(self, profile: Profile) -> str:
        items = self._selected(profile)
        if not items:
            return "No syscalls were recorded." if not self.view.only else (
                "None of the syscalls asked for (-e) were made.")
        shown = self._shown(items)
        whole = sum(stats.total_ns for _, stats in items)
        rows = [
            (name, fmt_count(s.calls), fmt_count(s.errors) if s.errors else "",
             fmt_ns(s.total_ns), fmt_ns(s.avg_ns), fmt_ns(s.min_ns), fmt_ns(s.max_ns),
             fmt_pct(s.total_ns, whole))
            for name, s in shown
        ]
        if len(shown) > 1:
            rows.append(("total", fmt_count(sum(s.calls for _, s in items)),
                         fmt_count(sum(s.errors for _, s in items)), fmt_ns(whole),
                         "", "", "", "100.0%" if whole else "-"))
        table = _table(rows, ["syscall", "calls", "errors", "total", "avg", "min", "max", "%"])
        lines = [table]
        if len(shown) < len(items):
            lines.append(f"({len(items) - len(shown)} more syscalls not shown; --top)")
        lines.append(self._timing_line(profile))
        errors = self._errno_lines(shown)
        if errors:
            lines.append("errors: " + "; ".join(errors))
        lines.append(self._restart_line(items))
        return "\n".join(line for line in lines if line)

    def histograms(self, profile: Profile) -> str:
        """--histogram: the latency distribution of each syscall shown, and of faults."""
        if not self.view.histograms:
            return ""
        blocks = []
        for name, stats in self._shown(self._selected(profile)):
            lines = log2_hist_lines(stats.hist)
            if lines:
                title = f"{name}: {fmt_count(stats.calls)} call{_plural(stats.calls)}"
                blocks.append("\n".join([title, *lines]))
        fault_lines = log2_hist_lines(profile.faults.hist)
        if fault_lines:
            blocks.append(f"page faults: {fmt_count(sum(profile.faults.hist))} timed\n"
                          + "\n".join(fault_lines))
        if not blocks:
            return "No latency histograms: nothing was timed."
        return "Latency histograms (log2 buckets of nanoseconds)\n\n" + "\n\n".join(blocks)

    @staticmethod
    def _timing_line(profile: Profile) -> str:
        timing = profile.timing
        overhead = timing.get("overhead_ns_per_call")
        if overhead is None:
            return ""
        shown = timing.get("shown", "corrected")
        return (f"Times are {shown}: the tracer's stop cost, {fmt_ns(overhead)} a call "
                "measured with a null syscall, is subtracted from each call "
                "(raw times are in the JSON).")

    @staticmethod
    def _errno_lines(items: list[tuple[str, SyscallStats]]) -> list[str]:
        return [
            f"{name} " + ", ".join(f"{err} x{count}" for err, count in sorted(s.errnos.items()))
            for name, s in items if s.errnos
        ]

    @staticmethod
    def _restart_line(items: list[tuple[str, SyscallStats]]) -> str:
        """Calls a signal interrupted and the kernel re-entered ('' if none)."""
        restarted = sorted((item for item in items if item[1].restarts),
                           key=lambda item: (-item[1].restarts, item[0]))
        if not restarted:
            return ""
        listed = ", ".join(f"{name} x{fmt_count(s.restarts)}" for name, s in restarted)
        return (f"restarted by the kernel after a signal: {listed} (each call counted "
                "once, with the time of all its attempts)")

    def fault_detail(self, profile: Profile) -> str:
        faults = profile.faults
        lines = [f"Page faults measured by {faults.method}"
                 + (f": {faults.precision}" if faults.precision else ".")]
        in_syscalls = [(name, s) for name, s in profile.syscalls.items() if s.faults]
        if in_syscalls:
            in_syscalls.sort(key=lambda item: (-item[1].faults, item[0]))
            rows = [(name, fmt_count(s.faults), fmt_ns(s.fault_ns)) for name, s in in_syscalls]
            lines.append(_table(rows, ["faults inside", "faults", "fault time"]))
        return "\n".join(lines)

    @staticmethod
    def irq_table(profile: Profile) -> str:
        irqs = profile.irqs
        if irqs is None or not irqs.by_kind:
            return ""
        rows = sorted(
            ((kind, fmt_count(v.get("count", 0)), fmt_ns(v.get("total_ns", 0)),
              v.get("total_ns", 0)) for kind, v in irqs.by_kind.items()),
            key=lambda row: -int(row[3]),
        )
        return _table([row[:3] for row in rows], ["interrupt", "count", "time"])

    @staticmethod
    def kernel_functions(profile: Profile) -> str:
        stacks = profile.stacks
        if stacks is None or not stacks.samples:
            return ""
        top = stacks.top_functions(10)
        in_stack = stacks.inclusive()
        rows = [(func, fmt_count(count), fmt_pct(count, stacks.samples),
                 fmt_pct(in_stack.get(func, 0), stacks.samples)) for func, count in top]
        what = "its page faults" if stacks.mode == "faults" else "all its kernel time"
        title = (f"Top kernel functions in {what} "
                 f"({fmt_count(stacks.samples)} samples at {stacks.frequency_hz} Hz; "
                 "self: the function itself, total: it and what it called)")
        table = title + "\n" + _table(rows, ["function", "samples", "self", "total"])
        if stacks.samples < FEW_SAMPLES:
            more = (f"raise the sampling rate (-F {RICH_SAMPLE_HZ})"
                    if stacks.frequency_hz < RICH_SAMPLE_HZ
                    else "profile a longer run of it")
            table += (f"\nOnly {fmt_count(stacks.samples)} samples: shares this coarse are "
                      f"rough; for more, {more}.")
        return table

    @staticmethod
    def process_table(profile: Profile) -> str:
        if len(profile.processes) < 2:
            return ""
        rows = [
            (p.pid, p.comm, p.threads, fmt_count(p.syscalls), fmt_ns(p.syscall_ns),
             fmt_count(p.minflt), fmt_count(p.majflt), fmt_ns(p.fault_ns),
             "" if p.exit_status is None else p.exit_status)
            for p in profile.processes
        ]
        return _table(rows, ["pid", "command", "threads", "syscalls", "syscall time",
                             "minflt", "majflt", "fault time", "exit"])

    def task_tables(self, kind: str, tasks: list[TaskSyscalls] | None) -> str:
        """--per-process / --per-thread: each task's own syscalls, sorted and capped
        as the main table is (-S, --top, -e)."""
        if not tasks:
            return ""
        blocks = []
        for task in tasks:
            items = [(name, SyscallStats(calls=c["calls"], errors=c["errors"],
                                         total_ns=c["total_ns"]))
                     for name, c in task.syscalls.items()
                     if not self.view.only or name in self.view.only]
            items.sort(key=SORT_KEYS[self.view.sort])  # type: ignore[arg-type]
            shown = self._shown(items)
            whole = sum(s.total_ns for _, s in items)
            rows = [(name, fmt_count(s.calls), fmt_count(s.errors) if s.errors else "",
                     fmt_ns(s.total_ns), fmt_ns(s.avg_ns), fmt_pct(s.total_ns, whole))
                    for name, s in shown]
            who = (f"pid {task.pid}" if kind == "process"
                   else f"tid {task.tid} (pid {task.pid})")
            title = (f"{kind.capitalize()} {who} {task.comm}: "
                     f"{fmt_count(sum(s.calls for _, s in items))} syscalls, {fmt_ns(whole)}")
            table = _table(rows, ["syscall", "calls", "errors", "total", "avg", "%"]) if rows \
                else "(no syscalls)"
            more = (f"\n({len(items) - len(shown)} more syscalls not shown; --top)"
                    if len(shown) < len(items) else "")
            blocks.append(f"{title}\n{table}{more}")
        return "\n\n".join(blocks)

    @staticmethod
    def notes(profile: Profile) -> str:
        if not profile.notes:
            return ""
        return "Notes:\n" + "\n".join(f"- {note}" for note in profile.notes)


def _plural(count: int) -> str:
    return "" if count == 1 else "s"


def interval_summary(interval: Interval, what: str, top: int) -> str:
    """A few lines on one interval (stprof run -i), or on the run so far (SIGUSR1):
    the top syscalls by time, faults, and the budget's largest parts."""
    span = f"{interval.start_ns / 1e9:.3f}s-{interval.end_ns / 1e9:.3f}s"
    calls = sum(c["calls"] for c in interval.syscalls.values())
    total = sum(c["total_ns"] for c in interval.syscalls.values())
    lines = [f"-- stprof {what} {span}: {fmt_count(calls)} syscalls, {fmt_ns(total)}"]
    ranked = sorted(interval.syscalls.items(), key=lambda item: (-item[1]["total_ns"], item[0]))
    if ranked:
        lines.append("   " + ", ".join(
            f"{name} {fmt_count(c['calls'])}x {fmt_ns(c['total_ns'])}"
            + (f" ({fmt_count(c['errors'])} err)" if c["errors"] else "")
            for name, c in ranked[:top]))
    faults = interval.faults
    fault_ns = faults.get("total_ns")
    fault_time = f", {fmt_ns(fault_ns)}" if fault_ns is not None else ""
    parts = [f"faults {fmt_count(faults.get('count') or 0)}{fault_time}"]
    budget = interval.budget
    if budget:
        lifetime = budget.get("lifetime_ns", 0)
        biggest = sorted(((v, k) for k, v in budget.items() if k in BUDGET_LABELS and v > 0),
                         reverse=True)[:4]
        parts.extend(f"{BUDGET_LABELS[k]} {fmt_pct(v, lifetime)}" for v, k in biggest)
    lines.append("   " + "; ".join(parts))
    return "\n".join(lines) + "\n"
