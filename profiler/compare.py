"""Comparing two records, as objects; the renderers in reports/ only show them.

Every run of a record is flattened into named metrics (``read.calls``,
``total.syscall_ns``, ``faults.count``, ``budget.runqueue_ns``...).  Each
metric is then judged over all runs of both sides, never one run against
one run:

* counts (calls, errors, faults) are nearly deterministic.  The current
  median is a regression when it lies above the baseline's whole observed
  range by more than a tolerance (``count_relative`` of the baseline median,
  at least ``count_absolute``), an improvement when as far below.
* times vary with the machine's load.  They are judged by a two-sided
  Mann-Whitney U test over the per-run values (exact p-value) and an
  effect size: a change is *slower* (or an improvement) when it is
  significant (p <= ``alpha``) and the medians differ by at least
  ``time_relative`` and ``time_absolute_ns``; a slower time is a
  regression only when it also reaches ``time_fail``.  The ratio of the
  medians, Cliff's delta and the p-value are reported with the verdict.

Counts catch changed behaviour (10% more syscalls, smaller blocks): on a
shared 2-core VM the syscall counts of an unchanged command did not move by
one call over 150 runs (its fault count by 2%), while its times moved by
2x to 15x between checks whenever other jobs traced or loaded the
machine.  Hence ``time_fail`` is off by default: a slower time is shown,
with how sure it is, but fails CI only when asked (``--fail-on-time``, or
a time budget).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from profiler import stats
from profiler.errors import EXIT_REGRESSION, InputError
from profiler.model import Budget, Profile
from profiler.record import Record


class Kind(str, Enum):
    COUNT = "count"
    TIME = "time"
    STATUS = "status"


class Verdict(str, Enum):
    SAME = "same"
    SLOWER = "slower"  # a significant time increase, below the failing threshold
    REGRESSION = "regression"
    IMPROVEMENT = "improvement"


# ------------------------------------------------------------------ metrics
SYSCALL_METRICS: dict[str, Kind] = {
    "calls": Kind.COUNT,
    "errors": Kind.COUNT,
    "total_ns": Kind.TIME,
}

BUDGET_METRICS: dict[str, Kind] = {
    f"budget.{part}": Kind.TIME for part in ("lifetime_ns", *Budget.PARTS)
}

TOTAL_METRICS: dict[str, Kind] = {
    "total.calls": Kind.COUNT,
    "total.errors": Kind.COUNT,
    "total.syscall_ns": Kind.TIME,
    "total.wall_ns": Kind.TIME,
    "faults.count": Kind.COUNT,
    "faults.total_ns": Kind.TIME,
    **BUDGET_METRICS,
}

EXIT_STATUS_METRIC = "exit_status"

_SYSCALL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_RESERVED_PREFIXES = frozenset(name.split(".")[0] for name in TOTAL_METRICS)


def metric_kind(name: str) -> Kind | None:
    """The kind of a metric name a user wrote, or None when stprof has no such metric."""
    if name in TOTAL_METRICS:
        return TOTAL_METRICS[name]
    prefix, dot, suffix = name.rpartition(".")
    if not dot or prefix in _RESERVED_PREFIXES or not _SYSCALL_NAME.match(prefix):
        return None
    return SYSCALL_METRICS.get(suffix)


def measured_kind(name: str) -> Kind:
    """The kind of a metric found in a profile, whatever a collector named the syscall."""
    if name in TOTAL_METRICS:
        return TOTAL_METRICS[name]
    return SYSCALL_METRICS.get(name.rpartition(".")[2], Kind.COUNT)


def profile_metrics(profile: Profile) -> dict[str, float | None]:
    """One run as named metrics; None where the collector measured nothing."""
    values: dict[str, float | None] = {
        "total.calls": profile.total_calls,
        "total.errors": profile.total_errors,
        "total.syscall_ns": profile.total_syscall_ns,
        "total.wall_ns": profile.wall_ns,
        "faults.count": profile.faults.count,
        "faults.total_ns": profile.faults.total_ns,
    }
    budget = profile.budget
    for name in BUDGET_METRICS:
        part = name.split(".", 1)[1]
        values[name] = None if budget is None else getattr(budget, part)
    for syscall, figures in profile.syscalls.items():
        values[f"{syscall}.calls"] = figures.calls
        values[f"{syscall}.errors"] = figures.errors
        values[f"{syscall}.total_ns"] = figures.total_ns
    return values


def metric_series(runs: Sequence[Profile], names: Iterable[str]) -> dict[str, list[float] | None]:
    """Per metric, its value in every run; None when some run did not measure it.

    A syscall a run never made counts as 0 calls in 0 ns in that run.
    """
    per_run = [profile_metrics(run) for run in runs]
    series: dict[str, list[float] | None] = {}
    for name in names:
        default = 0.0 if name not in TOTAL_METRICS else None
        values = [run.get(name, default) for run in per_run]
        series[name] = None if any(v is None for v in values) else [float(v or 0) for v in values]
    return series


def ordered_metric_names(baseline: Sequence[Profile], current: Sequence[Profile]) -> list[str]:
    """Totals first, then each syscall's metrics, the baseline's busiest syscalls first."""
    syscalls: dict[str, float] = {}
    for run in baseline:
        for name, figures in run.syscalls.items():
            syscalls[name] = syscalls.get(name, 0.0) + figures.total_ns
    for run in current:
        for name in run.syscalls:
            syscalls.setdefault(name, -1.0)
    busiest = sorted(syscalls, key=lambda name: (-syscalls[name], name))
    return [*TOTAL_METRICS, *(f"{sc}.{suffix}" for sc in busiest for suffix in SYSCALL_METRICS)]


# ------------------------------------------------------------- the objects
@dataclass(frozen=True)
class Threshold:
    """What counts as a change worth failing CI for (see the module docstring)."""

    count_relative: float = 0.03
    count_absolute: float = 2.0
    time_relative: float = 0.25
    time_absolute_ns: float = 200_000.0
    alpha: float = 0.05
    time_fail: float | None = None

    def to_dict(self) -> dict[str, float | None]:
        return {
            "count_relative": self.count_relative,
            "count_absolute": self.count_absolute,
            "time_relative": self.time_relative,
            "time_absolute_ns": self.time_absolute_ns,
            "alpha": self.alpha,
            "time_fail": self.time_fail,
        }


@dataclass(frozen=True)
class Summary:
    """One metric's values over the runs of one side."""

    values: tuple[float, ...]

    @property
    def median(self) -> float:
        return stats.median(self.values) if self.values else 0.0

    @property
    def low(self) -> float:
        return min(self.values) if self.values else 0.0

    @property
    def high(self) -> float:
        return max(self.values) if self.values else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"median": self.median, "min": self.low, "max": self.high,
                "values": list(self.values)}


@dataclass(frozen=True)
class Significance:
    """How sure a time change is: the rank test and the effect sizes."""

    test: str
    u: float
    p_value: float
    method: str
    cliffs_delta: float
    ratio: float | None  # median current / median baseline; None if the baseline is 0

    @property
    def confidence(self) -> float:
        return 1.0 - self.p_value

    def to_dict(self) -> dict[str, Any]:
        return {
            "test": self.test,
            "u": self.u,
            "p_value": self.p_value,
            "method": self.method,
            "confidence": self.confidence,
            "cliffs_delta": self.cliffs_delta,
            "ratio_of_medians": self.ratio,
        }


@dataclass(frozen=True)
class Result:
    """One metric compared: both sides, the verdict and why."""

    metric: str
    kind: Kind
    baseline: Summary
    current: Summary
    verdict: Verdict
    reason: str
    significance: Significance | None = None
    allowed_low: float | None = None  # counts: the range the current median may lie in
    allowed_high: float | None = None

    @property
    def change(self) -> float:
        return self.current.median - self.baseline.median

    @property
    def relative_change(self) -> float | None:
        if self.baseline.median == 0:
            return None if self.change else 0.0
        return self.change / self.baseline.median

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "kind": self.kind.value,
            "verdict": self.verdict.value,
            "reason": self.reason,
            "baseline": self.baseline.to_dict(),
            "current": self.current.to_dict(),
            "change": self.change,
            "relative_change": self.relative_change,
            "allowed": None if self.allowed_high is None
            else {"low": self.allowed_low, "high": self.allowed_high},
            "significance": None if self.significance is None else self.significance.to_dict(),
        }


@dataclass(frozen=True)
class BudgetResult:
    """One budget line checked against the current runs' median."""

    metric: str
    operator: str  # "<=" or ">="
    written: str  # the limit as the budget file wrote it: 10, "+10%", "2ms"
    limit: float
    value: float
    passed: bool
    note: str = ""

    @property
    def text(self) -> str:
        return f"{self.metric} {self.operator} {self.written}"

    def to_dict(self) -> dict[str, Any]:
        return {"budget": self.text, "metric": self.metric, "operator": self.operator,
                "written": self.written, "limit": self.limit, "value": self.value,
                "passed": self.passed, "note": self.note}


@dataclass(frozen=True)
class Side:
    """Where one side of the comparison came from."""

    source: str
    collector: str
    runs: int
    created: str = ""
    host: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, record: Record, source: str) -> Side:
        return cls(source, record.collector, len(record.runs), record.created, dict(record.host))

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "collector": self.collector, "runs": self.runs,
                "created": self.created, "host": dict(self.host)}


@dataclass
class Comparison:
    command: list[str]
    baseline: Side
    current: Side
    threshold: Threshold
    results: list[Result]
    budgets: list[BudgetResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def regressions(self) -> list[Result]:
        return [r for r in self.results if r.verdict is Verdict.REGRESSION]

    @property
    def slower(self) -> list[Result]:
        """Significant time increases that do not fail (below ``time_fail``)."""
        return [r for r in self.results if r.verdict is Verdict.SLOWER]

    @property
    def improvements(self) -> list[Result]:
        return [r for r in self.results if r.verdict is Verdict.IMPROVEMENT]

    @property
    def failed_budgets(self) -> list[BudgetResult]:
        return [b for b in self.budgets if not b.passed]

    @property
    def regressed(self) -> bool:
        return bool(self.regressions or self.failed_budgets)

    @property
    def exit_status(self) -> int:
        return EXIT_REGRESSION if self.regressed else 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": "stprof-comparison/1",
            "verdict": "regression" if self.regressed else "ok",
            "exit_status": self.exit_status,
            "command": list(self.command),
            "baseline": self.baseline.to_dict(),
            "current": self.current.to_dict(),
            "threshold": self.threshold.to_dict(),
            "results": [r.to_dict() for r in self.results],
            "budgets": [b.to_dict() for b in self.budgets],
            "notes": list(self.notes),
        }


# ------------------------------------------------------------- judging
def judge_count(metric: str, baseline: Summary, current: Summary, threshold: Threshold) -> Result:
    """A count regresses when its current median leaves the baseline's range plus tolerance."""
    slack = max(threshold.count_absolute, threshold.count_relative * baseline.median)
    low, high = baseline.low - slack, baseline.high + slack
    value = current.median
    if value > high:
        verdict, reason = Verdict.REGRESSION, f"above the allowed {_num(high)}"
    elif value < low:
        verdict, reason = Verdict.IMPROVEMENT, f"below the allowed {_num(low)}"
    else:
        verdict, reason = Verdict.SAME, f"within the allowed {_num(max(low, 0))}..{_num(high)}"
    return Result(metric, Kind.COUNT, baseline, current, verdict, reason,
                  allowed_low=low, allowed_high=high)


def judge_time(metric: str, baseline: Summary, current: Summary, threshold: Threshold) -> Result:
    """A time changed when the rank test is significant and the change is large enough."""
    test = stats.mann_whitney(current.values, baseline.values)
    ratio = current.median / baseline.median if baseline.median else None
    significance = Significance(
        test="mann-whitney-u",
        u=test.u,
        p_value=test.p_value,
        method=test.method,
        cliffs_delta=stats.cliffs_delta(current.values, baseline.values),
        ratio=ratio,
    )
    change = current.median - baseline.median
    verdict, reason = _time_verdict(change, baseline.median, test.p_value, threshold)
    return Result(metric, Kind.TIME, baseline, current, verdict, reason, significance)


def _time_verdict(change: float, base: float, p_value: float,
                  threshold: Threshold) -> tuple[Verdict, str]:
    relative = abs(change) / base if base else math.inf
    shown_from = min(threshold.time_relative, threshold.time_fail or math.inf)
    if p_value > threshold.alpha:
        return Verdict.SAME, f"not significant (p > {threshold.alpha:g})"
    if relative < shown_from:
        return Verdict.SAME, f"significant but small ({relative:.1%} < {shown_from:.0%})"
    if abs(change) < threshold.time_absolute_ns:
        return Verdict.SAME, (f"significant but small ({_ns(abs(change))} < "
                              f"{_ns(threshold.time_absolute_ns)})")
    if change < 0:
        return Verdict.IMPROVEMENT, f"significant, {relative:.1%} faster"
    if threshold.time_fail is not None and relative >= threshold.time_fail:
        return Verdict.REGRESSION, (f"significant, {relative:.1%} slower "
                                    f"(fails from {threshold.time_fail:.0%})")
    failing = ("times do not fail" if threshold.time_fail is None
               else f"fails from {threshold.time_fail:.0%}")
    return Verdict.SLOWER, f"significant, {relative:.1%} slower ({failing})"


def judge_exit_statuses(baseline: Record, current: Record) -> Result | None:
    """A command that now exits with a status the baseline never saw has changed."""
    before = [s for s in baseline.exit_statuses() if s is not None]
    after = [s for s in current.exit_statuses() if s is not None]
    if not before or not after:
        return None
    unseen = sorted(set(after) - set(before))
    if unseen:
        verdict = Verdict.REGRESSION
        reason = f"exit status {', '.join(map(str, unseen))} never seen in the baseline"
    else:
        verdict, reason = Verdict.SAME, "same exit statuses"
    return Result(EXIT_STATUS_METRIC, Kind.STATUS, Summary(tuple(map(float, before))),
                  Summary(tuple(map(float, after))), verdict, reason)


def compare_runs(baseline: Sequence[Profile], current: Sequence[Profile],
                 threshold: Threshold) -> list[Result]:
    """Every metric either side measured, judged; all-zero metrics are left out."""
    names = ordered_metric_names(baseline, current)
    before = metric_series(baseline, names)
    after = metric_series(current, names)
    results = []
    for name in names:
        values_before, values_after = before[name], after[name]
        if values_before is None or values_after is None:
            continue
        if not any(values_before) and not any(values_after):
            continue
        judge = judge_time if measured_kind(name) is Kind.TIME else judge_count
        results.append(judge(name, Summary(tuple(values_before)), Summary(tuple(values_after)),
                             threshold))
    return results


def compare_records(baseline: Record, current: Record, threshold: Threshold,
                    baseline_source: str = "baseline",
                    current_source: str = "current") -> Comparison:
    """The whole comparison of two records already known to be comparable."""
    results = compare_runs(baseline.runs, current.runs, threshold)
    status = judge_exit_statuses(baseline, current)
    if status is not None:
        results.insert(0, status)
    comparison = Comparison(
        command=list(current.command),
        baseline=Side.of(baseline, baseline_source),
        current=Side.of(current, current_source),
        threshold=threshold,
        results=results,
    )
    comparison.notes.extend(_notes(baseline, current, threshold))
    return comparison


def _notes(baseline: Record, current: Record, threshold: Threshold) -> list[str]:
    notes = []
    floor = stats.smallest_p_value(len(current.runs), len(baseline.runs))
    if floor > threshold.alpha:
        notes.append(
            f"times cannot be judged: with {len(baseline.runs)} and {len(current.runs)} runs "
            f"the smallest p-value is {floor:.3g} > alpha {threshold.alpha:g}; "
            "record more runs (--repeat)"
        )
    if baseline.collector != current.collector:
        notes.append(f"collector changed: {baseline.collector} -> {current.collector}")
    if baseline.host.get("hostname") != current.host.get("hostname"):
        notes.append(
            f"recorded on another host: {baseline.host.get('hostname', '?')} -> "
            f"{current.host.get('hostname', '?')}"
        )
    return notes


def check_comparable(baseline: Record, current: Record, *, allow_collector_change: bool,
                     baseline_source: str = "baseline", current_source: str = "current") -> None:
    """Refuse, with one line, what cannot be compared meaningfully."""
    if baseline.command != current.command:
        raise InputError(
            f"{current_source}: another command than {baseline_source} "
            f"({_shell(current.command)} vs {_shell(baseline.command)})"
        )
    if baseline.collector != current.collector and not allow_collector_change:
        raise InputError(
            f"{current_source}: recorded with the {current.collector} collector, "
            f"{baseline_source} with {baseline.collector} "
            "(their times differ; pass --allow-collector-change to compare anyway)"
        )


def _shell(command: Sequence[str]) -> str:
    import shlex

    return shlex.join(command)


def _num(value: float) -> str:
    return f"{value:,.0f}" if value == int(value) else f"{value:,.1f}"


def _ns(value: float) -> str:
    for scale, unit in ((1e9, "s"), (1e6, "ms"), (1e3, "us")):
        if value >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value:.0f} ns"


# ------------------------------------------------------------- rendering
class ComparisonRenderer:
    """The interface of reports/compare_*.py: a Comparison as text of one format."""

    name: str = ""

    def render(self, comparison: Comparison) -> str:  # pragma: no cover - interface
        raise NotImplementedError
