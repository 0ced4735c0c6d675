"""The tables of the HTML report as rows of formatted cells (and the numbers to sort by).

Every figure is formatted by reports/units.py, as in the text report; each
cell also carries its raw number so the page's script sorts by value.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from profiler.model import Profile, SyscallStats, bucket_bounds
from reports.base import ViewOptions
from reports.text import SORT_KEYS
from reports.units import fmt_count, fmt_ns, fmt_pct

SPARK_BAR = 4  # width of one bucket in a row's histogram, in SVG units
SPARK_HEIGHT = 16


@dataclass(frozen=True)
class Cell:
    text: str
    value: float | str  # what the column sorts by
    title: str = ""


@dataclass(frozen=True)
class SparkBar:
    x: int
    y: float
    height: float
    title: str


@dataclass(frozen=True)
class SyscallRow:
    name: str
    cells: dict[str, Cell]
    errnos: str  # 'ENOENT x16, EACCES x1'
    spark: list[SparkBar]


@dataclass(frozen=True)
class SyscallTable:
    columns: list[tuple[str, str]]  # (key, header)
    rows: list[SyscallRow]
    total: dict[str, str]
    spark_width: int
    spark_range: str  # '512 ns .. 16.8 ms'
    hidden: int  # rows left out by --top
    with_faults: bool


def bucket_label(index: int) -> str:
    """'[1.02 us, 2.05 us)': the range of times one log2 bucket holds."""
    low, high = bucket_bounds(index)
    return f"[{fmt_ns(low)}, {fmt_ns(high)})"


def _bucket_range(items: list[tuple[str, SyscallStats]]) -> tuple[int, int]:
    used = [i for _, s in items for i, count in enumerate(s.hist) if count]
    return (min(used), max(used)) if used else (0, 0)


def _spark(stats: SyscallStats, first: int, last: int) -> list[SparkBar]:
    counts = stats.hist[first:last + 1]
    peak = max(counts, default=0)
    bars = []
    for offset, count in enumerate(counts):
        if not count:
            continue
        height = max(1.5, SPARK_HEIGHT * count / peak)
        calls = "call" if count == 1 else "calls"
        bars.append(SparkBar(x=offset * SPARK_BAR, y=SPARK_HEIGHT - height, height=height,
                             title=f"{bucket_label(first + offset)}: {fmt_count(count)} "
                                   f"{calls}"))
    return bars


def syscall_table(profile: Profile, view: ViewOptions) -> SyscallTable:
    items = [(name, stats) for name, stats in profile.syscalls.items()
             if not view.only or name in view.only]
    items.sort(key=SORT_KEYS[view.sort])  # type: ignore[arg-type]
    shown = items[: view.top] if view.top else items
    whole = sum(stats.total_ns for _, stats in items)
    first, last = _bucket_range(shown)
    with_faults = profile.faults.in_syscall > 0 or any(s.faults for _, s in items)
    rows = [_syscall_row(name, stats, whole, first, last) for name, stats in shown]
    columns = [("name", "syscall"), ("calls", "calls"), ("errors", "errors"),
               ("total", "total"), ("avg", "avg"), ("min", "min"), ("max", "max"),
               ("share", "%")]
    if with_faults:
        columns += [("faults", "faults inside"), ("fault_time", "fault time")]
    total = {"calls": fmt_count(sum(s.calls for _, s in items)),
             "errors": fmt_count(sum(s.errors for _, s in items)),
             "total": fmt_ns(whole), "share": "100.0%" if whole else "-",
             "faults": fmt_count(sum(s.faults for _, s in items))}
    low, _ = bucket_bounds(first)
    _, high = bucket_bounds(last)
    return SyscallTable(columns=columns, rows=rows, total=total,
                        spark_width=(last - first + 1) * SPARK_BAR,
                        spark_range=f"{fmt_ns(low)} .. {fmt_ns(high)}",
                        hidden=len(items) - len(shown), with_faults=with_faults)


def _syscall_row(name: str, s: SyscallStats, whole: int, first: int, last: int) -> SyscallRow:
    errnos = ", ".join(f"{err} x{count}" for err, count in sorted(s.errnos.items()))
    cells = {
        "name": Cell(name, name),
        "calls": Cell(fmt_count(s.calls), s.calls),
        "errors": Cell(fmt_count(s.errors) if s.errors else "", s.errors, errnos),
        "total": Cell(fmt_ns(s.total_ns), s.total_ns),
        "avg": Cell(fmt_ns(s.avg_ns), s.avg_ns),
        "min": Cell(fmt_ns(s.min_ns), s.min_ns if s.min_ns is not None else -1),
        "max": Cell(fmt_ns(s.max_ns), s.max_ns),
        "share": Cell(fmt_pct(s.total_ns, whole), s.total_ns),
        "faults": Cell(fmt_count(s.faults) if s.faults else "", s.faults),
        "fault_time": Cell(fmt_ns(s.fault_ns) if s.faults else "",
                           s.fault_ns if s.fault_ns is not None else -1),
    }
    return SyscallRow(name=name, cells=cells, errnos=errnos, spark=_spark(s, first, last))


# ------------------------------------------------------------ the others
@dataclass(frozen=True)
class Table:
    headers: list[str]
    rows: list[list[str]]
    bars: list[float]  # per row, 0..100: the bar drawn in the first figure column


def faults_inside_table(profile: Profile) -> Table | None:
    """Which syscalls took page faults, most first: faults and their time."""
    items = sorted(((name, s) for name, s in profile.syscalls.items() if s.faults),
                   key=lambda item: (-item[1].faults, item[0]))
    if not items:
        return None
    peak = items[0][1].faults
    return Table(headers=["syscall", "faults inside", "fault time"],
                 rows=[[name, fmt_count(s.faults), fmt_ns(s.fault_ns)] for name, s in items],
                 bars=[100.0 * s.faults / peak for _, s in items])


def irq_table(profile: Profile) -> Table | None:
    irqs = profile.irqs
    if irqs is None or not irqs.by_kind:
        return None
    kinds = sorted(irqs.by_kind.items(), key=lambda item: (-item[1].get("total_ns", 0), item[0]))
    peak = max(v.get("total_ns", 0) for _, v in kinds) or 1
    return Table(headers=["interrupt", "count", "time"],
                 rows=[[kind, fmt_count(v.get("count", 0)), fmt_ns(v.get("total_ns", 0))]
                       for kind, v in kinds],
                 bars=[100.0 * v.get("total_ns", 0) / peak for _, v in kinds])


def _optional(value: int | None, fmt: Callable[[int | None], str]) -> str:
    return fmt(value) if value is not None else "-"


def process_table(profile: Profile) -> Table | None:
    if not profile.processes:
        return None
    rows = [[str(p.pid), "" if p.ppid is None else str(p.ppid), p.comm, str(p.threads),
             "" if p.exit_status is None else str(p.exit_status), fmt_count(p.syscalls),
             fmt_count(p.syscall_errors), fmt_ns(p.syscall_ns), fmt_count(p.minflt),
             fmt_count(p.majflt), _optional(p.fault_ns, fmt_ns),
             _optional(p.user_ns, fmt_ns), _optional(p.sys_ns, fmt_ns)]
            for p in profile.processes]
    peak = max(p.syscall_ns for p in profile.processes) or 1
    return Table(headers=["pid", "ppid", "command", "threads", "exit", "syscalls", "errors",
                          "syscall time", "minflt", "majflt", "fault time", "user", "sys"],
                 rows=rows,
                 bars=[100.0 * p.syscall_ns / peak for p in profile.processes])
