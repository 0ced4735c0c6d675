"""The overview figures every report shows under its budget, as label/value rows."""

from __future__ import annotations

from profiler.model import Profile
from reports.units import fmt_count, fmt_ns


def overview_rows(profile: Profile) -> list[tuple[str, str]]:
    """Calls, times, faults and interrupts, formatted as the text report shows them."""
    rusage, faults = profile.rusage, profile.faults
    rows = [
        ("syscalls", f"{fmt_count(profile.total_calls)} calls, "
                     f"{fmt_count(profile.total_errors)} errors, "
                     f"{len(profile.syscalls)} distinct"),
        ("time in syscalls", fmt_ns(profile.total_syscall_ns)),
        ("user time (rusage)", fmt_ns(rusage.user_ns)),
        ("system time (rusage)", fmt_ns(rusage.sys_ns)),
        ("page faults", f"{fmt_count(faults.count)} ({fmt_count(faults.minor)} minor, "
                        f"{fmt_count(faults.major)} major{_fault_split(profile)})"),
        ("page-fault time", fmt_ns(faults.total_ns) if faults.total_ns is not None
         else "not measured by this collector"),
    ]
    if profile.irqs is not None:
        rows.append(("interrupts", f"{fmt_count(profile.irqs.count)} "
                                   f"({fmt_ns(profile.irqs.total_ns)})"))
    return rows


def _fault_split(profile: Profile) -> str:
    faults = profile.faults
    if faults.user or faults.in_syscall:
        return (f"; {fmt_count(faults.user)} in user code, "
                f"{fmt_count(faults.in_syscall)} inside syscalls")
    return ""
