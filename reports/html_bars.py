"""Stacked bars for the HTML pages: the time budget, and what stands in for it.

A bar is a list of parts, each with its time and share formatted as the
text report formats them (reports/units.py); the template draws it as one
horizontal bar with a legend.  Colours come from the Okabe-Ito palette
(colour-blind safe); each part names its colour by the key of its part.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from profiler.model import Budget, Profile
from reports.text import BUDGET_LABELS
from reports.units import fmt_count, fmt_ns, fmt_pct

# A part's colour, by its key (report.css has one class per key).
PART_COLOURS = {
    "user_ns": "sky",
    "syscall_cpu_ns": "blue",
    "syscall_blocked_ns": "green",
    "fault_user_ns": "orange",
    "fault_in_syscall_ns": "vermillion",
    "irq_ns": "purple",
    "runqueue_ns": "yellow",
    "unexplained_ns": "grey",
    # what the collectors without a budget have
    "syscall_ns": "blue",
    "syscall_own_ns": "blue",
    "rest_sys_ns": "grey",
    "trap_user_ns": "orange",
    "trap_in_syscall_ns": "vermillion",
    # fault splits
    "user": "orange",
    "in_syscall": "vermillion",
    "minor": "sky",
    "major": "purple",
    "unsplit": "grey",
}


@dataclass(frozen=True)
class BarPart:
    key: str
    label: str
    value: str  # the figure as shown: '7.17 ms', '2,563'
    share: str  # '59.7%'
    percent: float  # width in the bar, 0..100

    @property
    def colour(self) -> str:
        return PART_COLOURS.get(self.key, "grey")


@dataclass(frozen=True)
class Bar:
    """One stacked bar; ``whole`` names what 100% is."""

    parts: list[BarPart]
    whole_label: str
    whole_value: str
    notes: list[str] = field(default_factory=list)
    scale: float = 100.0  # the bar's length, in percent of the figure's width

    @property
    def drawn(self) -> list[BarPart]:
        """The parts wide enough to see (a part of 0 has no box in the bar)."""
        return [part for part in self.parts if part.percent > 0]


def time_bar(parts: list[tuple[str, str, int]], whole_label: str, whole_ns: int,
             notes: list[str] | None = None) -> Bar:
    """A bar of times: (key, label, ns) each, shares of ``whole_ns``."""
    return Bar(
        parts=[BarPart(key, label, fmt_ns(ns), fmt_pct(ns, whole_ns), _percent(ns, whole_ns))
               for key, label, ns in parts],
        whole_label=whole_label, whole_value=fmt_ns(whole_ns), notes=notes or [])


def count_bar(parts: list[tuple[str, str, int]], whole_label: str, whole: int) -> Bar:
    """A bar of counts: (key, label, count) each, shares of ``whole``."""
    return Bar(
        parts=[BarPart(key, label, fmt_count(n), fmt_pct(n, whole), _percent(n, whole))
               for key, label, n in parts],
        whole_label=whole_label, whole_value=fmt_count(whole))


def _percent(part: int, whole: int) -> float:
    return 100.0 * part / whole if whole > 0 and part > 0 else 0.0


# ------------------------------------------------------------ the budget
def budget_bar(budget: Budget) -> Bar:
    """eBPF's time budget: the eight parts of the threads' lifetime."""
    parts = [(name, BUDGET_LABELS[name], value) for name, value in budget.parts().items()]
    return time_bar(parts, "threads' lifetime", budget.lifetime_ns)


def stand_in_bar(profile: Profile) -> Bar | None:
    """For a collector without a budget: what it measured, as one bar.

    DTrace times traps inside and outside syscalls (the lecture's split);
    ptrace has only syscall time against rusage's system time.
    """
    timing = profile.timing
    syscall_ns = profile.total_syscall_ns
    if "trap_user_ns" in timing and "trap_in_syscall_ns" in timing:
        trap_user = int(timing["trap_user_ns"])
        trap_in = min(int(timing["trap_in_syscall_ns"]), syscall_ns)
        parts = [("syscall_own_ns", "syscalls, their own work", syscall_ns - trap_in),
                 ("trap_in_syscall_ns", "traps inside syscalls", trap_in),
                 ("trap_user_ns", "traps outside syscalls", trap_user)]
        return time_bar(parts, "syscalls and traps", syscall_ns + trap_user)
    sys_ns = profile.rusage.sys_ns
    if not sys_ns and not syscall_ns:
        return None
    if sys_ns >= syscall_ns:
        parts = [("syscall_ns", "syscalls", syscall_ns),
                 ("rest_sys_ns", "system time outside syscalls",
                  sys_ns - syscall_ns)]
        return time_bar(parts, "system time (rusage)", sys_ns)
    # syscall time includes time blocked, so it can outgrow the system time
    parts = [("syscall_ns", "syscalls (on CPU and blocked)", syscall_ns)]
    note = (f"The syscall time ({fmt_ns(syscall_ns)}) exceeds the system time "
            f"({fmt_ns(sys_ns)}): it includes time blocked, which is not system time.")
    return time_bar(parts, "time in syscalls", syscall_ns, [note])


def fault_place_bar(profile: Profile) -> Bar | None:
    """User-mode faults against faults inside syscalls, when the collector tells them apart."""
    faults = profile.faults
    if not (faults.user or faults.in_syscall):
        return None
    parts = [("user", "from user code", faults.user),
             ("in_syscall", "inside syscalls", faults.in_syscall)]
    unsplit = faults.count - faults.user - faults.in_syscall
    if unsplit > 0:
        parts.append(("unsplit", "not attributed", unsplit))
    return count_bar(parts, "page faults", faults.count)


def fault_kind_bar(profile: Profile) -> Bar | None:
    faults = profile.faults
    if not (faults.minor or faults.major):
        return None
    return count_bar([("minor", "minor", faults.minor), ("major", "major", faults.major)],
                     "completed page faults", faults.minor + faults.major)
