"""The HTML report: one self-contained page that shows where a command's time went.

The page is drawn from the Profile alone: the time budget as one stacked
bar with the lecture's sentence in stprof's words, the sortable syscall
table with each call's latency histogram, the page faults, the kernel
stacks of the fault path as an icicle, processes, interrupts and notes.
The profile's own JSON (schema stprof/1) is embedded, and the page offers
to save it back out.  The parts a collector could not measure are said,
with why, never left blank.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from profiler.model import Budget, Profile, bucket_bounds
from reports.base import Renderer
from reports.html_bars import (
    Bar,
    budget_bar,
    fault_kind_bar,
    fault_place_bar,
    stand_in_bar,
    time_bar,
)
from reports.html_flame import Icicle, icicle
from reports.html_page import inline_json, render_page
from reports.html_tables import (
    bucket_label,
    faults_inside_table,
    irq_table,
    process_table,
    syscall_table,
)
from reports.overview import overview_rows
from reports.text import BUDGET_LABELS, FEW_SAMPLES
from reports.units import fmt_count, fmt_ns, fmt_pct

# The parts of the budget that are the kernel's time on CPU: the system time.
SYSTEM_PARTS = ("syscall_cpu_ns", "fault_user_ns", "fault_in_syscall_ns", "irq_ns")

# What each collector cannot measure, said where the part would be.
MISSING_BUDGET = {
    "ptrace": ("ptrace sees a thread only at its syscall stops: it cannot time page faults, "
               "see interrupts, or tell time on CPU from time blocked or waiting for a CPU. "
               "So it sets the syscall time against the system time the kernel accounted "
               "(rusage, tick-sampled). Run with -c ebpf (root, bcc) for the whole budget."),
    "dtrace": ("The DTrace program times syscalls and traps (inside and outside syscalls, "
               "as the lecture does) but not user time, blocking or waiting for a CPU, so "
               "there is no budget of the threads' lifetimes; this bar is what it timed."),
}
MISSING_STACKS = {
    "ptrace": "ptrace cannot sample kernel stacks: it sees only the syscall boundary.",
}
MISSING_IRQS = {
    "ptrace": "ptrace cannot see interrupts: they never stop the traced thread.",
    "dtrace": ("The DTrace program does not trace interrupts: it times syscalls and "
               "traps (fbt::trap) only."),
}


@dataclass(frozen=True)
class Histogram:
    """A log2 histogram for uPlot: bucket labels and counts."""

    labels: list[str]  # '[1.02 us, 2.05 us)'
    lows: list[str]  # '1.02 us': the axis' tick labels
    counts: list[int]
    unit: str

    def data(self) -> dict[str, object]:
        return {"labels": self.labels, "lows": self.lows, "counts": self.counts,
                "unit": self.unit}


def fault_histogram(profile: Profile) -> Histogram | None:
    hist = profile.faults.hist
    used = [i for i, count in enumerate(hist) if count]
    if not used:
        return None
    first, last = used[0], used[-1]
    indices = range(first, last + 1)
    return Histogram(labels=[bucket_label(i) for i in indices],
                     lows=[fmt_ns(bucket_bounds(i)[0]) for i in indices],
                     counts=hist[first:last + 1], unit="faults")


def headline(profile: Profile, budget: Budget) -> str:
    """The lecture's question answered in a few words: where the system time went.

    System time is the kernel's time on CPU for the tree: syscalls' own work,
    page faults and interrupts (not user code, blocking or waiting for a CPU,
    which the whole budget shows).
    """
    parts = {name: getattr(budget, name) for name in SYSTEM_PARTS}
    kernel = sum(parts.values())
    who = profile.command[0].rsplit("/", 1)[-1] if profile.command else "the traced tree"
    if not kernel:
        return f"{who} spent no measurable time in the kernel."
    largest = max(parts, key=lambda name: parts[name])
    where = BUDGET_LABELS[largest]
    if largest == "fault_in_syscall_ns":
        top = _top_faulting_syscall(profile)
        if top:
            where = f"page faults inside {top}"
    return (f"Most of {who}'s system time went to {where} "
            f"({fmt_pct(parts[largest], kernel)} of it).")


def _top_faulting_syscall(profile: Profile) -> str | None:
    """The syscall that took most of the in-syscall fault time (or faults), if one did."""
    timed = {n: s.fault_ns for n, s in profile.syscalls.items() if s.fault_ns}
    weights = timed or {n: s.faults for n, s in profile.syscalls.items() if s.faults}
    if not weights:
        return None
    name = max(weights, key=lambda n: (weights[n] or 0))
    return name if (weights[name] or 0) * 2 > sum(v or 0 for v in weights.values()) else None


def system_bar(budget: Budget) -> Bar:
    """The system time alone: the budget's parts spent on CPU in the kernel."""
    parts = [(name, BUDGET_LABELS[name], getattr(budget, name)) for name in SYSTEM_PARTS]
    return time_bar(parts, "system time (on CPU in the kernel)",
                    sum(value for _, _, value in parts))


def budget_sentences(profile: Profile, budget: Budget) -> list[str]:
    """The lecture's sentence in stprof's words: syscall time against trap time."""
    syscall = budget.syscall_cpu_ns
    faults = budget.fault_user_ns + budget.fault_in_syscall_ns
    traps = faults + budget.irq_ns
    kernel = syscall + traps
    rusage = profile.rusage
    return [
        f"The syscalls explain {fmt_pct(syscall, kernel)} of the system time "
        f"({fmt_ns(syscall)} of {fmt_ns(kernel)} on CPU in the kernel); traps took "
        f"{fmt_ns(traps)} ({fmt_pct(traps, kernel)}): page faults {fmt_ns(faults)}, "
        f"of them {fmt_ns(budget.fault_in_syscall_ns)} inside syscalls, and interrupts "
        f"{fmt_ns(budget.irq_ns)}.",
        f"time(1) would have said: user {fmt_ns(rusage.user_ns)}, sys "
        f"{fmt_ns(rusage.sys_ns)} (tick-sampled).",
    ]


def stand_in_sentences(profile: Profile) -> list[str]:
    """What a collector without a budget can say: syscall time against system time."""
    timing = profile.timing
    syscall = profile.total_syscall_ns
    if "trap_user_ns" in timing:
        traps = int(timing["trap_user_ns"]) + int(timing.get("trap_in_syscall_ns", 0))
        count = int(timing.get("traps_user", 0)) + int(timing.get("traps_in_syscall", 0))
        whole = syscall + int(timing["trap_user_ns"])
        return [f"{fmt_count(profile.total_calls)} syscalls took {fmt_ns(syscall)}; "
                f"{fmt_count(count)} traps took {fmt_ns(traps)} ({fmt_pct(traps, whole)} of "
                "syscalls and traps together), "
                f"{fmt_ns(int(timing.get('trap_in_syscall_ns', 0)))} of it inside syscalls."]
    sys_ns = profile.rusage.sys_ns
    if not sys_ns:
        return [f"System time was below the clock's resolution; syscall time "
                f"{fmt_ns(syscall)}."]
    rest = sys_ns - syscall
    if rest <= 0:
        return [f"The syscalls explain all of the system time (syscall time "
                f"{fmt_ns(syscall)} >= system time {fmt_ns(sys_ns)}; syscall time includes "
                "time blocked)."]
    return [f"The syscalls explain {fmt_pct(syscall, sys_ns)} of the system time; "
            f"{fmt_ns(rest)} ({fmt_pct(rest, sys_ns)}) went elsewhere: traps (page faults, "
            "interrupts) and kernel work outside syscalls, which this collector cannot time."]


def _missing(table: dict[str, str], collector: str, default: str) -> str:
    return table.get(collector, default)


def stacks_explanation(profile: Profile, shape: Icicle | None) -> str:
    stacks = profile.stacks
    if stacks is None:
        return _missing(MISSING_STACKS, profile.collector,
                        f"The {profile.collector} collector sampled no kernel stacks "
                        "(--kernel-stacks off, or it cannot).")
    if shape is None:
        where = "page fault" if stacks.mode == "faults" else "kernel"
        return (f"No stack sample landed in a {where} while sampling at "
                f"{stacks.frequency_hz} Hz: the command spent too little time there; "
                "raise -F or profile a longer run.")
    return ""


class HtmlRenderer(Renderer):
    name = "html"

    def render(self, profile: Profile) -> str:
        return render_page("report.html.j2", **self.context(profile))

    def context(self, profile: Profile) -> dict[str, object]:
        budget = profile.budget if profile.budget and profile.budget.lifetime_ns else None
        shape = icicle(profile.stacks) if profile.stacks else None
        bar: Bar | None = budget_bar(budget) if budget else stand_in_bar(profile)
        system = system_bar(budget) if budget else None
        stacks = profile.stacks
        command = (f"attached to pid {profile.attached_pid}" if profile.attached_pid is not None
                   else shlex.join(profile.command))
        return {
            "title": f"stprof: {command}",
            "command": command,
            "profile": profile,
            "meta": self._meta(profile),
            "budget": budget,
            "bar": bar,
            "system_bar": system,
            "headline": headline(profile, budget) if budget else "",
            "sentences": budget_sentences(profile, budget) if budget
            else stand_in_sentences(profile),
            "missing_budget": "" if budget else _missing(
                MISSING_BUDGET, profile.collector,
                f"The {profile.collector} collector measured no time budget."),
            "overview": overview_rows(profile),
            "syscalls": syscall_table(profile, self.view),
            "timing_note": self._timing_note(profile),
            "fault_place": fault_place_bar(profile),
            "fault_kind": fault_kind_bar(profile),
            "fault_hist": fault_histogram(profile),
            "faults_inside": faults_inside_table(profile),
            "fault_method": profile.faults.method,
            "fault_precision": profile.faults.precision,
            "fault_split_missing": "" if profile.faults.user or profile.faults.in_syscall else (
                f"The {profile.collector} collector cannot tell faults in user code from "
                "faults inside syscalls."),
            "icicle": shape,
            "stacks": stacks,
            "stacks_missing": stacks_explanation(profile, shape),
            "few_samples": bool(stacks and 0 < stacks.samples < FEW_SAMPLES),
            "irqs": irq_table(profile),
            "irqs_missing": "" if profile.irqs is not None else _missing(
                MISSING_IRQS, profile.collector,
                f"The {profile.collector} collector measured no interrupts."),
            "processes": process_table(profile),
            "notes": profile.notes,
            "profile_json": inline_json(profile.to_json()),
            "json_name": self._json_name(profile),
        }

    @staticmethod
    def _meta(profile: Profile) -> list[tuple[str, str]]:
        meta = [("collector", profile.collector), ("wall time", fmt_ns(profile.wall_ns))]
        if profile.exit_status is not None:
            meta.append(("exit status", str(profile.exit_status)))
        host = profile.host
        if host:
            meta.append(("host", " ".join(v for v in (host.get("hostname"), host.get("system"),
                                                       host.get("kernel"), host.get("machine"))
                                          if v)))
        return meta

    @staticmethod
    def _timing_note(profile: Profile) -> str:
        overhead = profile.timing.get("overhead_ns_per_call")
        if overhead is None:
            return ""
        return (f"Times are {profile.timing.get('shown', 'corrected')}: the tracer's stop "
                f"cost, {fmt_ns(overhead)} a call measured with a null syscall, is subtracted "
                "from each call (raw times are in the JSON).")

    @staticmethod
    def _json_name(profile: Profile) -> str:
        word = profile.command[0].rsplit("/", 1)[-1] if profile.command else "profile"
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in word)
        return f"stprof-{safe or 'profile'}.json"
